"""What the command line does besides running the bot: `check`, `invite`, `backup`, `forget`,
`remove-commands`, and the start-up checks and summary `run` shares with them. Each verdict is one
line an operator can act on.

Nothing here prints a secret: databases are named without their password, keys not at all.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import errno
import os
import socket
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import discord

from bot.config import AUTH_STYLES, ConfigError, Settings
from bot.errors import BotError, InvalidRequest, QuotaExhausted, TaskNotFound, TransientError, Unauthorized
from bot.storage.factory import is_postgres, open_store, sqlite_path
from bot.upstream.client import MJClient, UpstreamConfig

#: Exit codes (README, "Command line").
EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_DISCORD, EXIT_DATABASE = 0, 1, 2, 3, 4
#: Seconds the start-up and `check` give the API to answer (the bot starts anyway after a warning).
PROBE_TIMEOUT = 10.0

#: What the bot needs in a channel: read it, post and edit results (embeds, attachments), reply to
#: the grid a button belongs to, and the same inside threads, where members can run commands too.
INVITE_PERMISSION_NAMES: dict[str, str] = {
    "view_channel": "View Channels",
    "send_messages": "Send Messages",
    "send_messages_in_threads": "Send Messages in Threads",
    "embed_links": "Embed Links",
    "attach_files": "Attach Files",
    "read_message_history": "Read Message History",
}
INVITE_PERMISSIONS = discord.Permissions(**dict.fromkeys(INVITE_PERMISSION_NAMES, True))
INVITE_SCOPES = ("bot", "applications.commands")


class StartupFailure(Exception):
    """The bot cannot start for a reason outside it; one line for the operator and an exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Verdict:
    """One line of `check`: what was checked, whether it is usable, and what was found."""

    subject: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.subject}: {self.detail}"


def describe_error(exc: BaseException) -> str:
    """'TypeName: message', one line (for verdicts and start-up failures)."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# ---- what the bot runs against, without secrets ----------------------------------------------


def describe_database(target: str) -> str:
    """'SQLite /path' or 'PostgreSQL user@host:port/db': never the password."""
    if not is_postgres(target):
        return f"SQLite {os.path.abspath(sqlite_path(target))}"
    url = urlsplit(target)
    user = f"{url.username}@" if url.username else ""
    port = f":{url.port}" if url.port else ""
    return f"PostgreSQL {user}{url.hostname or 'localhost'}{port}{url.path or ''}"


def api_host(settings: Settings) -> str:
    """MJ_API_BASE's host and port: never a user:password in it (httpx sends those as Basic auth)."""
    url = urlsplit(settings.api_base)
    return url.netloc.rpartition("@")[2]


def describe_api(settings: Settings) -> str:
    if settings.uses_simulator:
        return "the built-in simulator (try-it mode)"
    key = "a key" if settings.api_key else "no key"
    return f"{api_host(settings)} ({settings.api_auth_style} auth, {key})"


def describe_shards(settings: Settings) -> str:
    if settings.shard_ids is not None:
        return f"{','.join(map(str, settings.shard_ids))} of {settings.shard_count}"
    return f"all of {settings.shard_count}" if settings.shard_count else "all (Discord's recommended count)"


def describe_web(settings: Settings) -> str:
    if not settings.web_enabled:
        return "off"
    port = settings.web_port if settings.web_port is not None else 8080
    public = f", public at {settings.public_url}" if settings.public_url else ", /health only"
    return f"{settings.web_host}:{port}{public}"


def startup_summary(settings: Settings) -> str:
    return (
        f"Starting: API {describe_api(settings)}; database {describe_database(settings.database)}; "
        f"shards {describe_shards(settings)}; web server {describe_web(settings)}"
    )


# ---- the checks ------------------------------------------------------------------------------


