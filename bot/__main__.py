"""Entry point: `python -m bot` (or the `mj-bot` console script)."""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import signal
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TextIO

import discord
from dotenv import load_dotenv

from bot.config import ConfigError, Settings

if TYPE_CHECKING:
    from bot.bot import MJBot

log = logging.getLogger("bot")


class JsonFormatter(logging.Formatter):
    """LOG_FORMAT=json: one JSON object per line, for Docker/journald/Loki-style log collectors."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str, fmt: str = "text", *, stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))
    logging.getLogger("discord.http").setLevel(logging.WARNING)
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs full URLs at INFO


class GracefulExit:
    """SIGTERM (docker stop, systemctl stop) and SIGINT close the bot the orderly way (MJBot.close:
    in-flight edits land first) instead of dying mid-edit."""

    def __init__(self, bot: MJBot) -> None:
        self._bot = bot
        self._signals: list[signal.Signals] = []
        self.closing: asyncio.Task[None] | None = None

    def install(self) -> list[signal.Signals]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError):  # Windows, or not the main thread
                continue
            self._signals.append(sig)
        return list(self._signals)

    def remove(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.closing is None:
            log.info("%s received: finishing in-flight work, then stopping", sig.name)
            self.closing = asyncio.get_running_loop().create_task(self._bot.close())

    async def wait(self) -> None:
        """The close a signal started may outlive bot.start(): let it finish before the loop ends."""
        if self.closing is not None:
            await self.closing


async def run(settings: Settings) -> None:
    from bot.bot import MJBot
    from bot.upstream.keys import check_key_config

    await check_key_config(settings)  # before connecting: stored keys need KEY_ENCRYPTION_KEY
    async with MJBot(settings) as bot:
        graceful = GracefulExit(bot)
        graceful.install()
        try:
            await bot.start(settings.discord_token)
        finally:
            await graceful.wait()
            graceful.remove()


def main() -> int:
    load_dotenv()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level, settings.log_format)
    try:
        asyncio.run(run(settings))
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    except discord.LoginFailure:
        print("Discord rejected DISCORD_TOKEN: check the bot token in .env", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
