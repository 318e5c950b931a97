"""/mjadmin: API keys, limits and rules, and usage stats for server managers and the bot owner.

Discord hides the group from members without Manage Server (default_permissions), but a modified
client can still send it, so `interaction_check` checks every call again on our side. Secrets are
typed into a modal, encrypted at once (bot/upstream/keys.py) and never shown, logged or echoed again.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot import render
from bot.errors import InputError, NotAllowed, UpstreamError
from bot.i18n import t
from bot.policy import DAY, GuildSettings, day_start, fold_text, normalize_words, split_words
from bot.responder import error_text, locale_of, reply, report_error
from bot.upstream.client import UpstreamConfig
from bot.upstream.keys import DEFAULT_UPSTREAM, ApiKey, KeyCheck, check_base_url, check_base_url_resolves, split_mode
from cogs._shared import Interaction

if TYPE_CHECKING:
    from bot.bot import MJBot

log = logging.getLogger(__name__)

AUTH_CHOICES = [
    app_commands.Choice(name=_("bearer (relay sites, sk-... keys)", key="choice.auth_bearer"), value="bearer"),
    app_commands.Choice(name=_("mj-api-secret (self-hosted)", key="choice.auth_secret"), value="mj-api-secret"),
    app_commands.Choice(name=_("raw Authorization (trueai tokens)", key="choice.auth_raw"), value="raw"),
]
MODE_CHOICES = [
    app_commands.Choice(name=_("the server's default", key="choice.mode_default"), value="none"),
    app_commands.Choice(name=_("fast", key="choice.mode_fast"), value="fast"),
    app_commands.Choice(name=_("relax", key="choice.mode_relax"), value="relax"),
    app_commands.Choice(name=_("turbo", key="choice.mode_turbo"), value="turbo"),
]
SCOPE_CHOICES = [
    app_commands.Choice(name=_("this server", key="choice.scope_guild"), value="guild"),
    app_commands.Choice(name=_("all servers (bot owner only)", key="choice.scope_global"), value="global"),
]
ACCESS_CHOICES = [
    app_commands.Choice(name=_("anyone", key="choice.access_anyone"), value="anyone"),
    app_commands.Choice(name=_("only the task's owner (and admins)", key="choice.access_owner"), value="owner"),
]


def _mode(choice: app_commands.Choice[str] | None) -> str:
    return "" if choice is None or choice.value == "none" else choice.value


async def is_bot_owner(interaction: Interaction) -> bool:
    """OWNER_IDS, else the application's owner (or team) as Discord reports it."""
    return await interaction.client.is_bot_owner(interaction.user)


async def is_manager(interaction: Interaction) -> bool:
    if interaction.guild_id is not None and interaction.permissions.manage_guild:
        return True
    return await is_bot_owner(interaction)


def _state(key: ApiKey, locale: str) -> str:
    if not key.enabled:
        return t("admin.state_disabled", locale)
    if not key.healthy:
        reason = t(f"admin.reason_{key.last_error}", locale) if key.last_error in ("unauthorized", "quota") else ""
        return t("admin.state_unhealthy", locale, reason=reason or "?")
    return t("admin.state_ok", locale)


def _mode_text(mode: str, locale: str) -> str:
    return mode or t("admin.mode_default", locale)


def _usage_by_key(counts: dict[str, int]) -> dict[str, int]:
    """Fold `key:3@fast` into `key:3`: a mode variant is the same key."""
    folded: dict[str, int] = {}
    for upstream, count in counts.items():
        base = split_mode(upstream)[0]
        folded[base] = folded.get(base, 0) + count
    return folded


