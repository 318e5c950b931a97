"""Choosing and opening a backend from DATABASE_URL (or DATABASE_PATH)."""

from __future__ import annotations

from pathlib import Path

from bot.errors import ConfigError
from bot.storage.protocols import Storage
from bot.storage.sqlite import Store


def is_postgres(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


def sqlite_path(target: str) -> str:
    """The file behind a SQLite target: a plain path, or sqlite:///relative/path, sqlite:////abs/path,
    sqlite:///:memory:."""
    if target.startswith("sqlite:///"):
        return target.removeprefix("sqlite:///")
    if target.startswith("sqlite:"):
        raise ConfigError("DATABASE_URL for SQLite must look like sqlite:///path/to/file")
    return target


async def open_store(target: str | Path, *, owner: str | None = None, lease_seconds: float = 30.0) -> Storage:
    """Open (and migrate) the storage `target` names: a file path or sqlite:///path → SQLite,
    postgres:// or postgresql:// → PostgreSQL (asyncpg is imported only then: it is an optional extra)."""
    target = str(target)
    if not is_postgres(target):
        return await Store.open(sqlite_path(target), owner=owner, lease_seconds=lease_seconds)
    try:
        import asyncpg  # noqa: F401  (an optional extra: only a PostgreSQL target needs it)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "DATABASE_URL is PostgreSQL but asyncpg is not installed: pip install -e '.[postgres]'"
        ) from exc
    from bot.storage.postgres import PostgresStore

    return await PostgresStore.open(target, owner=owner, lease_seconds=lease_seconds)
