"""A throwaway PostgreSQL server for tests, started from the local binaries (Debian's `postgresql`).

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
import glob
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.storage.sqlite import Storage, Store, open_store

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


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL binaries here, or the server would not start."""


def find_bin_dir() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else the newest /usr/lib/postgresql/*/bin."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for candidate in reversed(candidates):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One private cluster in a temporary folder: trust auth, 127.0.0.1 on a free port, its unix socket
    inside the folder. `create_database()` gives each test its own database."""

    user = "postgres"

    def __init__(self, bin_dir: Path | None = None) -> None:
        found = bin_dir or find_bin_dir()
        if found is None:
            raise PostgresUnavailable(
                "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql"
            )
        self.bin_dir = found
        self.port = 0
        self.root: Path | None = None
        self.start_seconds = 0.0
        self._names = itertools.count(1)
        self._as_user: list[str] = []

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    @property
    def url(self) -> str:
        """The maintenance database `postgres`."""
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        command = [*self._as_user, *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr or result.stdout}"
            )
        return result

    def start(self) -> PostgresServer:
        began = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="mjbot-pg-"))
        if os.geteuid() == 0:
            # postgres will not run as root: hand the folder to the postgres system user and run as it.
            if shutil.which("runuser"):
                self._as_user = ["runuser", "-u", "postgres", "--"]
            else:
                self._as_user = ["su", "postgres", "-s", "/bin/sh", "-c", 'exec "$0" "$@"']
            shutil.chown(self.root, "postgres", "postgres")
        os.chmod(self.root, 0o700)
        bin_ = self.bin_dir
        self._run(
            str(bin_ / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            self.user,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        )
        self.port = _free_port()
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200 -c shared_buffers=32MB"
        )
        try:
            self._run(
                str(bin_ / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            )
        except PostgresUnavailable as exc:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self.stop()
            raise PostgresUnavailable(f"{exc}\n{tail}") from None
        self.start_seconds = time.monotonic() - began
        return self

    def stop(self) -> None:
        """Stop at once (nothing to keep) and remove the folder."""
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(PostgresUnavailable, subprocess.TimeoutExpired):
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL with the server's own psql (no driver needed), as the superuser."""
        psql = self.bin_dir / "psql"
        if not psql.exists():
            psql = Path(shutil.which("psql") or psql)
        result = self._run(
            str(psql), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-tA", "-d", self.url_for(database), "-c", sql
        )
        return result.stdout

    def create_database(self, name: str | None = None) -> str:
        """A fresh empty database (default name t_<n>); its URL."""
        name = name or f"t_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url_for(name)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
