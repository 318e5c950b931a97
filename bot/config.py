"""Typed settings, read once from the environment (after `.env` is loaded) in `__main__`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

AUTH_STYLES = ("bearer", "mj-api-secret", "raw")
MODES = ("", "fast", "relax", "turbo")
SIMULATOR = "simulator"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the setting, never a secret's value."""


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


@dataclass(frozen=True, slots=True)
class Settings:
    discord_token: str = field(repr=False)
    api_base: str
    api_key: str = field(default="", repr=False)
    api_auth_style: str = "bearer"
    api_mode: str = ""
    api_timeout: float = 30.0
    database_path: Path = Path("data/bot.sqlite3")
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

    @property
    def uses_simulator(self) -> bool:
        return self.api_base.lower() == SIMULATOR

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        token = _get(env, "DISCORD_TOKEN")
        if not token:
            raise ConfigError("DISCORD_TOKEN is not set: put your bot token in .env (see .env.example)")
        api_base = _get(env, "MJ_API_BASE").rstrip("/")
        if not api_base:
            raise ConfigError(
                "MJ_API_BASE is not set: put your midjourney-proxy base URL in .env, "
                "or MJ_API_BASE=simulator to try the bot without one"
            )
        if api_base.lower() != SIMULATOR and not api_base.startswith(("http://", "https://")):
            raise ConfigError(f"MJ_API_BASE must start with http:// or https://, got {api_base!r}")
        dev_guild = _get(env, "DEV_GUILD_ID")
        if dev_guild and not dev_guild.isdigit():
            raise ConfigError(f"DEV_GUILD_ID must be a server id (digits), got {dev_guild!r}")
        return cls(
            discord_token=token,
            api_base=api_base,
            api_key=_get(env, "MJ_API_KEY"),
            api_auth_style=_choice(env, "MJ_AUTH_STYLE", AUTH_STYLES, "bearer"),
            api_mode=_choice(env, "MJ_MODE", MODES, ""),
            api_timeout=_float(env, "MJ_API_TIMEOUT", 30.0, minimum=1.0),
            database_path=Path(_get(env, "DATABASE_PATH", "data/bot.sqlite3")),
            dev_guild_id=int(dev_guild) if dev_guild else None,
            sync_commands=_get(env, "SYNC_COMMANDS", "true").lower() not in ("0", "false", "no", "off"),
            poll_interval=_float(env, "POLL_INTERVAL", 3.0, minimum=0.05),
            poll_batch_size=_int(env, "POLL_BATCH_SIZE", 100, minimum=1),
            task_timeout=_float(env, "TASK_TIMEOUT", 3600.0, minimum=1.0),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1024),
            max_image_bytes=_int(env, "MAX_IMAGE_BYTES", 10 * 1024 * 1024, minimum=1024),
            max_request_bytes=_int(env, "MAX_REQUEST_BYTES", 20 * 1024 * 1024, minimum=1024),
            default_locale=_choice(env, "DEFAULT_LOCALE", ("en", "zh-cn"), "en"),
            log_level=_get(env, "LOG_LEVEL", "INFO").upper() or "INFO",
        )