class AddKeyModal(discord.ui.Modal):
    """Collects the secret: a modal field is seen only by the admin typing it, unlike a slash option."""

    def __init__(self, draft: dict[str, Any], *, user_id: int, locale: str) -> None:
        super().__init__(
            title=render.truncate(t("admin.key_modal_title", locale, label=draft["label"]), 45), timeout=900
        )
        self.draft = draft
        self.user_id = user_id
        self.secret: discord.ui.TextInput[AddKeyModal] = discord.ui.TextInput(
            label=render.truncate(t("admin.key_modal_label", locale), 45),
            placeholder="sk-...",
            max_length=512,
            required=True,
        )
        self.add_item(self.secret)

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        # Only the admin who opened it, and only while they are still allowed to.
        return interaction.user.id == self.user_id and await is_manager(interaction)

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        bot = interaction.client
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        if not await is_bot_owner(interaction):  # a name that resolves to the bot's own network now
            await check_base_url_resolves(self.draft["base_url"], bot.address_policy)
        key = await bot.keys.add(secret=self.secret.value, added_by=interaction.user.id, **self.draft)
        scope = t("admin.scope_global" if key.is_global else "admin.scope_guild", locale)
        await reply(
            interaction,
            t(
                "admin.key_added",
                locale,
                id=key.id,
                label=key.label,
                host=key.host,
                last4=key.last4 or "—",
                scope=scope,
            ),
        )

    async def on_error(self, interaction: Interaction, error: Exception) -> None:  # type: ignore[override]
        await report_error(interaction, error)


