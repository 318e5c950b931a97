"""The Bot subclass: owns every resource, opened in `setup_hook` and released in `close`."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import Approval, GuildGate, Place
from bot.alerts import AccountWatcher, AlertChannels, AlertPoster
from bot.config import Settings
from bot.errors import BotError, InputError, NotAllowed
from bot.i18n import CatalogTranslator
from bot.inputs import check_options
from bot.jobs import Jobs
from bot.net.addresses import AddressPolicy
from bot.net.fetcher import Fetcher, result_fetcher
from bot.policy import OwnerRules, Policy, channel_info_from
from bot.responder import report_error
from bot.storage.factory import open_store
from bot.storage.protocols import Storage
from bot.tracking.limits import InvalidRequests
from bot.tracking.settings import TrackerSettings
from bot.tracking.tracker import Tracker
from bot.upstream.capabilities import CapabilityMemory
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.keys import DEFAULT_UPSTREAM, KeyRing, Upstreams, cipher_from
from bot.web.server import WebDeps, WebServer, load_secrets

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = (
    "cogs.imagine",
    "cogs.blend",
    "cogs.describe",
    "cogs.shorten",
    "cogs.swapface",
    "cogs.actions",
    "cogs.admin",
    "cogs.me",
    "cogs.manage",
    "cogs.settings",
    "cogs.show",
    "cogs.info",
    "cogs.video",
    "cogs.edit",
    "cogs.accounts",  # after cogs.admin: it adds its commands to /mjadmin
)

# Seconds a shutdown (SIGTERM) waits for the tracker's queued Discord writes.
SHUTDOWN_GRACE = 10.0


class MJCommandTree(app_commands.CommandTree["MJBot"]):
    """The one error path of slash commands: a command raises BotError, this answers privately
    (after clearing a "thinking…" message); options only a modified client can send are refused."""

    async def interaction_check(self, interaction: discord.Interaction[MJBot]) -> bool:
        """Every slash command (and autocomplete) first: is this server approved (buttons and modals
        ask the same gate in bot/policy.py check_click), then are its options ones Discord sends?"""
        bot = interaction.client
        try:
            await bot.gate.check(Place.of(interaction), is_owner=lambda: bot.is_bot_owner(interaction.user))
        except NotAllowed as refused:
            if interaction.type is discord.InteractionType.application_command:
                await report_error(interaction, refused)
            return False
        try:
            check_options(interaction)
        except BotError as refused:
            log.info("Refused /%s: %s", interaction.command.qualified_name if interaction.command else "?", refused.key)
            await report_error(interaction, refused)
            return False
        return True

    async def on_error(self, interaction: discord.Interaction[MJBot], error: app_commands.AppCommandError) -> None:
        original: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            original = error.original
        elif isinstance(error, app_commands.CheckFailure):
            original = NotAllowed()
        elif isinstance(error, app_commands.TransformerError | app_commands.CommandSignatureMismatch):
            # Values Discord's client would not send, or a command list out of date: not our error.
            log.info("Refused a command with unexpected options: %s", type(error).__name__)
            original = InputError("input.bad_options")
        await report_error(interaction, original)


class MJBot(commands.AutoShardedBot):
    """Resources (store, API clients, tracker) exist only between setup_hook and close.

    Auto-sharded: one process holds Discord's recommended shards, or SHARD_IDS of SHARD_COUNT when
    several processes share one bot (all their state is in the database)."""

    store: Storage
    jobs: Jobs
    tracker: Tracker
    fetcher: Fetcher
    keys: KeyRing
    policy: Policy
    capabilities: CapabilityMemory
    alert_channels: AlertChannels
    account_watcher: AccountWatcher
    gate: GuildGate

    def __init__(self, settings: Settings, *, extensions: tuple[str, ...] = EXTENSIONS, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        options.setdefault("shard_count", settings.shard_count)
        options.setdefault("shard_ids", list(settings.shard_ids) if settings.shard_ids is not None else None)
        #: 401/403/429 answers of the last 10 minutes (Discord bans the IP at 10,000): counted on
        #: every response of the bot's HTTP session, warned about long before.
        self.invalid_requests = InvalidRequests()
        options.setdefault("http_trace", self.invalid_requests.trace_config())
        super().__init__(
            **options,
            command_prefix=commands.when_mentioned,
            intents=intents,
            tree_cls=MJCommandTree,
            help_command=None,
            allowed_mentions=discord.AllowedMentions(everyone=False, roles=False, users=True),
        )
        self.settings = settings
        self._extensions = extensions
        #: The one rule for connections made for others (downloads, guild admins' API servers).
        self.address_policy = AddressPolicy(allowed_pairs=frozenset(settings.key_allowed_hosts))
        # "default" (the .env key) plus one lazily created client per admin-managed key.
        self.upstreams: Upstreams = Upstreams(self.address_policy)
        self._simulator: Any = None
        #: The HTTP server (push updates, Vary (Region) editor, /health); None unless PUBLIC_URL/WEB_PORT.
        self.web: WebServer | None = None

    async def setup_hook(self) -> None:
        settings = self.settings
        self.store = await open_store(
            settings.database, owner=settings.lease_owner, lease_seconds=settings.lease_seconds
        )
        await self.tree.set_translator(CatalogTranslator())
        base_url = settings.api_base
        if settings.uses_simulator:
            from bot.upstream.simulator import SimulatedProxy

            self._simulator = SimulatedProxy(clock="time", step_seconds=settings.simulator_step_seconds)
            base_url = await self._simulator.start()
            log.info("Try-it mode: using the built-in simulated midjourney-proxy at %s", base_url)
        self.address_policy.trust(base_url)  # the operator's own upstream: its exact origin only
        self.upstreams["default"] = MJClient(
            UpstreamConfig(
                name="default",
                base_url=base_url,
                api_key=settings.api_key,
                auth_style=settings.api_auth_style,
                mode=settings.api_mode,
                timeout=settings.api_timeout,
            )
        )
        tracking = TrackerSettings.from_settings(settings)
        self.fetcher = result_fetcher(self.address_policy, tracking.download_concurrency)
        self.tracker = Tracker(self, self.store, self.upstreams, self.fetcher, tracking)
        self.keys = KeyRing(self.store, self.upstreams, cipher_from(settings), timeout=settings.api_timeout)
        await self.keys.load()  # ConfigError when stored keys cannot be decrypted
        owner_rules = OwnerRules(
            dm_commands=settings.dm_commands,
            dm_daily_quota=settings.dm_daily_quota,
            default_daily_quota=settings.default_daily_quota,
        )
        self.policy = Policy(self.store, channel_info_from(self), owner_rules)
        self.gate = GuildGate(Approval.from_settings(settings), self.store)
        self._warn_if_public()
        self.jobs = Jobs(self.store, self.upstreams, self.tracker, keys=self.keys, policy=self.policy)
        self.capabilities = CapabilityMemory(self.store, self.upstreams)
        self.alert_channels = AlertChannels(self.store)
        self.account_watcher = AccountWatcher(
            self.store,
            self.capabilities,
            self.watched_upstreams,
            AlertPoster(self, self.alert_channels, self.keys, default_locale=settings.default_locale),
            interval=settings.accounts_poll_interval,
            wait_ready=self.wait_until_ready,
        )
        for extension in self._extensions:
            await self.load_extension(extension)
        await self.tracker.resume()
        self.tracker.start()  # waits for READY inside its own task, never here
        if settings.shard_ids is None or 0 in settings.shard_ids:
            self.account_watcher.start()  # one process polls the accounts: the one with shard 0
        if settings.web_enabled:
            deps = WebDeps(client=self, store=self.store, tracker=self.tracker, jobs=self.jobs, fetcher=self.fetcher)
            web_server = WebServer(deps, settings, await load_secrets(self.store, settings))
            await web_server.start()
            self.web = web_server
            self.jobs.notify_hooks = web_server.notify_hook
        if settings.sync_commands:
            await self.sync_commands_if_changed()

    def watched_upstreams(self) -> list[str]:
        """Servers whose accounts are watched: the .env key's and every enabled stored key's."""
        names = [DEFAULT_UPSTREAM] if DEFAULT_UPSTREAM in self.upstreams else []
        return names + [key.upstream for key in self.keys.visible(None) if key.enabled]

    def _warn_if_public(self) -> None:
        application = self.application
        if application is not None and application.bot_public:
            log.warning(
                "'Public Bot' is on in the Discord developer portal: anyone can add this bot to their server. "
                "Servers you have not approved are ignored (ALLOWED_GUILDS, /mjadmin server approve), but "
                "switch 'Public Bot' off (Bot tab) so only you can invite it"
            )

    async def is_bot_owner(self, user: discord.abc.User) -> bool:
        """OWNER_IDS, else the application's owner (or team) as Discord reports it."""
        return user.id in self.settings.owner_ids or await self.is_owner(user)

    async def on_guild_join(self, guild: discord.Guild) -> None:
        if await self.gate.allows(guild.id):
            log.info("Joined server %r (%s), which is approved", guild.name, guild.id)
        else:
            log.warning(
                "Joined server %r (%s), which is not approved: the bot ignores it until a bot owner runs "
                "/mjadmin server approve there (or lists it in ALLOWED_GUILDS)",
                guild.name,
                guild.id,
            )

    async def command_tree_hash(self, guild: discord.abc.Snowflake | None = None) -> str:
        """Digest of exactly what a sync would send, translations included (a new zh-CN string resyncs)."""
        translator = self.tree.translator
        commands_ = self.tree.get_commands(guild=guild)
        if translator is not None:
            payload = [await command.get_translated_payload(self.tree, translator) for command in commands_]
        else:
            payload = [command.to_dict(self.tree) for command in commands_]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    async def sync_commands_if_changed(self) -> None:
        """Sync only when the command tree changed, so restarts do not hit Discord's sync limits."""
        guild = discord.Object(self.settings.dev_guild_id) if self.settings.dev_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        scope = f"sync:{guild.id if guild else 'global'}"
        digest = await self.command_tree_hash(guild)
        if await self.store.get_meta(scope) == digest:
            log.info("Slash commands unchanged; not syncing")
            return
        try:
            synced = await self.tree.sync(guild=guild)
        except discord.HTTPException as exc:
            log.warning("Syncing slash commands failed (HTTP %s); will try on next start", exc.status)
            return
        await self.store.set_meta(scope, digest)
        log.info("Synced %d slash command(s) %s", len(synced), "to the dev guild" if guild else "globally")

    async def close(self) -> None:
        # Shutdown order (SIGTERM too): take no more pushes and let accepted ones finish, let the
        # tracker send the edits it has queued, stop it, and only then leave Discord, so an edit in
        # flight lands before the gateway and the HTTP session go away.
        if self.web is not None:
            await self.web.stop()
            self.web = None
        tracker = getattr(self, "tracker", None)
        if tracker is not None:
            await self._drain(tracker)
            await tracker.stop()
            with contextlib.suppress(Exception):  # other processes take our tasks over at once
                await self.store.release_leases()
        watcher = getattr(self, "account_watcher", None)
        if watcher is not None:
            await watcher.stop()
        capabilities = getattr(self, "capabilities", None)
        if capabilities is not None:
            await capabilities.aclose()
        await super().close()
        jobs = getattr(self, "jobs", None)
        if jobs is not None:
            await jobs.aclose()
        keys = getattr(self, "keys", None)
        if keys is not None:
            await keys.aclose()
        await self.upstreams.aclose()
        fetcher = getattr(self, "fetcher", None)
        if fetcher is not None:
            await fetcher.aclose()
        if self._simulator is not None:
            await self._simulator.stop()
        store = getattr(self, "store", None)
        if store is not None:
            await store.close()

    async def _drain(self, tracker: Tracker) -> None:
        """Wait (at most SHUTDOWN_GRACE) until no Discord write is queued, being sent or retried."""
        if self.is_closed() or not self.is_ready() or not tracker.pending_writes:
            return
        log.info("Shutdown: waiting for %d message update(s) to land", tracker.pending_writes)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tracker.drain(), SHUTDOWN_GRACE)
        if tracker.pending_writes:
            log.warning("Shutdown: %d message update(s) did not land in time", tracker.pending_writes)

    async def on_ready(self) -> None:
        user = self.user
        log.info("Logged in as %s (%s) in %d server(s)", user, user.id if user else "?", len(self.guilds))
        ignored = [guild.id for guild in self.guilds if not await self.gate.allows(guild.id)]
        if ignored:
            log.warning(
                "%d server(s) are not approved and are ignored (e.g. %s): /mjadmin server approve, or ALLOWED_GUILDS",
                len(ignored),
                ", ".join(map(str, ignored[:5])),
            )