async def probe_api(settings: Settings, *, within: float = PROBE_TIMEOUT) -> Verdict:
    """One authenticated read with the .env key. When the key is refused, the other auth styles are
    tried too, so the verdict can say which MJ_AUTH_STYLE the server wants."""
    if settings.uses_simulator:
        return Verdict("API", True, "the built-in simulator (nothing to reach)")
    host = api_host(settings)
    style = settings.api_auth_style
    outcome = await _try_key(settings, style, within)
    if outcome is None:
        if not settings.api_key:
            return Verdict("API", True, f"{host} answered without a key (MJ_API_KEY is empty)")
        return Verdict("API", True, f"{host} answered and accepted the key ({style} auth)")
    if isinstance(outcome, QuotaExhausted):
        return Verdict("API", False, f"{host} accepted the key ({style} auth) but says it has no credit left")
    if isinstance(outcome, Unauthorized):
        if not settings.api_key:
            return Verdict("API", False, f"{host} wants a key: set MJ_API_KEY")
        for other in AUTH_STYLES:
            if other != style and await _try_key(settings, other, within) is None:
                return Verdict(
                    "API",
                    False,
                    f"{host} refused the key with {style} auth but accepts it with {other}: set MJ_AUTH_STYLE={other}",
                )
        return Verdict("API", False, f"{host} refused the key ({style} auth): check MJ_API_KEY and MJ_AUTH_STYLE")
    return Verdict("API", False, f"{host} could not be used ({outcome.describe()}): check MJ_API_BASE")


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str

    def describe(self) -> str:
        return self.reason


async def _try_key(settings: Settings, style: str, within: float) -> Unauthorized | QuotaExhausted | _Failure | None:
    """None when the key works with `style`; else the error the server's answer became."""
    config = UpstreamConfig(
        name="default",
        base_url=settings.api_base,
        api_key=settings.api_key,
        auth_style=style,
        mode=settings.api_mode,
        timeout=min(settings.api_timeout, within),
    )
    async with MJClient(config, read_retries=0) as client:
        try:
            await asyncio.wait_for(client.check(), within)
        except (Unauthorized, QuotaExhausted) as exc:
            return exc
        except (TaskNotFound, InvalidRequest):
            pass  # an answer about the task itself: the key got past the server's auth
        except TransientError as exc:
            return _Failure(exc.detail or "no usable answer")
        except BotError as exc:
            return _Failure(f"an unexpected answer: {exc.detail or type(exc).__name__}")
        except TimeoutError:
            return _Failure(f"no answer within {within:g} s")
    return None


async def probe_database(settings: Settings) -> Verdict:
    """Reach the database without creating or migrating anything."""
    target = settings.database
    name = describe_database(target)
    if is_postgres(target):
        try:
            import asyncpg
        except ModuleNotFoundError:
            return Verdict("database", False, f"{name}: asyncpg is not installed (pip install '.[postgres]')")
        try:
            connection = await asyncio.wait_for(asyncpg.connect(target), PROBE_TIMEOUT)
        except Exception as exc:  # asyncpg raises many kinds; each is a verdict here, not a crash
            return Verdict("database", False, f"{name} cannot be reached ({describe_error(exc)}): check DATABASE_URL")
        try:
            version = await connection.fetchval("SHOW server_version")
        finally:
            await connection.close()
        return Verdict("database", True, f"{name} answered (PostgreSQL {version})")
    return await asyncio.to_thread(_probe_sqlite, Path(sqlite_path(target)), name)


def _probe_sqlite(path: Path, name: str) -> Verdict:
    if str(path) == ":memory:":
        return Verdict("database", True, "in memory (nothing is kept)")
    if not path.exists():
        folder = _nearest_existing(path.parent)
        if not _writable(folder):
            return Verdict("database", False, f"{name} does not exist and {folder} is not writable")
        return Verdict("database", True, f"{name} does not exist yet; it is created at the first start")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        return Verdict("database", False, f"{name} cannot be read ({describe_error(exc)})")
    if not _writable(path) or not _writable(path.parent):
        return Verdict("database", False, f"{name} (schema {version}) is not writable by this user")
    return Verdict("database", True, f"{name} (schema version {version})")


