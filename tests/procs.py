"""Real bot processes for multi-process tests (issue 8): each one is `python -m tests.bot_process`
(the bot's own `main`, see tests/bot_process.py) talking to the test process's FakeDiscord and
simulated midjourney-proxy over 127.0.0.1.

    async with BotProcesses(fake, tmp_path, env={...}) as procs:
        a = procs.spawn("bot-a", shard_ids=[0], shard_count=2)
        b = procs.spawn("bot-b", shard_ids=[1], shard_count=2)
        await procs.wait_ready(a, b)
        ...
        a.kill()                      # SIGKILL: no shutdown work at all
        ...
    # every process still running is SIGKILLed on exit, whatever happened

Each process logs to its own file (stderr and stdout); `procs.logs()` gives their tails for failure
messages. A process also dies with the test process (PR_SET_PDEATHSIG on Linux), so an aborted run
leaves no bot behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from tests.bot_process import USER_AGENT_TAG
from tests.fakes.discord import FakeDiscord, GatewaySession, RecordedRequest

REPO_ROOT = Path(__file__).resolve().parent.parent
#: What the bot logs once every shard of the process is READY (bot/bot.py on_ready).
READY_LINE = "Logged in as "
#: A crash on the way up; the process may even hang after it (a non-daemon thread left open).
CRASH_LINE = "Traceback (most recent call last)"
#: Environment variables the children inherit from the test process; everything else is explicit.
_INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "VIRTUAL_ENV", "SYSTEMROOT")
_PR_SET_PDEATHSIG = 1
# Looked up once here: the child, between fork and exec, must not load libraries.
_prctl = getattr(ctypes.CDLL(None), "prctl", None) if sys.platform == "linux" else None


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class BotProcessError(AssertionError):
    """A bot process did not start, or died; the message carries its log."""


@dataclass(eq=False)
class BotProcess:
    name: str
    env: dict[str, str] = field(repr=False)
    shard_ids: tuple[int, ...] | None
    shard_count: int | None
    log_path: Path
    popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    #: Index into FakeDiscord.sessions when this process was started: its sessions come after.
    first_session: int = 0
    started_at: float = 0.0  # time.monotonic()
    ready_at: float | None = None
    killed_at: float | None = None
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def instance_id(self) -> str:
        return self.env.get("INSTANCE_ID", self.name)

    @property
    def user_agent_tag(self) -> str:
        return f"{USER_AGENT_TAG}{self.name}"

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def sent(self, request: RecordedRequest) -> bool:
        """Whether this process sent a request the fake recorded (its User-Agent tag)."""
        agent = request.headers.get("User-Agent", "")
        return agent.endswith(f" {self.user_agent_tag}")

    def kill(self) -> float:
        """SIGKILL now (no shutdown work, like a crash or the OOM killer); returns when it happened
        (time.monotonic()) once the process is gone."""
        if self.popen is None:
            raise BotProcessError(f"{self.name} was never started")
        killed = time.monotonic()
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGKILL)
            self.killed_at = killed
        self.popen.wait(timeout=10)
        self._close_log()
        return killed

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM (docker stop): the bot's orderly shutdown; SIGKILL if it takes over `timeout`."""
        if self.popen is None:
            raise BotProcessError(f"{self.name} was never started")
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        self._close_log()
        return self.popen.returncode

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


