"""Entry point: `python -m bot` (or the `mj-bot` console script)."""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import sys

import discord
from dotenv import load_dotenv

from bot.config import ConfigError, Settings


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-8s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))
    logging.getLogger("discord.http").setLevel(logging.WARNING)
    logging.getLogger("discord.gateway").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # httpx logs full URLs at INFO


async def run(settings: Settings) -> None:
    from bot.bot import MJBot

    async with MJBot(settings) as bot:
        await bot.start(settings.discord_token)


def main() -> int:
    load_dotenv()
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    setup_logging(settings.log_level)
    try:
        asyncio.run(run(settings))
    except discord.LoginFailure:
        print("Discord rejected DISCORD_TOKEN: check the bot token in .env", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