async def probe_stored_keys(settings: Settings) -> Verdict:
    """Can KEY_ENCRYPTION_KEY decrypt the API keys admins stored? Read-only: a `check` run by a newer
    version next to a running bot must not migrate or rewrite its database."""
    try:
        tokens = await _stored_key_tokens(settings.database)
    except Exception as exc:  # the database verdict already says why; this one only notes it
        return Verdict("stored API keys", False, f"not checked: the database could not be read ({describe_error(exc)})")
    if not tokens:
        return Verdict("stored API keys", True, "none (keys added with /mjadmin key add are stored encrypted)")
    if not settings.key_encryption_key:
        return Verdict(
            "stored API keys", False, f"{len(tokens)} stored, but KEY_ENCRYPTION_KEY is not set: the bot will not start"
        )
    from bot.upstream.keys import KeyCipher

    cipher = KeyCipher(settings.key_encryption_key)
    unreadable = 0
    for token in tokens:
        try:
            cipher.decrypt(token)
        except Exception:  # cryptography's InvalidToken, or a damaged row
            unreadable += 1
    if unreadable:
        return Verdict(
            "stored API keys",
            False,
            f"{unreadable} of {len(tokens)} cannot be decrypted with KEY_ENCRYPTION_KEY: the bot will not start",
        )
    return Verdict("stored API keys", True, f"{len(tokens)} stored, all decrypt with KEY_ENCRYPTION_KEY")


async def _stored_key_tokens(target: str) -> list[str]:
    """The encrypted secrets in api_keys; none when there is no database or no such table yet."""
    if is_postgres(target):
        import asyncpg

        connection = await asyncio.wait_for(asyncpg.connect(target), PROBE_TIMEOUT)
        try:
            if not await connection.fetchval("SELECT to_regclass('api_keys') IS NOT NULL"):
                return []
            return [row["token"] for row in await connection.fetch("SELECT token FROM api_keys")]
        finally:
            await connection.close()
    return await asyncio.to_thread(_sqlite_key_tokens, Path(sqlite_path(target)))


def _sqlite_key_tokens(path: Path) -> list[str]:
    if str(path) == ":memory:" or not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
        found = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'api_keys'")
        if found.fetchone() is None:
            return []
        return [row[0] for row in connection.execute("SELECT token FROM api_keys")]


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK)


def probe_web(settings: Settings) -> Verdict:
    """Can the web server listen where it is told to?"""
    if not settings.web_enabled:
        return Verdict("web server", True, "off (no PUBLIC_URL or WEB_PORT)")
    port = settings.web_port if settings.web_port is not None else 8080
    warning = ""
    if settings.public_url_is_plain_http:
        warning = "; WARNING: PUBLIC_URL is http://, so push secrets and editor links cross the network unencrypted"
    try:
        infos = socket.getaddrinfo(settings.web_host, port, type=socket.SOCK_STREAM)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as exc:
        hint = " (is the bot already running?)" if exc.errno == errno.EADDRINUSE else ""
        reason = exc.strerror or exc
        return Verdict("web server", False, f"cannot listen on {settings.web_host}:{port} ({reason}){hint}")
    return Verdict("web server", True, f"can listen on {describe_web(settings)}{warning}")


async def probe_discord(settings: Settings) -> Verdict:
    """Log in over REST (no gateway connection): proves the token and that Discord can be reached."""
    client = discord.Client(intents=discord.Intents(guilds=True))
    try:
        await asyncio.wait_for(client.login(settings.discord_token), PROBE_TIMEOUT)
        user = client.user
        return Verdict("Discord", True, f"token accepted: logged in as {user} (application {user.id if user else '?'})")
    except discord.LoginFailure:
        return Verdict("Discord", False, "rejected DISCORD_TOKEN: reset it in the Developer Portal and copy it again")
    except (OSError, TimeoutError, discord.HTTPException) as exc:
        return Verdict("Discord", False, f"cannot be reached ({describe_error(exc)})")
    finally:
        await client.close()


async def check(settings: Settings, emit: Callable[[str], None]) -> int:
    """`mj-bot check`: one line per part, exit code 0 only when every part is usable."""
    verdicts = [Verdict("configuration", True, "valid")]
    emit(verdicts[0].line())
    for probe in (probe_discord(settings), probe_api(settings), probe_database(settings), probe_stored_keys(settings)):
        verdict = await probe
        verdicts.append(verdict)
        emit(verdict.line())
    verdicts.append(probe_web(settings))
    emit(verdicts[-1].line())
    return EXIT_OK if all(v.ok for v in verdicts) else EXIT_FAILED


