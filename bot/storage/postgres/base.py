"""The PostgreSQL pool: opening and migrating the database, and the one path every statement takes.

Each concern (tasks, leases, clicks, ...) is a section class in this folder built on `PostgresBase`;
`bot.storage.postgres.PostgresStore` puts them together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import asyncpg

from bot.storage.common import default_owner, migrations, retry_delay

log = logging.getLogger(__name__)

T = TypeVar("T")
P = TypeVar("P", bound="PostgresBase")

#: Errors that say the connection or the transaction failed, not the statement: worth running again.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # includes TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)

#: pg_advisory_xact_lock key held while migrating, so two processes starting at once apply each
#: migration exactly once (any constant unlikely to clash with another application's locks).
_MIGRATION_LOCK = 0x6D6A626F74  # "mjbot"


def assignments(names: Iterable[str], start: int = 1) -> str:
    """`a = $1, b = $2, ...` for an UPDATE's SET."""
    return ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start))


def placeholders(count: int, start: int = 1) -> str:
    """`$1, $2, ...` for a VALUES list."""
    return ", ".join(f"${i}" for i in range(start, start + count))


def affected(status: str) -> int:
    """Rows a command touched, from asyncpg's status string ("UPDATE 3", "INSERT 0 1")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresBase:
    """The pool, the retry path and the schema; the sections add the statements."""

    #: Tries of a statement whose connection or transaction failed (backoff doubles from `write_backoff`).
    write_attempts: int = 6
    write_backoff: float = 0.2
    #: Connections in the pool: the tracker, commands and the web server query at the same time.
    pool_min: int = 1
    pool_max: int = 10

    def __init__(self, pool: asyncpg.Pool, *, owner: str | None = None, lease_seconds: float = 30.0) -> None:
        self._pool = pool
        #: This process's name in task leases, and how long a claimed or renewed lease lasts.
        self.owner: str = owner or default_owner()
        self.lease_seconds: float = lease_seconds

    @classmethod
    async def open(cls: type[P], url: str, *, owner: str | None = None, lease_seconds: float = 30.0) -> P:
        pool = await asyncpg.create_pool(url, min_size=cls.pool_min, max_size=cls.pool_max)
        store = cls(pool, owner=owner, lease_seconds=lease_seconds)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate(self) -> None:
        """Each pending migration in its own transaction, under an advisory lock, recorded in
        schema_migrations: a second process starting at the same time waits, then finds it applied."""
        async with self._pool.acquire() as conn:
            for version, script in migrations("postgres"):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                    )
                    current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                    if version <= current:
                        continue
                    await conn.execute(script)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", version, time.time()
                    )
                    log.info("Applied PostgreSQL migration %04d", version)

    async def schema_version(self) -> int:
        return int(await self._run(lambda c: c.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")))

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]], *, write: bool = False) -> T:
        """Run `work` on a pooled connection (in one transaction when it writes). A lost connection, a
        restarting server, a serialization failure or a deadlock rolls back and runs it again after a
        doubling wait, like SQLite's locked database; after `write_attempts` (or any other error) it raises."""
        attempt = 1
        while True:
            try:
                async with self._pool.acquire() as conn:
                    if not write:
                        return await work(conn)
                    async with conn.transaction():
                        return await work(conn)
            except _TRANSIENT as exc:
                if attempt >= self.write_attempts:
                    raise
                delay = retry_delay(attempt, self.write_backoff)
                retries = self.write_attempts - 1
                log.warning("Database statement failed (%r); retry %d/%d in %.1f s", exc, attempt, retries, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        return await self._run(lambda c: c.fetch(sql, *params))

    async def _fetchrow(self, sql: str, *params: Any) -> asyncpg.Record | None:
        return await self._run(lambda c: c.fetchrow(sql, *params))

    async def _fetchval(self, sql: str, *params: Any) -> Any:
        return await self._run(lambda c: c.fetchval(sql, *params))

    async def _execute(self, sql: str, *params: Any) -> str:
        return await self._run(lambda c: c.execute(sql, *params), write=True)

    async def _write_fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        """A writing statement whose RETURNING rows the caller needs."""
        return await self._run(lambda c: c.fetch(sql, *params), write=True)

    async def _write_fetchval(self, sql: str, *params: Any) -> Any:
        return await self._run(lambda c: c.fetchval(sql, *params), write=True)