class BotProcesses:
    """Starts bot processes against `fake`; kills every one still running on exit (or `close()`)."""

    def __init__(
        self,
        fake: FakeDiscord,
        workdir: Path,
        *,
        env: Mapping[str, str],
        python: str = sys.executable,
    ) -> None:
        self.fake = fake
        self.workdir = Path(workdir)
        self.base_env = dict(env)
        self.python = python
        self.processes: list[BotProcess] = []

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- starting ------------------------------------------------------------------------------

    def spawn(
        self,
        name: str,
        *,
        shard_count: int | None = None,
        shard_ids: Iterable[int] | None = None,
        **env: str | float | int,
    ) -> BotProcess:
        """Start `python -m tests.bot_process` with the base env, this process's shards, and `env`
        (setting names as the bot reads them, e.g. LEASE_SECONDS=3). INSTANCE_ID defaults to `name`
        (a restart: a new `name`, INSTANCE_ID= the old one); `name` tags this process's requests."""
        ids = tuple(shard_ids) if shard_ids is not None else None
        child_env = {k: os.environ[k] for k in _INHERITED if k in os.environ}
        child_env.update(
            {
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "FAKE_DISCORD_API": self.fake.api_base,
                "FAKE_DISCORD_GATEWAY": self.fake.gateway_url,
                "DISCORD_TOKEN": self.fake.token,
                "INSTANCE_ID": name,
                "BOT_PROCESS_NAME": name,
            }
        )
        child_env.update(self.base_env)
        if shard_count is not None:
            child_env["SHARD_COUNT"] = str(shard_count)
        if ids is not None:
            child_env["SHARD_IDS"] = ",".join(map(str, ids))
        child_env.update({key: str(value) for key, value in env.items()})
        child_env["BOT_PROCESS_NAME"] = name
        if any(p.name == name for p in self.processes):
            raise ValueError(f"a process named {name!r} was already started: names tag requests")
        self.workdir.mkdir(parents=True, exist_ok=True)
        log_path = self.workdir / f"{name}.{len(self.processes)}.log"
        proc = BotProcess(name, child_env, ids, shard_count, log_path, first_session=len(self.fake.sessions))
        proc._log_file = log_path.open("wb")
        proc.started_at = time.monotonic()
        proc.popen = subprocess.Popen(
            [self.python, "-m", "tests.bot_process"],
            cwd=REPO_ROOT,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=proc._log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent if _prctl is not None else None,
        )
        self.processes.append(proc)
        return proc

    def sessions_of(self, proc: BotProcess) -> list[GatewaySession]:
        """Gateway sessions opened since `proc` started for the shards it runs."""
        sessions = self.fake.sessions[proc.first_session :]
        if proc.shard_ids is None:
            return sessions
        return [s for s in sessions if s.shard_id in proc.shard_ids and s.shard_count == proc.shard_count]

    def _is_ready(self, proc: BotProcess) -> bool:
        if READY_LINE not in proc.log():
            return False
        sessions = [s for s in self.sessions_of(proc) if s.connected]
        wanted = set(proc.shard_ids) if proc.shard_ids is not None else {0}
        return wanted <= {s.shard_id for s in sessions}

    async def wait_ready(self, *procs: BotProcess, timeout: float = 40.0) -> None:  # noqa: ASYNC109
        """Until each process's shards have IDENTIFYed, got READY, and the bot logged that it is in.
        Raises with the process's log if one exits or the time runs out."""
        pending = list(procs)
        deadline = time.monotonic() + timeout
        while pending:
            for proc in list(pending):
                if not proc.alive:
                    raise BotProcessError(
                        f"{proc.name} exited with {proc.returncode} before it was ready:\n{proc.log_tail()}"
                    )
                if CRASH_LINE in (log := proc.log()) and READY_LINE not in log:
                    await asyncio.sleep(0.5)  # let the rest of the traceback reach the file
                    state = "still running" if proc.alive else f"exit {proc.returncode}"
                    raise BotProcessError(f"{proc.name} crashed before it was ready ({state}):\n{proc.log_tail()}")
                if self._is_ready(proc):
                    proc.ready_at = time.monotonic()
                    pending.remove(proc)
            if pending and time.monotonic() > deadline:
                raise BotProcessError(
                    f"not ready after {timeout:.0f} s: {[p.name for p in pending]}\n{self.logs(pending)}"
                )
            if pending:
                await asyncio.sleep(0.1)

    async def start(self, name: str, **kwargs: object) -> BotProcess:
        proc = self.spawn(name, **kwargs)  # type: ignore[arg-type]
        await self.wait_ready(proc)
        return proc

    # ---- watching ------------------------------------------------------------------------------

    def check_alive(self, *procs: BotProcess) -> None:
        """Raise (with its log) if a process that should be running has died."""
        for proc in procs or tuple(p for p in self.processes if p.killed_at is None):
            if not proc.alive:
                raise BotProcessError(f"{proc.name} died (exit {proc.returncode}):\n{proc.log_tail()}")

    def sender_of(self, request: RecordedRequest) -> BotProcess | None:
        return next((p for p in self.processes if p.sent(request)), None)

    def logs(self, procs: Iterable[BotProcess] | None = None, *, lines: int = 40) -> str:
        chosen = list(procs) if procs is not None else self.processes
        parts = []
        for proc in chosen:
            state = "running" if proc.alive else f"exit {proc.returncode}"
            parts.append(f"----- {proc.name} (pid {proc.pid}, {state}) {proc.log_path}\n{proc.log_tail(lines)}")
        return "\n".join(parts)

    def grep(self, predicate: Callable[[str], bool], procs: Iterable[BotProcess] | None = None) -> list[str]:
        """Log lines (prefixed with the process name) matching `predicate`."""
        chosen = list(procs) if procs is not None else self.processes
        return [f"{p.name}: {line}" for p in chosen for line in p.log().splitlines() if predicate(line)]

    # ---- stopping ------------------------------------------------------------------------------

    def close(self) -> None:
        """SIGKILL every process still running and wait for it; idempotent."""
        for proc in self.processes:
            if proc.popen is not None and proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGKILL)
        for proc in self.processes:
            if proc.popen is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=10)
            proc._close_log()