# ---- invite ----------------------------------------------------------------------------------


def application_id_from_token(token: str) -> int | None:
    """A bot token's first part is the bot user's id in base64, which is the application's id."""
    head = token.split(".", 1)[0]
    try:
        decoded = base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return int(decoded) if decoded.isdigit() else None


def invite_url(application_id: int) -> str:
    scopes = "+".join(INVITE_SCOPES)
    return (
        f"https://discord.com/oauth2/authorize?client_id={application_id}"
        f"&scope={scopes}&permissions={INVITE_PERMISSIONS.value}"
    )


def invite_lines(token: str, client_id: int | None = None) -> list[str]:
    application_id = client_id or application_id_from_token(token)
    if application_id is None:
        raise ConfigError("cannot read the application id from DISCORD_TOKEN: pass --client-id (Developer Portal)")
    granted = ", ".join(INVITE_PERMISSION_NAMES.values())
    return [invite_url(application_id), f"permissions {INVITE_PERMISSIONS.value}: {granted}"]


# ---- backup ----------------------------------------------------------------------------------


def backup_sqlite(source: Path, destination: Path) -> int:
    """A consistent copy of a live database (SQLite's online backup API, WAL included); returns pages."""
    if not source.exists():
        raise StartupFailure(f"no database at {source}: nothing to back up", EXIT_DATABASE)
    if destination.exists():
        raise StartupFailure(f"{destination} already exists: choose a new file name", EXIT_FAILED)
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with (
            contextlib.closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True)) as src,
            contextlib.closing(sqlite3.connect(destination)) as dst,
        ):
            src.backup(dst)
            pages = int(dst.execute("PRAGMA page_count").fetchone()[0])
        destination.chmod(0o600)  # it holds the encrypted API keys and members' data
    except (OSError, sqlite3.Error) as exc:
        with contextlib.suppress(OSError):
            destination.unlink(missing_ok=True)  # no half-written copy that the next try calls "already exists"
        message = f"cannot back up {source} to {destination} ({describe_error(exc)})"
        raise StartupFailure(message, EXIT_FAILED) from None
    return pages


def pg_dump_line(target: str, destination: Path) -> str:
    """The command to run for PostgreSQL; the password stays out (pg_dump asks, or PGPASSWORD/.pgpass)."""
    url = urlsplit(target)
    parts = ["pg_dump", "--format=custom", f"--file={destination}"]
    if url.hostname:
        parts.append(f"--host={url.hostname}")
    if url.port:
        parts.append(f"--port={url.port}")
    if url.username:
        parts.append(f"--username={url.username}")
    parts.append(url.path.lstrip("/") or "postgres")
    return " ".join(parts)


def backup(settings: Settings, destination: Path) -> list[str]:
    if is_postgres(settings.database):
        return [
            "PostgreSQL: run this (it asks for the password, or reads PGPASSWORD / ~/.pgpass):",
            pg_dump_line(settings.database, destination),
        ]
    source = Path(sqlite_path(settings.database))
    pages = backup_sqlite(source, destination)
    return [f"backed up {source} to {destination} ({pages} pages)"]


# ---- start-up --------------------------------------------------------------------------------


def _database_failure(exc: BaseException) -> bool:
    """An error of the database or of reaching it (a verdict for the operator), not a bug of ours."""
    return isinstance(exc, OSError | sqlite3.Error | TimeoutError) or type(exc).__module__.startswith("asyncpg")


async def preflight_database(settings: Settings) -> None:
    """Open (and migrate) the database before Discord is contacted, so a database that cannot be
    reached or written is one clear line, not a traceback from inside discord.py's login."""
    target = settings.database
    try:
        store = await open_store(target, owner=settings.lease_owner, lease_seconds=settings.lease_seconds)
    except ConfigError:
        raise
    except Exception as exc:
        if not _database_failure(exc):
            raise
        if is_postgres(target):
            message = f"Database unreachable: {describe_database(target)} ({describe_error(exc)}): check DATABASE_URL"
        else:
            message = (
                f"Cannot create or open the database, {describe_database(target)} ({describe_error(exc)}): "
                "check DATABASE_PATH, and that its folder exists or can be made and this user may write it"
            )
        raise StartupFailure(message, EXIT_DATABASE) from None
    await store.close()


