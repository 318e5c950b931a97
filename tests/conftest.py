"""Shared fixtures: the simulated midjourney-proxy, the fake Discord, and the real bot between them."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.bot import MJBot
from bot.config import Settings
from bot.upstream.simulator import SimulatedProxy
from tests.fakes.discord import FakeDiscord, FakeMessage

TOKEN = "fake-bot-token"
API_KEY = "sk-test-0123456789abcdef"


@pytest.fixture
async def mj() -> AsyncIterator[SimulatedProxy]:
    async with SimulatedProxy(flavor="relay", api_key=API_KEY, clock="reads", progress_steps=3) as proxy:
        yield proxy


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN) as fake:
        yield fake


@pytest.fixture
def settings(tmp_path: Path, mj: SimulatedProxy, discord_fake: FakeDiscord) -> Settings:
    return Settings(
        discord_token=TOKEN,
        api_base=mj.base_url,
        api_key=API_KEY,
        api_auth_style="bearer",
        database_path=tmp_path / "bot.sqlite3",
        dev_guild_id=discord_fake.guild.id,
        poll_interval=0.05,
        task_timeout=600.0,
        # The fake Discord's attachments stand in for Discord's CDN (public in production) on 127.0.0.1.
        key_allowed_hosts=(f"{discord_fake.host}:{discord_fake.port}",),
    )


class BotRunner:
    """Starts the real MJBot against the fakes; can stop and start it again on the same database."""

    def __init__(self, fake: FakeDiscord, settings: Settings) -> None:
        self.fake = fake
        self.settings = settings
        self.bot: MJBot | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self, **changes: Any) -> MJBot:
        if changes:
            self.settings = dataclasses.replace(self.settings, **changes)
        bot = MJBot(self.settings, guild_ready_timeout=0.05)
        self.bot = bot
        self._task = asyncio.create_task(bot.start(TOKEN))
        await self.fake.wait_for(lambda: bot.is_ready() or self._task.done(), timeout=15)  # type: ignore[union-attr]
        if self._task.done():
            await bot.close()
            self._task.result()
        return bot

    async def stop(self) -> None:
        if self.bot is not None:
            await self.bot.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
        self.bot = None
        self._task = None

    async def kill(self) -> None:
        """Stop without the bot's own shutdown work (as close as one process gets to SIGKILL):
        the tracker and the gateway are cancelled mid-flight; only file handles are released."""
        bot = self.bot
        assert bot is not None and self._task is not None
        await bot.tracker.stop()
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
        with contextlib.suppress(Exception):
            await bot.close()
        self.bot = None
        self._task = None

    async def restart(self, **changes: Any) -> MJBot:
        await self.stop()
        return await self.start(**changes)


#: Tests run a task's whole life in a fraction of a second (polls every 0.05 s, one step per read), so
#: Discord's per-channel window (5 writes per 5 s, which the tracker paces to) is compressed with it.
E2E_CHANNEL_WINDOW = 0.25


@pytest.fixture
async def runner(discord_fake: FakeDiscord, settings: Settings) -> AsyncIterator[BotRunner]:
    runner = BotRunner(discord_fake, dataclasses.replace(settings, discord_channel_window=E2E_CHANNEL_WINDOW))
    yield runner
    await runner.stop()


@pytest.fixture
async def bot(runner: BotRunner) -> MJBot:
    return await runner.start()


def is_done(message: FakeMessage) -> bool:
    return bool(message.attachments) and bool(message.buttons)


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(logging.Formatter().format(r) for r in caplog.records)
