"""A throwaway PostgreSQL server started from the local binaries (Debian's `postgresql`).

Bot-independent and pytest-free, so both the benchmarks (`python -m bench.tracker --db postgres`) and
the test fixtures (tests/pg.py) use it:

    server = PostgresServer().start()
    url = server.create_database()      # a fresh, empty database: postgresql://...
    ...
    server.stop()

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` system user.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "PostgresUnavailable", "find_bin_dir"]


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