class Admin(commands.Cog):
    mjadmin = app_commands.Group(
        name=_("mjadmin"),
        description=_("Manage the bot's API keys, limits and rules (Manage Server)"),
        default_permissions=discord.Permissions(manage_guild=True),
        guild_only=True,
    )
    key = app_commands.Group(name=_("key"), description=_("API keys the bot submits with"), parent=mjadmin)
    rules = app_commands.Group(name=_("settings"), description=_("Limits and rules for this server"), parent=mjadmin)
    servers = app_commands.Group(
        name=_("server"), description=_("Which servers may use the bot (bot owner only)"), parent=mjadmin
    )

    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.keys.on_unhealthy = self.notify_unhealthy

    async def cog_unload(self) -> None:
        self.bot.keys.on_unhealthy = None

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        """Every /mjadmin call, whatever Discord's client showed: Manage Server or the bot owner."""
        if await is_manager(interaction):
            return True
        log.warning(
            "Refused /mjadmin from user %s in guild %s (no Manage Server)", interaction.user.id, interaction.guild_id
        )
        return False

    async def notify_unhealthy(self, key: ApiKey) -> None:
        """Tell the admin who added the key, once, when it is taken out of rotation (best effort)."""
        locale = self.bot.settings.default_locale
        guild = self.bot.get_guild(key.guild_id) if key.guild_id else None
        scope = guild.name if guild else t("admin.scope_global", locale)
        reason = t(f"admin.reason_{key.last_error}", locale) if key.last_error else "?"
        text = t(
            "admin.key_unhealthy_dm",
            locale,
            label=key.label,
            host=key.host,
            scope=scope,
            failures=key.failures,
            reason=reason,
        )
        try:
            user = self.bot.get_user(key.added_by) or await self.bot.fetch_user(key.added_by)
            await user.send(text)
        except discord.HTTPException as exc:
            log.info("Could not DM user %s about key %d (HTTP %s)", key.added_by, key.id, exc.status)

    # ---- keys ----------------------------------------------------------------------------------------

    async def _target(self, interaction: Interaction, reference: str) -> ApiKey:
        """A key this admin may change: the guild's own, or a global one for the bot owner."""
        found = self.bot.keys.find(reference, interaction.guild_id)
        if found is None:
            raise InputError("admin.key_not_found", key=reference)
        if found.is_global and not await is_bot_owner(interaction):
            raise NotAllowed("admin.owner_only")
        return found

    async def key_autocomplete(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        if not await is_manager(interaction):
            return []
        lowered = current.lower()
        return [
            app_commands.Choice(name=render.truncate(f"#{k.id} {k.label} ({k.host})", 100), value=str(k.id))
            for k in self.bot.keys.visible(interaction.guild_id)
            if lowered in k.label.lower() or lowered in str(k.id)
        ][:25]

    @key.command(name=_("add"), description=_("Add an API key; you type the key itself into a private form"))
    @app_commands.describe(
        label=_("A name for this key, e.g. 'relay main'"),
        base_url=_("The API's base URL, without /mj (e.g. https://api.example.com)"),
        auth_style=_("How the key is sent"),
        mode=_("Speed mode for this key"),
        priority=_("Higher is tried first"),
        scope=_("This server, or every server (bot owner only)"),
    )
    @app_commands.choices(auth_style=AUTH_CHOICES, mode=MODE_CHOICES, scope=SCOPE_CHOICES)
    async def key_add(
        self,
        interaction: Interaction,
        label: app_commands.Range[str, 1, 40],
        base_url: app_commands.Range[str, 8, 300],
        auth_style: app_commands.Choice[str] | None = None,
        mode: app_commands.Choice[str] | None = None,
        priority: app_commands.Range[int, -100, 100] = 0,
        scope: app_commands.Choice[str] | None = None,
    ) -> None:
        locale = locale_of(interaction)
        keys = self.bot.keys
        is_global = scope is not None and scope.value == "global"
        owner = await is_bot_owner(interaction)
        if is_global and not owner:
            raise NotAllowed("admin.owner_only")
        if keys.cipher is None:
            raise NotAllowed("admin.no_encryption_key")
        style = auth_style.value if auth_style else "bearer"
        # Userinfo, query and fragment are refused for everyone; private addresses for all but the
        # bot owner (whose keys still connect only where the address rule allows).
        check_base_url(base_url, self.bot.address_policy, private_ok=owner)
        try:
            config = UpstreamConfig(base_url=base_url, api_key="", auth_style=style, mode=_mode(mode))
        except ValueError:
            raise InputError("admin.key_bad_url") from None
        guild_id = None if is_global else interaction.guild_id
        if any(k.guild_id == guild_id and k.label.lower() == label.strip().lower() for k in keys.visible(guild_id)):
            raise InputError("admin.key_exists", label=label)
        draft = {
            "guild_id": guild_id,
            "label": label,
            "base_url": config.base_url,
            "auth_style": config.auth_style,
            "mode": config.mode,
            "priority": priority,
        }
        await interaction.response.send_modal(AddKeyModal(draft, user_id=interaction.user.id, locale=locale))

    @key.command(name=_("list"), description=_("The keys this server uses, in the order they are tried"))
    async def key_list(self, interaction: Interaction) -> None:
        locale = locale_of(interaction)
        owner = await is_bot_owner(interaction)
        usage = _usage_by_key(await self.bot.store.tasks_by_upstream(None))
        visible = self.bot.keys.visible(interaction.guild_id)
        own = [k for k in visible if not k.is_global]
        shared = [k for k in visible if k.is_global]
        lines = [t("admin.keys_guild", locale)]
        lines += [self._key_line(k, usage, locale) for k in own] or [t("admin.none", locale)]
        lines += ["", t("admin.keys_global", locale)]
        if owner:
            lines += [self._key_line(k, usage, locale) for k in shared] or [t("admin.none", locale)]
        else:
            lines += [
                t("admin.key_line_hidden", locale, id=k.id, label=k.label, state=_state(k, locale)) for k in shared
            ] or [t("admin.none", locale)]
        lines += ["", t("admin.keys_env", locale, used=usage.get(DEFAULT_UPSTREAM, 0))]
        await reply(interaction, render.truncate("\n".join(lines), 2000))

    @staticmethod
    def _key_line(key: ApiKey, usage: dict[str, int], locale: str) -> str:
        return t(
            "admin.key_line",
            locale,
            id=key.id,
            label=key.label,
            host=key.host,
            mode=_mode_text(key.mode, locale),
            last4=key.last4 or "—",
            state=_state(key, locale),
            priority=key.priority,
            used=usage.get(key.upstream, 0),
        )

    @key.command(name=_("remove"), description=_("Delete a key (its secret is erased)"))
    @app_commands.describe(key=_("The key (label or #id)"))
    async def key_remove(self, interaction: Interaction, key: app_commands.Range[str, 1, 60]) -> None:
        found = await self._target(interaction, key)
        await self.bot.keys.remove(found.id)
        await reply(interaction, t("admin.key_removed", locale_of(interaction), label=found.label))

    @key.command(name=_("enable"), description=_("Use a key again (also clears its failures)"))
    @app_commands.describe(key=_("The key (label or #id)"))
    async def key_enable(self, interaction: Interaction, key: app_commands.Range[str, 1, 60]) -> None:
        found = await self._target(interaction, key)
        await self.bot.keys.set_enabled(found.id, True)
        await reply(interaction, t("admin.key_enabled", locale_of(interaction), label=found.label))

    @key.command(name=_("disable"), description=_("Stop using a key for new tasks"))
    @app_commands.describe(key=_("The key (label or #id)"))
    async def key_disable(self, interaction: Interaction, key: app_commands.Range[str, 1, 60]) -> None:
        found = await self._target(interaction, key)
        await self.bot.keys.set_enabled(found.id, False)
        await reply(interaction, t("admin.key_disabled", locale_of(interaction), label=found.label))

    @key.command(name=_("test"), description=_("Check that a key works"))
    @app_commands.describe(key=_("The key (label or #id)"))
    async def key_test(self, interaction: Interaction, key: app_commands.Range[str, 1, 60]) -> None:
        found = await self._target(interaction, key)
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        result = await self.bot.keys.check(found.id)
        await reply(interaction, self._check_text(found, result, locale))

    @staticmethod
    def _check_text(key: ApiKey, result: KeyCheck, locale: str) -> str:
        if result.status == "error":
            error = result.error
            if isinstance(error, UpstreamError):
                # The server's own words never reach the channel: a key's server is anyone's server.
                status = f"HTTP {error.status}" if error.status else "—"
                error = type(error)(status)
            reason = error_text(error, locale).removeprefix("⚠️ ") if error else "?"
            return t("admin.test_error", locale, label=key.label, reason=reason)
        return t(f"admin.test_{result.status}", locale, label=key.label, host=key.host)

    key_remove.autocomplete("key")(key_autocomplete)
    key_enable.autocomplete("key")(key_autocomplete)
    key_disable.autocomplete("key")(key_autocomplete)
    key_test.autocomplete("key")(key_autocomplete)

    # ---- settings -----------------------------------------------------------------------------------

    def _settings_text(self, settings: GuildSettings, locale: str) -> str:
        def limit(value: int, unit: str = "") -> str:
            if not value:
                return t("admin.unlimited", locale)
            return t("admin.seconds", locale, n=value) if unit == "s" else str(value)

        default_quota = self.bot.policy.owner_rules.default_daily_quota
        if settings.daily_quota or not default_quota:
            quota = limit(settings.daily_quota)
        else:  # the server set none: the operator's default applies (DEFAULT_DAILY_QUOTA)
            quota = t("admin.quota_default", locale, limit=default_quota)
        channels = " ".join(f"<#{c}>" for c in settings.allowed_channels) or t("admin.all_channels", locale)
        words = ", ".join(f"`{w}`" for w in settings.banned_words) or t("admin.none", locale)
        lines = [
            t("admin.settings_title", locale),
            t("admin.settings_quota", locale, value=quota),
            t("admin.settings_user_concurrent", locale, value=limit(settings.user_concurrent)),
            t("admin.settings_guild_concurrent", locale, value=limit(settings.guild_concurrent)),
            t("admin.settings_cooldown", locale, value=limit(settings.cooldown, "s")),
            t("admin.settings_channels", locale, value=channels),
            t("admin.settings_buttons", locale, value=t(f"admin.access_{settings.button_access}", locale)),
            t("admin.settings_mode", locale, value=_mode_text(settings.default_mode, locale)),
            t("admin.settings_words", locale, value=words),
            t("admin.settings_nsfw", locale, value=t("admin.yes" if settings.nsfw_only else "admin.no", locale)),
        ]
        return render.truncate("\n".join(lines), 2000)

    async def _show(self, interaction: Interaction, settings: GuildSettings, *, saved: bool = False) -> None:
        locale = locale_of(interaction)
        text = self._settings_text(settings, locale)
        await reply(interaction, f"{t('admin.settings_saved', locale)}\n{text}" if saved else text)

    def _guild(self, interaction: Interaction) -> int:
        if interaction.guild_id is None:
            raise NotAllowed()
        return interaction.guild_id

    @rules.command(name=_("show"), description=_("Show this server's limits and rules"))
    async def settings_show(self, interaction: Interaction) -> None:
        await self._show(interaction, await self.bot.policy.settings(self._guild(interaction)))

    @rules.command(name=_("set"), description=_("Change limits and rules (0 = no limit)"))
    @app_commands.describe(
        daily_quota=_("Tasks per member per day (UTC); 0 = the bot's default"),
        user_concurrent=_("Running tasks per member"),
        guild_concurrent=_("Running tasks in the whole server"),
        cooldown=_("Seconds between one member's tasks"),
        buttons=_("Who may click the buttons under results"),
        default_mode=_("Speed mode for keys that have none"),
        nsfw_only=_("Only allow the bot in age-restricted channels"),
    )
    @app_commands.choices(buttons=ACCESS_CHOICES, default_mode=MODE_CHOICES)
    async def settings_set(
        self,
        interaction: Interaction,
        daily_quota: app_commands.Range[int, 0, 100000] | None = None,
        user_concurrent: app_commands.Range[int, 0, 1000] | None = None,
        guild_concurrent: app_commands.Range[int, 0, 10000] | None = None,
        cooldown: app_commands.Range[int, 0, 86400] | None = None,
        buttons: app_commands.Choice[str] | None = None,
        default_mode: app_commands.Choice[str] | None = None,
        nsfw_only: bool | None = None,
    ) -> None:
        guild_id = self._guild(interaction)
        changes: dict[str, Any] = {
            "daily_quota": daily_quota,
            "user_concurrent": user_concurrent,
            "guild_concurrent": guild_concurrent,
            "cooldown": cooldown,
            "button_access": buttons.value if buttons else None,
            "default_mode": _mode(default_mode) if default_mode else None,
            "nsfw_only": nsfw_only,
        }
        changes = {name: value for name, value in changes.items() if value is not None}
        settings = await self.bot.policy.update(guild_id, **changes)
        log.info("Guild %s settings changed by user %s: %s", guild_id, interaction.user.id, sorted(changes))
        await self._show(interaction, settings, saved=bool(changes))

    @rules.command(name=_("channel_add"), description=_("Allow the bot in a channel (none listed = everywhere)"))
    @app_commands.describe(channel=_("The channel"))
    async def channel_add(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        guild_id = self._guild(interaction)
        current = (await self.bot.policy.settings(guild_id)).allowed_channels
        if channel.id not in current:
            current = (*current, channel.id)[-50:]
        await self._show(interaction, await self.bot.policy.update(guild_id, allowed_channels=current), saved=True)

    @rules.command(name=_("channel_remove"), description=_("Remove a channel from the allowed list"))
    @app_commands.describe(channel=_("The channel"))
    async def channel_remove(self, interaction: Interaction, channel: discord.TextChannel) -> None:
        guild_id = self._guild(interaction)
        current = tuple(c for c in (await self.bot.policy.settings(guild_id)).allowed_channels if c != channel.id)
        await self._show(interaction, await self.bot.policy.update(guild_id, allowed_channels=current), saved=True)

    @rules.command(name=_("words_add"), description=_("Ban words in prompts (comma separated)"))
    @app_commands.describe(words=_("Words or phrases, separated by commas"))
    async def words_add(self, interaction: Interaction, words: app_commands.Range[str, 1, 1000]) -> None:
        guild_id = self._guild(interaction)
        current = (await self.bot.policy.settings(guild_id)).banned_words
        updated = normalize_words([*current, *split_words(words)])
        await self._show(interaction, await self.bot.policy.update(guild_id, banned_words=updated), saved=True)

    @rules.command(name=_("words_remove"), description=_("Allow banned words again (comma separated)"))
    @app_commands.describe(words=_("Words or phrases, separated by commas"))
    async def words_remove(self, interaction: Interaction, words: app_commands.Range[str, 1, 1000]) -> None:
        guild_id = self._guild(interaction)
        removed = set(normalize_words(split_words(words)))
        current = (await self.bot.policy.settings(guild_id)).banned_words
        updated = tuple(w for w in current if fold_text(w) not in removed)
        await self._show(interaction, await self.bot.policy.update(guild_id, banned_words=updated), saved=True)

    # ---- servers (bot owner) -----------------------------------------------------------------------

    async def _server_target(self, interaction: Interaction, guild_id: str | None) -> int:
        if not await is_bot_owner(interaction):
            raise NotAllowed("admin.owner_only")
        if guild_id is None:
            return self._guild(interaction)
        text = guild_id.strip()
        if not text.isdigit() or len(text) > 20:
            raise InputError("admin.server_bad_id", guild=render.neutralize_mentions(text[:40]))
        return int(text)

    @servers.command(name=_("approve"), description=_("Let a server use the bot (default: this one)"))
    @app_commands.describe(guild_id=_("The server's id (default: this server)"))
    async def server_approve(self, interaction: Interaction, guild_id: str | None = None) -> None:
        target = await self._server_target(interaction, guild_id)
        await self.bot.gate.approve(target, interaction.user.id)
        log.info("Server %s approved by user %s", target, interaction.user.id)
        await reply(interaction, t("admin.server_approved", locale_of(interaction), guild=self._server_name(target)))

    @servers.command(name=_("revoke"), description=_("Stop a server from using the bot (default: this one)"))
    @app_commands.describe(guild_id=_("The server's id (default: this server)"))
    async def server_revoke(self, interaction: Interaction, guild_id: str | None = None) -> None:
        target = await self._server_target(interaction, guild_id)
        locale = locale_of(interaction)
        name = self._server_name(target)
        if await self.bot.gate.revoke(target):
            log.info("Server %s approval revoked by user %s", target, interaction.user.id)
            text = t("admin.server_revoked", locale, guild=name)
        else:
            text = t("admin.server_not_approved", locale, guild=name)
        if self.bot.gate.approval.allows(target):
            text = t("admin.server_in_env", locale, guild=name)
        await reply(interaction, text)

    @servers.command(name=_("list"), description=_("The servers that may use the bot"))
    async def server_list(self, interaction: Interaction) -> None:
        if not await is_bot_owner(interaction):
            raise NotAllowed("admin.owner_only")
        locale = locale_of(interaction)
        gate = self.bot.gate
        if gate.approval.everyone:
            await reply(interaction, t("admin.server_list_everyone", locale))
            return
        ids = sorted(gate.approval.listed | await gate.approved())
        lines = [f"- {self._server_name(guild_id)}" for guild_id in ids] or [t("admin.server_none", locale)]
        text = t("admin.server_list", locale, servers="\n".join(lines))
        await reply(interaction, render.truncate(text, 2000))

    def _server_name(self, guild_id: int) -> str:
        """`Name (id)` for a server the bot is in, else the id; the name is the server's own text."""
        guild = self.bot.get_guild(guild_id)
        if guild is None:
            return f"`{guild_id}`"
        return f"{render.neutralize(guild.name)} (`{guild_id}`)"

    # ---- stats ---------------------------------------------------------------------------------------

    @mjadmin.command(name=_("stats"), description=_("Tasks per day, success rate, top members and per-key usage"))
    @app_commands.describe(days=_("How many days back (default 7)"))
    async def stats(self, interaction: Interaction, days: app_commands.Range[int, 1, 90] = 7) -> None:
        guild_id = self._guild(interaction)
        locale = locale_of(interaction)
        store = self.bot.store
        since = day_start(time.time()) - (days - 1) * DAY
        daily = await store.daily_task_counts(guild_id, since)
        lines = [t("admin.stats_title", locale, days=days)]
        if not daily:
            lines.append(t("admin.stats_empty", locale))
            await reply(interaction, "\n".join(lines))
            return
        total = sum(d[1] for d in daily)
        ok = sum(d[2] for d in daily)
        failed = sum(d[3] for d in daily)
        lines.append(t("admin.stats_totals", locale, total=total, ok=ok, failed=failed))
        lines += [t("admin.stats_day", locale, day=d[0], total=d[1], ok=d[2], failed=d[3]) for d in daily[-14:]]
        lines += ["", t("admin.stats_top", locale)]
        lines += [
            t("admin.stats_user", locale, mention=f"<@{user_id}>", count=count)
            for user_id, count in await store.top_users(guild_id, since)
        ]
        lines += ["", t("admin.stats_keys", locale)]
        for upstream, count in sorted(
            _usage_by_key(await store.tasks_by_upstream(guild_id, since)).items(), key=lambda item: -item[1]
        ):
            lines.append(t("admin.stats_key", locale, label=self._upstream_label(upstream, locale), count=count))
        await reply(
            interaction, render.truncate("\n".join(lines), 2000), allowed_mentions=discord.AllowedMentions.none()
        )

    def _upstream_label(self, upstream: str, locale: str) -> str:
        if upstream == DEFAULT_UPSTREAM:
            return t("admin.env_key", locale)
        key = self.bot.keys.for_upstream(upstream)
        if key is not None:
            return f"#{key.id} {key.label}"
        return t("admin.removed_key", locale, name=upstream)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Admin(bot))
