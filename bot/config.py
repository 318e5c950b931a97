"""Typed settings, read once from the environment (after `.env` is loaded) in `__main__`."""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

# Defined with the other errors, so storage can raise it without importing config; re-exported here.
from bot.errors import ConfigError as ConfigError

AUTH_STYLES = ("bearer", "mj-api-secret", "raw")
MODES = ("", "fast", "relax", "turbo")
SIMULATOR = "simulator"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _get(env: Mapping[str, str], name: str, default: str = "") -> str:
    return env.get(name, default).strip()


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = _get(env, name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int = 0) -> int:
    raw = _get(env, name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    value = _get(env, name, default).lower()
    if value not in choices:
        shown = ", ".join(c or '""' for c in choices)
        raise ConfigError(f"{name} must be one of {shown}, got {value!r}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = _get(env, name).lower()
    if not raw:
        return default
    if raw not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be true or false, got {raw!r}")
    return raw in _TRUE


def _log_level(env: Mapping[str, str]) -> str:
    value = _get(env, "LOG_LEVEL", "INFO").upper() or "INFO"
    if value not in LOG_LEVELS:
        raise ConfigError(f"LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value


def _credential(env: Mapping[str, str], name: str) -> str:
    """A token or key: printable ASCII without spaces (a pasted value with a line break or a quote
    character fails here with its name, not later inside an HTTP header). Never echoed."""
    value = _get(env, name)
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in value):
        raise ConfigError(f"{name} contains spaces, line breaks or non-ASCII characters: paste it again")
    return value


def _host(env: Mapping[str, str], name: str, default: str) -> str:
    value = _get(env, name, default) or default
    if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", value):
        raise ConfigError(f"{name} must be an address to listen on (e.g. 127.0.0.1, 0.0.0.0 or ::), got {value!r}")
    return value


def _ids(env: Mapping[str, str], name: str) -> tuple[int, ...]:
    parts = _get(env, name).replace(",", " ").split()
    bad = [p for p in parts if not p.isdigit()]
    if bad:
        raise ConfigError(f"{name} must be Discord user ids (digits) separated by commas, got {bad[0]!r}")
    return tuple(int(p) for p in parts)


def _host_ports(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    """`host:port` pairs ([v6]:port for IPv6), port required: an exception covers one service, not
    every port of a machine."""
    from bot.net.addresses import parse_host_port

    pairs = []
    for entry in _get(env, name).replace(",", " ").split():
        pair = parse_host_port(entry)
        if pair is None:
            raise ConfigError(f"{name} takes host:port pairs (e.g. 127.0.0.1:8080), got {entry!r}")
        pairs.append(pair)
    return tuple(pairs)


def _guilds(env: Mapping[str, str], name: str) -> tuple[tuple[int, ...], bool]:
    """Server ids separated by commas, or `*` for every server: (ids, every server)."""
    parts = _get(env, name).replace(",", " ").split()
    if parts == ["*"]:
        return (), True
    bad = [p for p in parts if not p.isdigit()]
    if bad:
        raise ConfigError(f"{name} must be server ids (digits) separated by commas, or *, got {bad[0]!r}")
    return tuple(int(p) for p in parts), False


def fernet_keys(value: str) -> list[str]:
    """KEY_ENCRYPTION_KEY's keys: one, or several separated by commas while rotating (the first
    encrypts, all of them decrypt)."""
    return [key.strip() for key in value.split(",")]


def _fernet_key(env: Mapping[str, str], name: str) -> str:
    """Checked here so a typo stops the bot at start, not at the first key an admin adds."""
    value = _get(env, name)
    if not value:
        return ""
    from cryptography.fernet import Fernet

    try:
        for key in fernet_keys(value):
            Fernet(key.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        # Never echo the value: it is a secret.
        raise ConfigError(
            f"{name} is not a valid key: generate one with "
            'python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
        ) from None
    return value


def _public_url(env: Mapping[str, str], name: str) -> str:
    """Where the API server and browsers reach this bot's HTTP server (reverse proxy or host:port)."""
    value = _get(env, name).rstrip("/")
    if value and not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", value):
        raise ConfigError(f"{name} must be an http:// or https:// URL without query, got {value!r}")
    return value


def _valid_port(url: str) -> bool:
    """False for a URL whose port is not a number (the value is never echoed: it may hold a password)."""
    try:
        urlsplit(url).port  # noqa: B018 (raises ValueError)
    except ValueError:
        return False
    return True


def _database_path(env: Mapping[str, str], base_dir: Path | None) -> Path:
    """DATABASE_PATH; a relative one is relative to `base_dir` (the .env file's folder) when given."""
    path = Path(_get(env, "DATABASE_PATH", "data/bot.sqlite3") or "data/bot.sqlite3")
    return base_dir / path if base_dir is not None and not path.is_absolute() else path


def _database_url(env: Mapping[str, str], base_dir: Path | None) -> str:
    """DATABASE_URL wins; else DATABASE_PATH (a SQLite file). Checked here so a typo stops the start.
    A relative SQLite path is relative to `base_dir` (the .env file's folder) when given."""
    url = _get(env, "DATABASE_URL")
    if not url:
        return str(_database_path(env, base_dir))
    if "://" in url and not url.startswith(("sqlite://", "postgres://", "postgresql://")):
        raise ConfigError("DATABASE_URL must be a file path, sqlite:///path or postgresql://user:pass@host/db")
    if url.startswith(("postgres://", "postgresql://")) and not _valid_port(url):
        raise ConfigError("DATABASE_URL has a port that is not a number")
    if base_dir is None or url.startswith(("postgres://", "postgresql://")):
        return url
    scheme = "sqlite:///" if url.startswith("sqlite:///") else ""
    path = url.removeprefix(scheme)
    if path == ":memory:" or path.startswith("sqlite:") or Path(path).is_absolute():
        return url  # a malformed sqlite: URL is refused with its own message when opened
    return f"{scheme}{base_dir / path}"


def _shards(env: Mapping[str, str]) -> tuple[int | None, tuple[int, ...] | None]:
    """(SHARD_COUNT, SHARD_IDS). Neither: Discord's recommended count, all shards in this process."""
    count = _int(env, "SHARD_COUNT", 0, minimum=0) or None
    raw = _get(env, "SHARD_IDS").replace(",", " ").split()
    if not raw:
        return count, None
    if count is None:
        raise ConfigError("SHARD_IDS needs SHARD_COUNT (the total number of shards across all processes)")
    if any(not part.isdigit() for part in raw):
        raise ConfigError(f"SHARD_IDS must be shard numbers separated by commas, got {' '.join(raw)!r}")
    ids = tuple(sorted({int(part) for part in raw}))
    if ids[-1] >= count:
        raise ConfigError(f"SHARD_IDS must be below SHARD_COUNT ({count}), got {ids[-1]}")
    return count, ids


def _port(env: Mapping[str, str], name: str) -> int | None:
    raw = _get(env, name)
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise ConfigError(f"{name} must be a port number from 1 to 65535, got {raw!r}")
    return int(raw)


def _secret(env: Mapping[str, str], name: str) -> str:
    value = _get(env, name)
    if value and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", value):
        # Never echo the value: it is a secret.
        raise ConfigError(f"{name} must be 16 to 128 letters, digits, '-' or '_'")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    discord_token: str = field(repr=False)
    api_base: str
    api_key: str = field(default="", repr=False)
    api_auth_style: str = "bearer"
    api_mode: str = ""
    api_timeout: float = 30.0
    database_path: Path = Path("data/bot.sqlite3")
    #: DATABASE_URL: a file path, sqlite:///path or postgresql://... ("" = database_path).
    database_url: str = field(default="", repr=False)  # may hold a database password
    # Scaling out (issue 8): this process's shards, its name in task leases, and the lease length.
    shard_count: int | None = None
    shard_ids: tuple[int, ...] | None = None
    instance_id: str = ""
    lease_seconds: float = 30.0
    # A task whose progress has not moved for this long is read again on its own (fetch), in case
    # the batch read keeps answering stale state.
    stall_seconds: float = 120.0
    # Discord's per-channel write window (5 writes per 5 s), which the tracker paces to; only a
    # stand-in for Discord with other buckets (the tests' fake) needs another value.
    discord_channel_window: float = 5.0
    # Bot-token writes per second, all bot processes together (Discord allows 50 per bot token;
    # edits through an interaction's token are exempt). Each process takes its share.
    discord_write_budget: int = 45
    dev_guild_id: int | None = None
    sync_commands: bool = True
    poll_interval: float = 3.0
    poll_batch_size: int = 100
    task_timeout: float = 3600.0
    max_upload_bytes: int = 10 * 1024 * 1024
    max_image_bytes: int = 10 * 1024 * 1024
    max_request_bytes: int = 20 * 1024 * 1024
    default_locale: str = "en"
    log_level: str = "INFO"
    log_format: str = "text"
    # The bot's own small HTTP server (issue 6): push updates, Vary (Region) editor, /health. On when
    # PUBLIC_URL or WEB_PORT is set; WEB_PORT 0 (tests) binds a free port.
    public_url: str = ""
    web_host: str = "127.0.0.1"
    web_port: int | None = None
    notify_secret: str = field(default="", repr=False)
    push_poll_interval: float | None = None  # None: POLL_INTERVAL (relays drop notifyHook)
    simulator_step_seconds: float = 2.0
    # Admin-managed API keys (issue 4): Fernet key for the stored secrets, extra bot owners, and the
    # host:port pairs on private addresses the bot may reach anyway (keys and downloads).
    key_encryption_key: str = field(default="", repr=False)
    owner_ids: tuple[int, ...] = ()
    key_allowed_hosts: tuple[str, ...] = ()
    # Issue 19: seconds between reads of the upstreams' Midjourney accounts for alerts (0 = off).
    accounts_poll_interval: float = 180.0
    # Who may use the bot (issue 15.7/15.3): servers the operator approved (ALLOWED_GUILDS, or
    # `/mjadmin server approve`; `*` = every server), commands in DMs, and the default daily caps.
    allowed_guilds: tuple[int, ...] = ()
    allow_every_guild: bool = False
    dm_commands: bool = False
    dm_daily_quota: int = 10
    default_daily_quota: int = 25

    @property
    def database(self) -> str:
        """Where the store lives: DATABASE_URL, or the DATABASE_PATH file."""
        return self.database_url or str(self.database_path)

    @property
    def lease_owner(self) -> str:
        """This process's name on the tasks it tracks: INSTANCE_ID, else host and shards, so a
        restarted process takes its own tasks back at once and two processes never share a name."""
        if self.instance_id:
            return self.instance_id
        shards = ",".join(map(str, self.shard_ids)) if self.shard_ids is not None else "all"
        return f"{socket.gethostname()}:shards-{shards}"

    @property
    def public_url_is_plain_http(self) -> bool:
        """Push secrets and editor links would cross the network in clear text (warned at start)."""
        return self.public_url.startswith("http://")

    @property
    def uses_simulator(self) -> bool:
        return self.api_base.lower() == SIMULATOR

    @property
    def web_enabled(self) -> bool:
        return bool(self.public_url) or self.web_port is not None

    @property
    def tracker_poll_interval(self) -> float:
        """Seconds between polls: PUSH_POLL_INTERVAL when pushes can arrive (PUBLIC_URL), else POLL_INTERVAL."""
        if self.public_url and self.push_poll_interval is not None:
            return self.push_poll_interval
        return self.poll_interval

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, base_dir: Path | None = None) -> Settings:
        """`base_dir`: the folder of the .env file read, against which relative database paths resolve."""
        env = os.environ if env is None else env
        token = _credential(env, "DISCORD_TOKEN")
        if not token:
            raise ConfigError("DISCORD_TOKEN is not set: put your bot token in .env (see .env.example)")
        api_base = _get(env, "MJ_API_BASE").rstrip("/")
        if not api_base:
            raise ConfigError(
                "MJ_API_BASE is not set: put your midjourney-proxy base URL in .env, "
                "or MJ_API_BASE=simulator to try the bot without one"
            )
        if api_base.lower() != SIMULATOR and not api_base.startswith(("http://", "https://")):
            shown = api_base.rpartition("@")[2]  # never a user:password typed before the host
            raise ConfigError(f"MJ_API_BASE must start with http:// or https://, got {shown!r}")
        if api_base.lower() != SIMULATOR and not _valid_port(api_base):
            raise ConfigError("MJ_API_BASE has a port that is not a number")
        dev_guild = _get(env, "DEV_GUILD_ID")
        allowed_guilds, allow_every_guild = _guilds(env, "ALLOWED_GUILDS")
        shard_count, shard_ids = _shards(env)
        if dev_guild and not dev_guild.isdigit():
            raise ConfigError(f"DEV_GUILD_ID must be a server id (digits), got {dev_guild!r}")
        return cls(
            discord_token=token,
            api_base=api_base,
            api_key=_credential(env, "MJ_API_KEY"),
            api_auth_style=_choice(env, "MJ_AUTH_STYLE", AUTH_STYLES, "bearer"),
            api_mode=_choice(env, "MJ_MODE", MODES, ""),
            api_timeout=_float(env, "MJ_API_TIMEOUT", 30.0, minimum=1.0),
            database_path=_database_path(env, base_dir),
            database_url=_database_url(env, base_dir),
            shard_count=shard_count,
            shard_ids=shard_ids,
            instance_id=_get(env, "INSTANCE_ID"),
            lease_seconds=_float(env, "LEASE_SECONDS", 30.0, minimum=2.0),
            stall_seconds=_float(env, "STALL_SECONDS", 120.0, minimum=1.0),
            discord_channel_window=_float(env, "DISCORD_CHANNEL_WINDOW", 5.0, minimum=0.01),
            discord_write_budget=_int(env, "DISCORD_WRITE_BUDGET", 45, minimum=1),
            dev_guild_id=int(dev_guild) if dev_guild else None,
            sync_commands=_bool(env, "SYNC_COMMANDS", True),
            poll_interval=_float(env, "POLL_INTERVAL", 3.0, minimum=0.05),
            poll_batch_size=_int(env, "POLL_BATCH_SIZE", 100, minimum=1),
            task_timeout=_float(env, "TASK_TIMEOUT", 3600.0, minimum=1.0),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1024),
            max_image_bytes=_int(env, "MAX_IMAGE_BYTES", 10 * 1024 * 1024, minimum=1024),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 20 * 1024 * 1024, minimum=1024),
            default_locale=_choice(env, "DEFAULT_LOCALE", ("en", "zh-cn"), "en"),
            log_level=_log_level(env),
            log_format=_choice(env, "LOG_FORMAT", LOG_FORMATS, "text"),
            public_url=_public_url(env, "PUBLIC_URL"),
            web_host=_host(env, "WEB_HOST", "127.0.0.1"),
            web_port=_port(env, "WEB_PORT"),
            notify_secret=_secret(env, "NOTIFY_SECRET"),
            push_poll_interval=_float(env, "PUSH_POLL_INTERVAL", 0.0, minimum=0.05)
            if _get(env, "PUSH_POLL_INTERVAL")
            else None,
            simulator_step_seconds=_float(env, "SIMULATOR_STEP_SECONDS", 2.0, minimum=0.05),
            key_encryption_key=_fernet_key(env, "KEY_ENCRYPTION_KEY"),
            owner_ids=_ids(env, "OWNER_IDS"),
            key_allowed_hosts=_host_ports(env, "KEY_ALLOWED_HOSTS"),
            accounts_poll_interval=_float(env, "ACCOUNTS_POLL_INTERVAL", 180.0, minimum=0.0),
            allowed_guilds=allowed_guilds,
            allow_every_guild=allow_every_guild,
            dm_commands=_bool(env, "DM_COMMANDS", False),
            dm_daily_quota=_int(env, "DM_DAILY_QUOTA", 10, minimum=0),
            default_daily_quota=_int(env, "DEFAULT_DAILY_QUOTA", 25, minimum=0),
        )
