"""The Bot subclass: owns every resource, opened in `setup_hook` and released in `close`."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

import discord
from discord import app_commands
from discord.ext import commands

from bot.client import MJClient, UpstreamConfig
from bot.config import Settings
from bot.errors import NotAllowed
from bot.images import ImageFetcher
from bot.jobs import Jobs
from bot.responder import report_error
from bot.store import Store
from bot.tracker import Tracker, TrackerSettings

log = logging.getLogger(__name__)

EXTENSIONS: tuple[str, ...] = (
    "cogs.imagine",
    "cogs.blend",
    "cogs.describe",
    "cogs.shorten",
    "cogs.swapface",
    "cogs.actions",
)


class MJCommandTree(app_commands.CommandTree["MJBot"]):
    async def on_error(self, interaction: discord.Interaction[MJBot], error: app_commands.AppCommandError) -> None:
        original: BaseException = error
        if isinstance(error, app_commands.CommandInvokeError):
            original = error.original
        elif isinstance(error, app_commands.CheckFailure):
            original = NotAllowed()
        await report_error(interaction, original)


class MJBot(commands.Bot):
    """Resources (store, API clients, tracker) exist only between setup_hook and close."""

    store: Store
    jobs: Jobs
    tracker: Tracker
    fetcher: ImageFetcher

    def __init__(self, settings: Settings, *, extensions: tuple[str, ...] = EXTENSIONS, **options: Any) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
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
        self.upstreams: dict[str, MJClient] = {}
        self._simulator: Any = None

    async def setup_hook(self) -> None:
        settings = self.settings
        self.store = await Store.open(settings.database_path)
        base_url = settings.api_base
        if settings.uses_simulator:
            from bot.simulator import SimulatedProxy

            self._simulator = SimulatedProxy(clock="time")
            base_url = await self._simulator.start()
            log.info("Try-it mode: using the built-in simulated midjourney-proxy at %s", base_url)
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
        self.fetcher = ImageFetcher()
        self.tracker = Tracker(
            self,
            self.store,
            self.upstreams,
            self.fetcher,
            TrackerSettings(
                poll_interval=settings.poll_interval,
                batch_size=settings.poll_batch_size,
                task_timeout=settings.task_timeout,
                max_upload_bytes=settings.max_upload_bytes,
            ),
        )
        self.jobs = Jobs(self.store, self.upstreams, self.tracker)
        for extension in self._extensions:
            await self.load_extension(extension)
        await self.tracker.resume()
        self.tracker.start()  # waits for READY inside its own task, never here
        if settings.sync_commands:
            await self.sync_commands_if_changed()

    def command_tree_hash(self, guild: discord.abc.Snowflake | None = None) -> str:
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands(guild=guild)]
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    async def sync_commands_if_changed(self) -> None:
        """Sync only when the command tree changed, so restarts do not hit Discord's sync limits."""
        guild = discord.Object(self.settings.dev_guild_id) if self.settings.dev_guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        scope = f"sync:{guild.id if guild else 'global'}"
        digest = self.command_tree_hash(guild)
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
        tracker = getattr(self, "tracker", None)
        if tracker is not None:
            await tracker.stop()
        await super().close()
        for client in self.upstreams.values():
            await client.aclose()
        fetcher = getattr(self, "fetcher", None)
        if fetcher is not None:
            await fetcher.aclose()
        if self._simulator is not None:
            await self._simulator.stop()
        store = getattr(self, "store", None)
        if store is not None:
            await store.close()

    async def on_ready(self) -> None:
        user = self.user
        log.info("Logged in as %s (%s) in %d server(s)", user, user.id if user else "?", len(self.guilds))
