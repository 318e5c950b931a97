"""Entry point: `python -m bot` (or the `mj-bot` console script), with its operator commands.

    mj-bot [--env-file PATH] [run]       run the bot (the default)
    mj-bot check                         config, Discord, API key and auth style, database, web server
    mj-bot invite                        the invite URL with the permissions integer
    mj-bot backup PATH                   a consistent copy of the database (PostgreSQL: the pg_dump line)
    mj-bot forget USER_ID                delete everything stored about one member
    mj-bot remove-commands               unregister the slash commands from Discord

`--help` and `--version` answer before anything is read or opened. Start-up failures outside the
bot (Discord or the database unreachable, a folder it cannot write) are one log line and an exit
code (bot/cli.py), in JSON too when LOG_FORMAT=json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import aiohttp
import discord
from dotenv import load_dotenv

from bot import __version__
from bot.config import ConfigError, Settings
from bot.logs import JsonFormatter, setup_logging

if TYPE_CHECKING:
    from bot.bot import MJBot

__all__ = ["GracefulExit", "JsonFormatter", "main", "setup_logging"]

log = logging.getLogger("bot")

#: Where `.env` is looked for when --env-file is not given: the current folder, then beside the code.
CODE_FOLDER = Path(__file__).resolve().parent.parent


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mj-bot",
        description="A Discord bot in front of a midjourney-proxy compatible API. Settings come from the "
        "environment and a .env file (see .env.example).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--env-file",
        type=Path,
        metavar="PATH",
        help="read settings from this file (default: .env in the current folder, else beside the code); "
        "a relative DATABASE_PATH is relative to this file's folder",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("run", help="run the bot (the default)")
    commands.add_parser(
        "check", help="check the settings, Discord, the API key and its auth style, the database, the web server"
    )
    invite = commands.add_parser("invite", help="print the URL that adds the bot to a server, with its permissions")
    invite.add_argument("--client-id", type=int, help="the application id, if it cannot be read from the token")
    backup = commands.add_parser(
        "backup", help="copy the SQLite database safely while the bot runs (PostgreSQL: print the pg_dump line)"
    )
    backup.add_argument("path", type=Path, help="the new backup file")
    forget = commands.add_parser(
        "forget", help="delete everything the bot stores about one member (tasks, settings, usage)"
    )
    forget.add_argument("user_id", type=int, help="the member's Discord user id")
    commands.add_parser(
        "remove-commands", help="unregister the slash commands from Discord (the next start registers them again)"
    )
    return parser


def find_env_file(explicit: Path | None) -> Path | None:
    """--env-file, else ./.env, else .env beside the code; None when there is none (environment only)."""
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"--env-file {explicit}: no such file")
        return explicit.resolve()
    for candidate in (Path.cwd() / ".env", CODE_FOLDER / ".env"):
        if candidate.is_file():
            return candidate.resolve()
    return None


def fail(message: str, *, json_lines: bool) -> None:
    """One line on stderr before logging is set up, in the format the logs would have used."""
    if json_lines:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        entry = {"time": now, "level": "CRITICAL", "logger": "bot", "message": message}
        print(json.dumps(entry, ensure_ascii=False), file=sys.stderr)
    else:
        print(message, file=sys.stderr)


def secrets_of(settings: Settings) -> list[str]:
    """Exact values no log line may contain (patterns in bot/logs.py catch the rest)."""
    from urllib.parse import urlsplit

    values = [settings.discord_token, settings.api_key, settings.notify_secret]
    values += settings.key_encryption_key.split(",")
    if settings.database_url:
        values.append(urlsplit(settings.database_url).password or "")
    values.append(urlsplit(settings.api_base).password or "")  # httpx sends it as Basic auth
    return [value for value in values if value]


async def run(settings: Settings) -> None:
    from bot import cli
    from bot.bot import MJBot
    from bot.upstream.keys import check_key_config

    # What cannot work at all fails first, in one line (database, stored keys); then the summary.
    await cli.preflight_database(settings)
    await check_key_config(settings)  # before connecting: stored keys need KEY_ENCRYPTION_KEY
    log.info("%s", cli.startup_summary(settings))
    if settings.public_url_is_plain_http:
        log.warning(
            "PUBLIC_URL is %s: plain http:// sends the push secret and the editor's links unencrypted; "
            "put an HTTPS reverse proxy in front and use its https:// address",
            settings.public_url,
        )
    api = await cli.probe_api(settings)
    if api.ok:
        log.info("API: %s", api.detail)
    else:
        log.warning("API: %s (starting anyway; commands will fail until this is fixed)", api.detail)
    async with MJBot(settings) as bot:
        graceful = GracefulExit(bot)
        graceful.install()
        try:
            await bot.start(settings.discord_token)
        except (OSError, TimeoutError, aiohttp.ClientError, discord.GatewayNotFound, discord.DiscordServerError) as exc:
            if bot.user is not None:  # logged in: the failure is ours (setup_hook), not Discord's
                raise
            reason = cli.describe_error(exc)
            message = f"Cannot reach Discord ({reason}): check this machine's network and DNS"
            raise cli.StartupFailure(message, cli.EXIT_DISCORD) from None
        finally:
            await graceful.wait()
            graceful.remove()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # --help and --version exit here, before anything is read
    json_lines = os.environ.get("LOG_FORMAT", "").strip().lower() == "json"
    try:
        env_file = find_env_file(args.env_file)
        if env_file is not None:
            load_dotenv(env_file)
        json_lines = os.environ.get("LOG_FORMAT", "").strip().lower() == "json"
        settings = Settings.from_env(base_dir=env_file.parent if env_file is not None else None)
    except ConfigError as exc:
        fail(f"Configuration error: {exc}", json_lines=json_lines)
        return 2
    setup_logging(settings.log_level, settings.log_format, secrets=secrets_of(settings))
    from bot import cli  # after --help: it imports the storage and API layers

    command = args.command or "run"
    try:
        return _dispatch(command, args, settings)
    except ConfigError as exc:
        log.critical("Configuration error: %s", exc)
        return 2
    except discord.LoginFailure:
        log.critical("Discord rejected DISCORD_TOKEN: check the bot token in .env")
        return 2
    except discord.PrivilegedIntentsRequired:
        log.critical("Discord refused an intent this bot asks for: check the Bot tab in the Developer Portal")
        return 2
    except cli.StartupFailure as exc:
        log.critical("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        log.critical("The bot stopped on an unexpected error", exc_info=exc)
        return 1


def _dispatch(command: str, args: argparse.Namespace, settings: Settings) -> int:
    from bot import cli

    if command == "check":
        return asyncio.run(cli.check(settings, print))
    if command == "invite":
        for line in cli.invite_lines(settings.discord_token, args.client_id):
            print(line)
        return 0
    if command == "remove-commands":
        for line in asyncio.run(cli.remove_commands(settings)):
            print(line)
        return 0
    if command == "forget":
        for line in asyncio.run(cli.forget(settings, args.user_id)):
            print(line)
        return 0
    if command == "backup":
        for line in cli.backup(settings, args.path):
            print(line)
        return 0
    asyncio.run(run(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
