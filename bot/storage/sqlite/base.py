"""The SQLite connection: opening and migrating the file, and the one path every write takes.

Each concern (tasks, leases, clicks, ...) is a section class in this folder built on `SqliteBase`;
`bot.storage.sqlite.Store` puts them together.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from bot.storage.common import default_owner, migrations, retry_delay

try:
    import fcntl
except ImportError:  # Windows: one process per database file there
    fcntl = None  # type: ignore[assignment]  # the module or None: checked before each use

log = logging.getLogger(__name__)

T = TypeVar("T")
S = TypeVar("S", bound="SqliteBase")

# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL: another connection holds the lock, or the
# disk is (for now) full or failing. Worth waiting for; anything else is a bug and raises at once.
_RETRYABLE_DB_ERRORS = frozenset({5, 6, 10, 13})


def _retryable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _RETRYABLE_DB_ERRORS
    text = str(exc).lower()
    return any(word in text for word in ("locked", "disk is full", "disk i/o"))


@contextlib.contextmanager
def _migration_lock(path: str | Path) -> Iterator[None]:
    """Several processes opening one new database file migrate it one after the other (SQLite's
    executescript commits before it starts, so a transaction alone cannot serialize them)."""
    if str(path) == ":memory:" or fcntl is None:
        yield
        return
    # The lock is on the database's folder, so no lock file is left beside the database (a file
    # deleted after use would let a third process lock a fresh one while the second holds the old).
    folder = os.open(Path(path).parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(folder, fcntl.LOCK_UN)
    finally:
        os.close(folder)


def _create_private(path: str | Path) -> None:
    """Create a new database file readable by this user only (0600): it holds members' prompts and
    settings and the encrypted API keys. SQLite gives the -wal and -shm files the database's mode. An
    existing file keeps its mode (the operator may have chosen it), with a warning if others can read it."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        mode = os.stat(path).st_mode & 0o777
        if mode & 0o077:
            log.warning("The database file %s can be read by other users (mode %03o): chmod 600 it", path, mode)


class SqliteBase:
    """The connection, the write path and the schema; the sections add the statements."""

    #: Seconds SQLite itself waits for another connection's lock before a write fails.
    busy_timeout: float = 10.0
    #: Tries of a write that failed on a lock or a full disk (backoff doubles from `write_backoff`).
    write_attempts: int = 6
    write_backoff: float = 0.2

    def __init__(
        self, connection: aiosqlite.Connection, *, owner: str | None = None, lease_seconds: float = 30.0
    ) -> None:
        self._db = connection
        self._write_lock = asyncio.Lock()
        #: This process's name in task leases, and how long a claimed or renewed lease lasts.
        self.owner: str = owner or default_owner()
        self.lease_seconds: float = lease_seconds

    @classmethod
    async def open(cls: type[S], path: str | Path, *, owner: str | None = None, lease_seconds: float = 30.0) -> S:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            _create_private(path)
        connection = await aiosqlite.connect(str(path), timeout=cls.busy_timeout)
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA synchronous=NORMAL")
        store = cls(connection, owner=owner, lease_seconds=lease_seconds)
        try:
            with _migration_lock(path):
                await store._migrate()
        except BaseException:
            await connection.close()  # aiosqlite's thread would otherwise keep the process alive
            raise
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        current = await self.schema_version()
        for version, script in migrations():
            if version <= current:
                continue
            # executescript commits first, so wrap the script and the version bump in one transaction.
            await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
            log.info("Applied database migration %04d", version)

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def _write(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` (its statements) and commit, one write at a time. While SQLite is locked by
        another connection or the disk is full, roll back, log, wait (doubling) and run it again, so
        a busy or full disk delays a write instead of losing it; after `write_attempts` it raises."""
        async with self._write_lock:
            attempt = 1
            while True:
                try:
                    result = await work()
                    await self._db.commit()
                    return result
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        await self._db.rollback()
                    if not _retryable(exc) or attempt >= self.write_attempts:
                        raise
                    delay = retry_delay(attempt, self.write_backoff)
                    retries = self.write_attempts - 1
                    log.warning("Database write failed (%s); retry %d/%d in %.1f s", exc, attempt, retries, delay)
                    await asyncio.sleep(delay)
                    attempt += 1

    async def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        async with self._db.execute(sql, params) as cursor:
            return await cursor.fetchone()

    async def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        async with self._db.execute(sql, params) as cursor:
            return list(await cursor.fetchall())
