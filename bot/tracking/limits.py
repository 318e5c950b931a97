"""Discord's bot-wide limits, kept by the bot instead of learnt from 429s.

- `WriteBudget`: bot-token writes per second. Discord allows 50 requests per second per bot token
  across every route that uses it; interaction routes (editing a response or followup through its
  interaction token) are exempt. The budget (DISCORD_WRITE_BUDGET, 45 by default) stays below 50
  so the bot's other requests (replies, fetches) fit beside the tracker's writes, and it is shared
  by every process on the token: each takes budget / live processes (the lease census counts them).
  Under pressure results go first, then first posts; progress is skipped rather than queued.
- `InvalidRequests`: Discord cuts an IP off for a while after 10,000 invalid requests (401, 403,
  429) in 10 minutes. Every response of the bot's HTTP session is counted (an aiohttp trace, so the
  429s discord.py retries by itself count too) and a WARNING is logged long before the ban. Only
  counts are logged: request URLs carry interaction tokens.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace

import aiohttp

log = logging.getLogger(__name__)

#: Discord's ban threshold and its window (Discord's rate-limit documentation).
INVALID_BAN = 10_000
INVALID_WINDOW = 600.0
#: Seconds between two warnings while invalid requests stay high.
WARN_EVERY = 60.0

# Who goes first when the budget is short.
RESULT = 0
FIRST_POST = 1
PROGRESS = 2


class WriteBudget:
    """At most `share` bot-token writes in any `window` + `margin` seconds, counted when granted.

    Counting at the grant (not at the answer) means writes in flight at once cannot overshoot; the
    margin covers the time a request takes to reach Discord, so Discord never sees more than the
    share in one of its seconds. Waiters are served by priority (RESULT, then FIRST_POST), each
    level first come first served; PROGRESS never waits (`try_take`).
    """

    def __init__(
        self, rate: float, *, window: float = 1.0, margin: float = 0.1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.window = window + margin
        self.processes = 1
        self._clock = clock
        self._granted: deque[float] = deque()
        #: Writes granted in all, and the most granted within one window: what tests and benchmarks
        #: check, since arrival times at a (fake) Discord also carry the machine's scheduling delays.
        self.granted = 0
        self.peak = 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None

    @property
    def share(self) -> int:
        """This process's writes per window: the budget divided among the live processes."""
        return max(1, math.floor(self.rate / max(1, self.processes)))

    def set_processes(self, processes: int) -> None:
        """How many processes share the token now (from the lease census)."""
        self.processes = max(1, processes)

    def _room(self, now: float) -> bool:
        while self._granted and now - self._granted[0] >= self.window:
            self._granted.popleft()
        return len(self._granted) < self.share

    def _grant(self, now: float) -> None:
        self._granted.append(now)  # `_room` has dropped the grants older than one window
        self.granted += 1
        self.peak = max(self.peak, len(self._granted))

    def try_take(self) -> bool:
        """A write now if there is room and nobody more urgent waits (progress: skip otherwise)."""
        now = self._clock()
        if self._waiters or not self._room(now):
            return False
        self._grant(now)
        return True

    async def take(self, priority: int = RESULT) -> None:
        """Wait for a write, behind any waiter of a more urgent (or the same, earlier) priority."""
        now = self._clock()
        if not self._waiters and self._room(now):
            self._grant(now)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._order), future))
        self._schedule()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and self._granted:
                self._granted.pop()  # granted just as we were cancelled: give it back
            raise

    def _schedule(self) -> None:
        if self._timer is not None or not self._waiters:
            return
        now = self._clock()
        delay = 0.0 if self._room(now) else max(0.0, self._granted[0] + self.window - now)
        self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        now = self._clock()
        while self._waiters:
            if self._waiters[0][2].done():
                heapq.heappop(self._waiters)  # cancelled
            elif self._room(now):
                self._grant(now)
                heapq.heappop(self._waiters)[2].set_result(None)
            else:
                break
        self._schedule()

    @property
    def waiting(self) -> int:
        return sum(1 for *_, future in self._waiters if not future.done())


class InvalidRequests:
    """A rolling count of the invalid requests Discord counts toward its ban."""

    def __init__(self, *, warn_at: int = INVALID_BAN // 10, clock: Callable[[], float] = time.monotonic) -> None:
        self.warn_at = warn_at
        self._clock = clock
        self._seen: deque[float] = deque()
        self._warned = -math.inf

    def note(self, status: int, scope: str | None = None) -> None:
        """One response. 429s of the `shared` scope (another app's limit on a resource) are not held
        against the bot by Discord, so they are not counted."""
        if status not in (401, 403, 429) or (status == 429 and scope == "shared"):
            return
        now = self._clock()
        self._seen.append(now)
        count = self.count(now)
        if count >= self.warn_at and now - self._warned >= WARN_EVERY:
            self._warned = now
            log.warning(
                "Discord answered %d invalid requests (401/403/429) in the last 10 minutes; at %d it bans "
                "the bot's IP for a while",
                count,
                INVALID_BAN,
            )

    def count(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        while self._seen and now - self._seen[0] >= INVALID_WINDOW:
            self._seen.popleft()
        return len(self._seen)

    def trace_config(self) -> aiohttp.TraceConfig:
        """For discord.Client(http_trace=...): sees every response of the bot's session, bot token
        and interaction tokens alike, including the 429s discord.py retries on its own."""

        async def on_request_end(
            session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            self.note(params.response.status, params.response.headers.get("X-RateLimit-Scope"))

        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        return trace
