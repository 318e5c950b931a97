"""/mjadmin accounts: the Midjourney accounts behind a self-hosted server, for the people who run it.

Who may look: the bot owner (every server, the .env key's included) and a guild's managers for the
servers of that guild's own keys. Answers are private. What is offered follows the server's probe
(bot/upstream/capabilities.py): a relay or a trueai user token has no accounts to show.

The group is added to the Admin cog's /mjadmin at load (cogs/admin.py stays as it is), and
`/mjadmin settings alerts_channel` picks where bot/alerts.py posts account alerts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot import render
from bot.alerts import reason_text, server_name
from bot.errors import BotError, InputError, NotAllowed
from bot.i18n import t
from bot.responder import error_text, locale_of, reply, report_error
from bot.upstream.accounts import SYNC_COOLDOWN, Account, AccountList, AdminRefused, Capabilities
from bot.upstream.keys import DEFAULT_UPSTREAM
from cogs._shared import Interaction
from cogs.admin import is_bot_owner, is_manager

if TYPE_CHECKING:
    from bot.bot import MJBot

log = logging.getLogger(__name__)

#: Accounts per panel page: about 300 characters each keeps a page well inside 2,000.
PAGE_SIZE = 5
#: Seconds an account list is reused for autocomplete and paging (the Refresh button rereads it).
LIST_TTL = 30.0
#: Seconds a confirmation or a panel stays clickable.
VIEW_TIMEOUT = 600.0


def _escape(text: str) -> str:
    return discord.utils.escape_mentions(discord.utils.escape_markdown(text))


def _yes_no(value: bool | None, locale: str) -> str:
    if value is None:
        return "—"
    return t("admin.yes" if value else "admin.no", locale)


def _of(used: int | None, size: int | None) -> str:
    if used is None and size is None:
        return "—"
    return f"{used if used is not None else '?'}/{size}" if size else str(used)


def account_block(number: int, account: Account, locale: str) -> str:
    """Three lines per account; every value came from the server, so all of it is escaped."""
    if account.enabled is False:
        state = t("accounts.state_disabled", locale, reason=_escape(reason_text(account.disabled_reason, locale)))
    else:
        state = t("accounts.state_enabled", locale)
    if account.locked:
        state += " · " + t("accounts.state_locked", locale)
        if account.cf_url:  # https only, checked when the answer was read (bot/upstream/accounts.py)
            state += " " + t("accounts.captcha_link", locale, url=account.cf_url)
    if account.running is not None and account.enabled is not False:
        state += " · " + t("accounts.state_running" if account.running else "accounts.state_stopped", locale)
    if account.fast_exhausted:
        state += " · " + t("accounts.state_fast_exhausted", locale)
    lines = [
        f"**{number}. {_escape(account.name)}** · {state}",
        t(
            "accounts.line_plan",
            locale,
            mode=_escape(account.mode or "—"),
            fast=_escape(account.fast_left or "—"),
            relax=_escape(account.relax_left or "—"),
            version=_escape(account.version or "—"),
            remix=_yes_no(account.remix, locale),
        ),
        t(
            "accounts.line_load",
            locale,
            running=_of(account.running_count, account.core_size),
            queued=_of(account.queue_count, account.queue_size),
            today=account.today_count if account.today_count is not None else "—",
            renews=_escape(account.renew_date or "—"),
        ),
    ]
    return "\n".join(lines)


def panel_text(server: str, caps: Capabilities, listed: AccountList, page: int, locale: str) -> str:
    """One page of the panel, within Discord's 2,000 characters."""
    accounts = listed.accounts
    pages = max(1, -(-len(accounts) // PAGE_SIZE))
    page = max(0, min(page, pages - 1))
    head = t(
        "accounts.panel_title",
        locale,
        server=_escape(server),
        flavor=t(f"accounts.flavor_{caps.flavor.replace('-', '_')}", locale),
        count=len(accounts),
        page=page + 1,
        pages=pages,
    )
    shown = accounts[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]
    blocks = [account_block(page * PAGE_SIZE + n + 1, a, locale) for n, a in enumerate(shown)]
    if not blocks:
        blocks = [t("accounts.none", locale)]
    offered = [t("accounts.offer_read", locale)]
    if caps.manages_accounts:
        offered.append(t("accounts.offer_manage", locale))
    if caps.changes_version:
        offered.append(t("accounts.offer_version", locale))
    if caps.cancels_tasks:
        offered.append(t("accounts.offer_cancel", locale))
    footer = "-# " + " · ".join(offered) + " · " + t("accounts.read_at", locale, when=f"<t:{int(listed.read_at)}:R>")
    return render.truncate("\n\n".join([head, *blocks, footer]), 2000)


class PanelView(discord.ui.View):
    """◀ ▶ and Refresh under a private panel; only the admin who opened it can use them."""

    def __init__(self, cog: Accounts, upstream: str, user_id: int, page: int, pages: int) -> None:
        super().__init__(timeout=VIEW_TIMEOUT)
        self.cog = cog
        self.upstream = upstream
        self.user_id = user_id
        self.page = page
        self.previous.disabled = page <= 0
        self.next.disabled = page >= pages - 1

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        return interaction.user.id == self.user_id

    async def _show(self, interaction: Interaction, page: int, *, refresh: bool) -> None:
        try:
            await self.cog.edit_panel(interaction, self.upstream, page, refresh=refresh)
        except Exception as error:
            await report_error(interaction, error)

    @discord.ui.button(emoji="◀️", style=discord.ButtonStyle.secondary)
    async def previous(self, interaction: Interaction, button: discord.ui.Button[PanelView]) -> None:
        await self._show(interaction, self.page - 1, refresh=False)

    @discord.ui.button(emoji="▶️", style=discord.ButtonStyle.secondary)
    async def next(self, interaction: Interaction, button: discord.ui.Button[PanelView]) -> None:
        await self._show(interaction, self.page + 1, refresh=False)

    @discord.ui.button(emoji="🔄", style=discord.ButtonStyle.secondary)
    async def refresh(self, interaction: Interaction, button: discord.ui.Button[PanelView]) -> None:
        await self._show(interaction, self.page, refresh=True)


class ConfirmView(discord.ui.View):
    """Confirm / Cancel for one write; the write runs at most once."""

    def __init__(self, user_id: int, locale: str, action: Callable[[Interaction], Awaitable[str]]) -> None:
        super().__init__(timeout=VIEW_TIMEOUT)
        self.user_id = user_id
        self.action = action
        self.done = False
        self.confirm.label = t("accounts.confirm", locale)
        self.cancel.label = t("accounts.cancel", locale)

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        return interaction.user.id == self.user_id and not self.done

    @discord.ui.button(style=discord.ButtonStyle.danger)
    async def confirm(self, interaction: Interaction, button: discord.ui.Button[ConfirmView]) -> None:
        self.done = True
        self.stop()
        try:
            await interaction.response.edit_message(content=t("accounts.working", locale_of(interaction)), view=None)
            text = await self.action(interaction)
        except BotError as error:
            text = error_text(error, locale_of(interaction))
        except Exception as error:
            await report_error(interaction, error)
            return
        try:
            await interaction.edit_original_response(content=render.truncate(text, 2000))
        except discord.HTTPException as exc:
            log.warning("Could not show an account action's result (HTTP %s)", exc.status)

    @discord.ui.button(style=discord.ButtonStyle.secondary)
    async def cancel(self, interaction: Interaction, button: discord.ui.Button[ConfirmView]) -> None:
        self.done = True
        self.stop()
        await interaction.response.edit_message(content=t("accounts.cancelled", locale_of(interaction)), view=None)


class AccountsGroup(app_commands.Group):
    """The `accounts` subcommands; bound to this group, which asks the cog for every decision."""

    def __init__(self, cog: Accounts) -> None:
        super().__init__(
            name=_("accounts"),
            description=_("The Midjourney accounts behind your self-hosted server (operators)"),
        )
        self.cog = cog

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        """Coarse check (owner, or Manage Server with a key of this guild); each command then checks
        the server it was asked about."""
        if await is_bot_owner(interaction):
            return True
        if interaction.guild_id is not None and interaction.permissions.manage_guild:
            return any(
                k.guild_id == interaction.guild_id for k in interaction.client.keys.visible(interaction.guild_id)
            )
        return False

    @app_commands.command(name=_("panel"), description=_("Every account: state, hours left, load"))
    @app_commands.describe(server=_("Which server (default: this server's first key)"), page=_("Page number"))
    async def panel(self, interaction: Interaction, server: str | None = None, page: int = 1) -> None:
        upstream = await self.cog.resolve(interaction, server)
        await interaction.response.defer(ephemeral=True, thinking=True)
        await self.cog.send_panel(interaction, upstream, page - 1)

    @app_commands.command(
        name=_("sync"), description=_("Re-read an account's /info and /settings (once per 5 minutes)")
    )
    @app_commands.describe(server=_("Which server"), account=_("The account"))
    async def sync(self, interaction: Interaction, account: str, server: str | None = None) -> None:
        await self.cog.ask(interaction, server, account, "sync")

    @app_commands.command(name=_("enable"), description=_("Enable a disabled account"))
    @app_commands.describe(server=_("Which server"), account=_("The account"))
    async def enable(self, interaction: Interaction, account: str, server: str | None = None) -> None:
        await self.cog.ask(interaction, server, account, "enable")

    @app_commands.command(name=_("reconnect"), description=_("Enable an account and restart its connection"))
    @app_commands.describe(server=_("Which server"), account=_("The account"))
    async def reconnect(self, interaction: Interaction, account: str, server: str | None = None) -> None:
        await self.cog.ask(interaction, server, account, "reconnect")

    @app_commands.command(name=_("version"), description=_("Change an account's default Midjourney version"))
    @app_commands.describe(server=_("Which server"), account=_("The account"), version=_("A version it offers"))
    async def version(self, interaction: Interaction, account: str, version: str, server: str | None = None) -> None:
        await self.cog.ask(interaction, server, account, "version", version=version)

    @app_commands.command(name=_("cancel"), description=_("Cancel a task on the server, as its admin"))
    @app_commands.describe(server=_("Which server"), task=_("The task id"))
    async def cancel(
        self, interaction: Interaction, task: app_commands.Range[str, 1, 40], server: str | None = None
    ) -> None:
        await self.cog.ask_cancel(interaction, server, task)

    @app_commands.command(name=_("probe"), description=_("Check again what a server offers"))
    @app_commands.describe(server=_("Which server"))
    async def probe(self, interaction: Interaction, server: str | None = None) -> None:
        upstream = await self.cog.resolve(interaction, server)
        await interaction.response.defer(ephemeral=True, thinking=True)
        caps = await interaction.client.capabilities.get(upstream, refresh=True)
        locale = locale_of(interaction)
        await reply(
            interaction,
            t(
                "accounts.probed",
                locale,
                server=_escape(self.cog.server_name(upstream, locale)),
                flavor=t(f"accounts.flavor_{caps.flavor.replace('-', '_')}", locale),
            ),
        )

    @panel.autocomplete("server")
    @sync.autocomplete("server")
    @enable.autocomplete("server")
    @reconnect.autocomplete("server")
    @version.autocomplete("server")
    @cancel.autocomplete("server")
    @probe.autocomplete("server")
    async def server_autocomplete(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self.cog.server_choices(interaction, current)

    @sync.autocomplete("account")
    @enable.autocomplete("account")
    @reconnect.autocomplete("account")
    @version.autocomplete("account")
    async def account_autocomplete(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self.cog.account_choices(interaction, current)

    @version.autocomplete("version")
    async def version_autocomplete(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await self.cog.version_choices(interaction, current)


@app_commands.describe(channel=_("The channel (leave empty to turn alerts off)"))
async def alerts_channel(interaction: Interaction, channel: discord.TextChannel | None = None) -> None:
    """/mjadmin settings alerts_channel: a manager picks the channel; the bot owner's also gets the
    alerts of the .env key's and the global keys' servers."""
    if interaction.guild_id is None or not await is_manager(interaction):
        raise NotAllowed()
    bot = interaction.client
    locale = locale_of(interaction)
    owner = await is_bot_owner(interaction)
    await bot.alert_channels.set(interaction.guild_id, channel.id if channel else None, owner=owner)
    log.info(
        "Guild %s account alerts channel set to %s by user %s",
        interaction.guild_id,
        channel and channel.id,
        interaction.user.id,
    )
    if channel is None:
        await reply(interaction, t("accounts.alerts_off", locale))
    else:
        key = "accounts.alerts_on_owner" if owner else "accounts.alerts_on"
        await reply(interaction, t(key, locale, channel=channel.mention))


def extend_mjadmin(mjadmin: app_commands.Group, cog: Accounts | None) -> tuple[AccountsGroup, app_commands.Command]:
    """Add `accounts` and `settings alerts_channel` to a /mjadmin group (the Admin cog's, or a test's)."""
    group = AccountsGroup(cog)  # type: ignore[arg-type]  # None only for metadata (tests/test_i18n.py)
    mjadmin.add_command(group)
    # A Command of its own per call: it lives in the Admin cog's settings group.
    command: app_commands.Command = app_commands.Command(
        name=_("alerts_channel"),
        description=_("Where account alerts of your self-hosted servers go (none = off)"),
        callback=alerts_channel,
    )
    settings = mjadmin.get_command("settings")
    if isinstance(settings, app_commands.Group):
        settings.add_command(command)
    return group, command


class Accounts(commands.Cog):
    def __init__(self, bot: MJBot) -> None:
        self.bot = bot
        self._lists: dict[str, AccountList] = {}
        self._synced: dict[tuple[str, str], float] = {}

    def _mjadmin(self) -> app_commands.Group:
        group = self.bot.tree.get_command("mjadmin")
        if not isinstance(group, app_commands.Group):
            raise RuntimeError("cogs.accounts needs cogs.admin loaded first (/mjadmin)")
        return group

    async def cog_load(self) -> None:
        extend_mjadmin(self._mjadmin(), self)

    async def cog_unload(self) -> None:
        group = self.bot.tree.get_command("mjadmin")
        if isinstance(group, app_commands.Group):
            group.remove_command("accounts")
            settings = group.get_command("settings")
            if isinstance(settings, app_commands.Group):
                settings.remove_command("alerts_channel")

    # ---- which server --------------------------------------------------------------------------------

    async def administrable(self, interaction: Interaction) -> list[str]:
        """Upstreams this user may administer, the guild's own keys first."""
        keys = self.bot.keys.visible(interaction.guild_id)
        owner = await is_bot_owner(interaction)
        own = [k.upstream for k in keys if k.guild_id is not None and k.guild_id == interaction.guild_id]
        if not owner:
            return own if interaction.permissions.manage_guild else []
        shared = [k.upstream for k in keys if k.guild_id is None]
        default = [DEFAULT_UPSTREAM] if DEFAULT_UPSTREAM in self.bot.upstreams else []
        return own + shared + default

    def server_name(self, upstream: str, locale: str) -> str:
        return server_name(self.bot.keys, upstream, locale)

    async def resolve(self, interaction: Interaction, server: str | None) -> str:
        allowed = await self.administrable(interaction)
        if not allowed:
            raise NotAllowed("accounts.not_yours")
        if not server:
            return allowed[0]
        wanted = server.strip()
        if wanted not in allowed:
            raise NotAllowed("accounts.not_yours")
        return wanted

    async def server_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        locale = locale_of(interaction)
        lowered = current.lower()
        choices = []
        for upstream in await self.administrable(interaction):
            name = self.server_name(upstream, locale)
            if lowered in name.lower():
                choices.append(app_commands.Choice(name=render.truncate(name, 100), value=upstream))
        return choices[:25]

    # ---- reading -------------------------------------------------------------------------------------

    async def capabilities(self, upstream: str) -> Capabilities:
        return await self.bot.capabilities.get(upstream)

    async def account_list(self, upstream: str, *, refresh: bool = False) -> tuple[Capabilities, AccountList]:
        caps = await self.capabilities(upstream)
        if not caps.lists_accounts:
            raise InputError(f"accounts.cannot_list_{caps.flavor.replace('-', '_')}")
        cached = self._lists.get(upstream)
        if refresh or cached is None or time.time() - cached.read_at > LIST_TTL:
            cached = await self.bot.capabilities.api(upstream).accounts(caps)
            self._lists[upstream] = cached
        return caps, cached

    async def _panel(
        self, interaction: Interaction, upstream: str, page: int, *, refresh: bool
    ) -> tuple[str, PanelView]:
        locale = locale_of(interaction)
        caps, listed = await self.account_list(upstream, refresh=refresh)
        pages = max(1, -(-len(listed.accounts) // PAGE_SIZE))
        page = max(0, min(page, pages - 1))
        text = panel_text(self.server_name(upstream, locale), caps, listed, page, locale)
        return text, PanelView(self, upstream, interaction.user.id, page, pages)

    async def send_panel(self, interaction: Interaction, upstream: str, page: int) -> None:
        text, view = await self._panel(interaction, upstream, page, refresh=True)
        await interaction.followup.send(
            text, view=view, ephemeral=True, allowed_mentions=discord.AllowedMentions.none()
        )

    async def edit_panel(self, interaction: Interaction, upstream: str, page: int, *, refresh: bool) -> None:
        await interaction.response.defer()
        text, view = await self._panel(interaction, upstream, page, refresh=refresh)
        await interaction.edit_original_response(
            content=text, view=view, allowed_mentions=discord.AllowedMentions.none()
        )

    async def find_account(self, upstream: str, reference: str) -> tuple[Capabilities, Account]:
        caps, listed = await self.account_list(upstream)
        wanted = reference.strip()
        found = next((a for a in listed.accounts if a.id == wanted), None)
        found = found or next((a for a in listed.accounts if a.name.lower() == wanted.lower()), None)
        if found is None:
            raise InputError("accounts.unknown_account", account=_escape(render.truncate(wanted, 60)))
        return caps, found

    async def _upstream_of(self, interaction: Interaction) -> str | None:
        server = getattr(interaction.namespace, "server", None)
        try:
            return await self.resolve(interaction, server)
        except BotError:
            return None

    async def account_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        upstream = await self._upstream_of(interaction)
        if upstream is None:
            return []
        try:
            _, listed = await self.account_list(upstream)
        except BotError:
            return []
        lowered = current.lower()
        return [
            app_commands.Choice(name=render.truncate(a.name, 100), value=a.id)
            for a in listed.accounts
            if lowered in a.name.lower() or lowered in a.id.lower()
        ][:25]

    async def version_choices(self, interaction: Interaction, current: str) -> list[app_commands.Choice[str]]:
        upstream = await self._upstream_of(interaction)
        reference = getattr(interaction.namespace, "account", None)
        if upstream is None or not reference:
            return []
        try:
            _, account = await self.find_account(upstream, str(reference))
        except BotError:
            return []
        lowered = current.lower()
        return [
            app_commands.Choice(name=render.truncate(v.label, 100), value=v.value)
            for v in account.versions
            if lowered in v.label.lower() or lowered in v.value.lower()
        ][:25]

    # ---- writes, each after a confirmation ----------------------------------------------------------

    async def ask(self, interaction: Interaction, server: str | None, reference: str, what: str, **extra: str) -> None:
        """Check that the server offers `what` for this account, then ask for a confirmation."""
        upstream = await self.resolve(interaction, server)
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        caps, account = await self.find_account(upstream, reference)
        api = self.bot.capabilities.api(upstream)
        if what in ("sync", "enable", "reconnect") and not caps.manages_accounts:
            raise InputError("accounts.not_offered")
        if what == "version":
            if not caps.changes_version or not account.versions:
                raise InputError("accounts.no_versions")
            if extra["version"] not in {v.value for v in account.versions}:
                raise InputError("accounts.unknown_version", version=_escape(render.truncate(extra["version"], 60)))
        if what == "sync":
            last = self._synced.get((upstream, account.id))
            if last is not None and time.time() - last < SYNC_COOLDOWN:
                when = f"<t:{int(last + SYNC_COOLDOWN)}:R>"
                raise InputError("accounts.sync_cooldown", when=when)
        name = _escape(account.name)
        server_name = _escape(self.server_name(upstream, locale))
        user_id = interaction.user.id

        async def run(clicked: Interaction) -> str:
            log.info("Account %s on %s: %s confirmed by user %s", account.id, upstream, what, user_id)
            if what == "sync":
                self._synced[(upstream, account.id)] = time.time()  # a refused sync counts too on trueai
                try:
                    await api.sync(caps, account.id)
                except AdminRefused as exc:
                    raise AdminRefused(exc.detail + " — " + t("accounts.sync_hint", locale)) from None
            elif what == "enable":
                await api.enable(caps, account.id)
            elif what == "reconnect":
                await api.reconnect(caps, account.id)
            else:
                await api.change_version(caps, account.id, extra["version"])
            self._lists.pop(upstream, None)
            return t(f"accounts.done_{what}", locale, account=name, **{k: _escape(v) for k, v in extra.items()})

        question = t(
            f"accounts.ask_{what}",
            locale,
            account=name,
            server=server_name,
            **{k: _escape(v) for k, v in extra.items()},
        )
        await interaction.followup.send(
            question,
            view=ConfirmView(user_id, locale, run),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )

    async def ask_cancel(self, interaction: Interaction, server: str | None, task_id: str) -> None:
        upstream = await self.resolve(interaction, server)
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)
        caps = await self.capabilities(upstream)
        if not caps.cancels_tasks:
            raise InputError("accounts.no_cancel")
        task_id = task_id.strip()
        api = self.bot.capabilities.api(upstream)

        async def run(clicked: Interaction) -> str:
            await api.cancel_task(caps, task_id)
            log.info("Task %s on %s cancelled by admin %s", task_id, upstream, clicked.user.id)
            return t("accounts.done_cancel", locale, task=_escape(task_id))

        await interaction.followup.send(
            t("accounts.ask_cancel", locale, task=_escape(task_id), server=_escape(self.server_name(upstream, locale))),
            view=ConfirmView(interaction.user.id, locale, run),
            ephemeral=True,
        )


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Accounts(bot))
