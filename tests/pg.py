"""PostgreSQL fixtures for tests, on the throwaway server of bench/pg.py (Debian's `postgresql` binaries).

Use it from any test module (the fixture functions have a `_fixture` suffix so that ruff does not see
the test arguments as redefinitions; the fixtures themselves are named `postgres_server`, `backend`):

    from tests.pg import PostgresServer, postgres_server_fixture  # noqa: F401

    async def test_x(postgres_server: PostgresServer) -> None:
        url = postgres_server.create_database()   # a fresh, empty database: postgresql://...
        store = await PostgresStore.open(url)

Tests that should run on both storage backends take the `backend` fixture (import `backend_fixture`
together with `postgres_server_fixture`, which it uses): `store = await backend.open("owner-a")` opens
another store (as another process would) on one shared database, SQLite file or PostgreSQL database.

Without `initdb`/`pg_ctl` the fixture skips the test, unless REQUIRE_POSTGRES=1 (CI), where it fails.
PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.pg import PostgresServer, PostgresUnavailable, find_bin_dir
from bot.storage.factory import open_store
from bot.storage.protocols import Storage
from bot.storage.sqlite import Store

__all__ = [
    "BACKENDS",
    "Backend",
    "PostgresServer",
    "PostgresUnavailable",
    "backend_fixture",
    "find_bin_dir",
    "postgres_server",
    "postgres_server_fixture",
    "require_asyncpg",
]


class _Shared:
    """The session's one server. Every module that imports the fixture gets its own (session-scoped)
    copy of it, so the copies share this instead of starting a server each."""

    server: PostgresServer | None = None
    error: PostgresUnavailable | None = None
    users = 0


def _acquire_shared() -> PostgresServer:
    if _Shared.error is not None:
        raise _Shared.error
    if _Shared.server is None:
        try:
            _Shared.server = PostgresServer().start()
        except PostgresUnavailable as exc:
            _Shared.error = exc
            raise
        atexit.register(_stop_shared)  # an interrupted run still removes its server
    _Shared.users += 1
    return _Shared.server


def _release_shared() -> None:
    _Shared.users -= 1
    if _Shared.users <= 0:
        _stop_shared()


def _stop_shared() -> None:
    if _Shared.server is not None:
        _Shared.server.stop()
        _Shared.server = None


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session; skips (or fails with REQUIRE_POSTGRES=1) without binaries."""
    try:
        server = _acquire_shared()
    except PostgresUnavailable as exc:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail(f"REQUIRE_POSTGRES=1 but PostgreSQL is unavailable: {exc}", pytrace=False)
        pytest.skip(f"PostgreSQL is unavailable ({exc}); install Debian's postgresql package to run these tests")
    try:
        yield server
    finally:
        _release_shared()


#: The brief's spelling; importing `postgres_server_fixture` instead avoids ruff's F811 on test arguments.
postgres_server = postgres_server_fixture


def require_asyncpg() -> None:
    """Skip (or, with REQUIRE_POSTGRES=1, fail) a PostgreSQL test when the optional driver is missing."""
    try:
        import asyncpg  # noqa: F401
    except ModuleNotFoundError:
        if os.environ.get("REQUIRE_POSTGRES") == "1":
            pytest.fail("REQUIRE_POSTGRES=1 but asyncpg is not installed: pip install -e '.[test,postgres]'")
        pytest.skip("asyncpg is not installed (pip install -e '.[postgres]')")


BACKENDS = ("sqlite", "postgres")


class Backend:
    """One shared database of one backend; `open()` gives another store on it, as another process."""

    def __init__(self, name: str, target: str) -> None:
        self.name = name
        self.target = target
        self._opened: list[Any] = []
        self._observer: Any = None

    async def open(self, owner: str = "test", lease_seconds: float = 30.0) -> Any:
        store = await open_store(self.target, owner=owner, lease_seconds=lease_seconds)
        assert isinstance(store, Storage)
        self._opened.append(store)
        return store

    async def sql(self, sql: str, *params: Any, store: Any = None) -> list[tuple[Any, ...]]:
        """Raw SQL (with ? placeholders) through `store`'s connection (default: an observer store of its
        own), to look behind the interface."""
        if store is None:
            if self._observer is None:
                self._observer = await self.open("observer")
            store = self._observer
        if isinstance(store, Store):
            async with store._db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
            await store._db.commit()
            return [tuple(row) for row in rows]
        numbered = iter(range(1, len(params) + 1))
        pg_sql = re.sub(r"\?", lambda _: f"${next(numbered)}", sql)
        async with store._pool.acquire() as conn:
            return [tuple(row) for row in await conn.fetch(pg_sql, *params)]

    async def close_all(self) -> None:
        for store in self._opened:
            with contextlib.suppress(Exception):
                await store.close()
        self._opened.clear()
        self._observer = None


@pytest.fixture(params=BACKENDS, name="backend")
async def backend_fixture(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """Each test once on a SQLite file and once on a fresh PostgreSQL database."""
    if request.param == "postgres":
        require_asyncpg()
        server: PostgresServer = request.getfixturevalue("postgres_server")
        target = server.create_database()
    else:
        target = str(tmp_path / "shared.sqlite3")
    shared = Backend(request.param, target)
    try:
        yield shared
    finally:
        await shared.close_all()