# ---- forget a member ---------------------------------------------------------------------------


def _forget_sqlite(path: Path, user_id: int) -> dict[str, int]:
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
        db.execute("PRAGMA foreign_keys=ON")
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        with_user = [t for t in tables if any(c[1] == "user_id" for c in db.execute(f'PRAGMA table_info("{t}")'))]
        removed: dict[str, int] = {}
        with db:  # one transaction: all of it or none
            for table in sorted(with_user, key=lambda t: t == "tasks"):  # tasks last (clicks point at them)
                removed[table] = db.execute(f'DELETE FROM "{table}" WHERE user_id = ?', (user_id,)).rowcount
    return removed


async def _forget_postgres(target: str, user_id: int) -> dict[str, int]:
    import asyncpg

    connection = await asyncio.wait_for(asyncpg.connect(target), PROBE_TIMEOUT)
    try:
        tables = [
            row["table_name"]
            for row in await connection.fetch(
                "SELECT table_name FROM information_schema.columns "
                "WHERE column_name = 'user_id' AND table_schema = current_schema()"
            )
        ]
        removed: dict[str, int] = {}
        async with connection.transaction():
            for table in sorted(tables, key=lambda t: t == "tasks"):
                status = await connection.execute(f'DELETE FROM "{table}" WHERE user_id = $1', user_id)
                removed[table] = int(status.rsplit(" ", 1)[-1])
    finally:
        await connection.close()
    return removed


async def forget(settings: Settings, user_id: int) -> list[str]:
    """`mj-bot forget USER_ID`: delete every row the bot keeps about one member (their tasks and the
    clicks on them, their /settings and /prefer, usage counters), found by the `user_id` column of
    every table, so tables added later are covered too. Their pictures already posted in Discord stay
    (they are Discord messages: delete those in Discord)."""
    try:
        if is_postgres(settings.database):
            removed = await _forget_postgres(settings.database, user_id)
        else:
            path = Path(sqlite_path(settings.database))
            if not await asyncio.to_thread(path.exists):
                raise StartupFailure(f"no database at {path}: nothing to delete", EXIT_DATABASE)
            removed = await asyncio.to_thread(_forget_sqlite, path, user_id)
    except Exception as exc:
        if not _database_failure(exc):
            raise
        name = describe_database(settings.database)
        message = f"{name}: cannot delete ({describe_error(exc)}); nothing was deleted"
        raise StartupFailure(message, EXIT_DATABASE) from None
    rows = ", ".join(f"{table} {count}" for table, count in sorted(removed.items()))
    return [f"deleted {sum(removed.values())} row(s) about user {user_id}: {rows}"]


# ---- remove the slash commands -----------------------------------------------------------------


async def remove_commands(settings: Settings) -> list[str]:
    """`mj-bot remove-commands`: unregister the bot's slash commands (global, and the DEV_GUILD_ID
    copy) with Discord, and forget the last sync, so the next start with SYNC_COMMANDS=true registers
    them again."""
    client = discord.Client(intents=discord.Intents(guilds=True))
    try:
        await client.login(settings.discord_token)
        application_id = client.application_id
        assert application_id is not None  # login always learns it
        await client.http.bulk_upsert_global_commands(application_id, [])
        lines = ["removed the global slash commands"]
        if settings.dev_guild_id:
            await client.http.bulk_upsert_guild_commands(application_id, settings.dev_guild_id, [])
            lines.append(f"removed the slash commands of server {settings.dev_guild_id} (DEV_GUILD_ID)")
    finally:
        await client.close()
    store = await open_store(settings.database, owner=settings.lease_owner, lease_seconds=settings.lease_seconds)
    try:
        for scope in ("sync:global", f"sync:{settings.dev_guild_id}"):
            await store.set_meta(scope, "")  # no digest matches: the next sync sends them again
    finally:
        await store.close()
    return lines
