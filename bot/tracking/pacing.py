"""Pacing of the tracker's Discord writes: how many, how soon, and in which order.

Discord allows about 5 message writes per 5 s per channel and 50 requests per second per bot. These
parts keep the tracker under both without waiting for 429s: a per-channel pacer, a queue that
collapses repeated progress into one edit, shared write slots that serve final results first, and
a rate gate for the optional progress edits. None of them knows Discord: they count ids and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Callable

#: Counted on top of a channel's window: our clock and Discord's never agree to the millisecond.
PACING_MARGIN = 0.05


class ChannelPacer:
    """At most `limit` writes per `window` seconds per key (a channel id).

    Each write counts from when its answer arrived, which is never before Discord counted it, so
    waiting out our window also waits out Discord's bucket: no 429 needed to find the limit.
    """

    def __init__(self, limit: int, window: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(1, limit)
        self.window = max(0.0, window)
        self._clock = clock
        self._sent: dict[int, deque[float]] = {}

    def wait_time(self, key: int, *, reserve: int = 0) -> float:
        """Seconds until `key` may take another write (0.0: now), keeping `reserve` of the
        window's writes free (progress leaves one for a final result)."""
        sent = self._sent.get(key)
        if not sent or self.window <= 0:
            return 0.0
        now = self._clock()
        horizon = self.window + PACING_MARGIN
        while sent and now - sent[0] >= horizon:
            sent.popleft()
        if not sent:
            del self._sent[key]  # idle channels cost no memory
            return 0.0
        limit = max(1, self.limit - reserve)
        if len(sent) < limit:
            return 0.0
        return max(0.0, sent[len(sent) - limit] + horizon - now)

    def record(self, key: int) -> None:
        if self.window > 0:
            self._sent.setdefault(key, deque()).append(self._clock())


class EditQueue:
    """Pending Discord writes per channel, at most one per task.

    A task whose progress moves again before its edit left keeps its place, and the edit that
    finally goes shows the newest state. Urgent writes (final results, first posts) leave first.
    """

    def __init__(self) -> None:
        self._urgent: dict[int, dict[str, None]] = {}
        self._progress: dict[int, dict[str, None]] = {}
        self._channel_of: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._channel_of)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._channel_of

    def push(self, channel_id: int, task_id: str, *, urgent: bool) -> bool:
        """Queue a write; False when the task already had one waiting (the two became one)."""
        current = self._channel_of.get(task_id)
        if current is not None and current != channel_id:
            self.discard(task_id)
            current = None
        if current is not None:
            waiting = self._progress.get(channel_id)
            if urgent and waiting is not None and task_id in waiting:
                self._take(self._progress, channel_id, task_id)
                self._urgent.setdefault(channel_id, {})[task_id] = None
            return False
        (self._urgent if urgent else self._progress).setdefault(channel_id, {})[task_id] = None
        self._channel_of[task_id] = channel_id
        return True

    def pop(self, channel_id: int) -> tuple[str, bool] | None:
        """(task id, urgent) of the channel's next write, oldest urgent one first."""
        for queue, urgent in ((self._urgent, True), (self._progress, False)):
            waiting = queue.get(channel_id)
            if waiting:
                task_id = next(iter(waiting))
                self._take(queue, channel_id, task_id)
                del self._channel_of[task_id]
                return task_id, urgent
        return None

    def demote(self, task_id: str) -> None:
        """A queued urgent write is progress after all (its first post has just landed)."""
        channel_id = self._channel_of.get(task_id)
        waiting = self._urgent.get(channel_id) if channel_id is not None else None
        if channel_id is not None and waiting is not None and task_id in waiting:
            self._take(self._urgent, channel_id, task_id)
            self._progress.setdefault(channel_id, {})[task_id] = None

    def has_urgent(self, channel_id: int) -> bool:
        return bool(self._urgent.get(channel_id))

    def pending(self, channel_id: int) -> int:
        return len(self._urgent.get(channel_id, ())) + len(self._progress.get(channel_id, ()))

    def discard(self, task_id: str) -> None:
        channel_id = self._channel_of.pop(task_id, None)
        if channel_id is not None:
            self._take(self._urgent, channel_id, task_id)
            self._take(self._progress, channel_id, task_id)

    def clear(self) -> None:
        self._urgent.clear()
        self._progress.clear()
        self._channel_of.clear()

    @staticmethod
    def _take(queue: dict[int, dict[str, None]], channel_id: int, task_id: str) -> None:
        waiting = queue.get(channel_id)
        if waiting is not None:
            waiting.pop(task_id, None)
            if not waiting:
                del queue[channel_id]


async def _granted_unless(future: asyncio.Future[None], unless: asyncio.Event) -> bool:
    """Wait until `future` is granted (True) or `unless` is set first (False: the future is cancelled,
    so whoever grants skips it). Granted wins a tie."""
    interrupt = asyncio.ensure_future(unless.wait())
    try:
        await asyncio.wait((future, interrupt), return_when=asyncio.FIRST_COMPLETED)
    finally:
        interrupt.cancel()
        if not future.done():
            future.cancel()
    return not future.cancelled()


class PrioritySlots:
    """A semaphore whose urgent waiters (final results) are served before the others, and of which
    the others (progress edits) hold at most `others_limit` slots at once: the rest stay free for
    results, whose download and checks would otherwise find every slot taken by progress."""

    def __init__(self, size: int, *, others_limit: int | None = None) -> None:
        self._free = max(1, size)
        self._others_limit = max(1, min(self._free, others_limit if others_limit is not None else self._free))
        self._others_held = 0
        self._waiters: tuple[deque[asyncio.Future[None]], deque[asyncio.Future[None]]] = (deque(), deque())

    @contextlib.asynccontextmanager
    async def hold(self, *, urgent: bool) -> AsyncIterator[None]:
        await self.acquire(urgent=urgent)
        try:
            yield
        finally:
            self.release(urgent=urgent)

    async def acquire(self, *, urgent: bool, unless: asyncio.Event | None = None) -> bool:
        """Take a slot (True), or give up waiting as soon as `unless` is set (False)."""
        if self._free > 0 and not self._waiters[0]:
            # Others also wait their turn behind each other, and for their share.
            if urgent or (not self._waiters[1] and self._others_held < self._others_limit):
                self._free -= 1
                if not urgent:
                    self._others_held += 1
                return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[0 if urgent else 1].append(future)
        try:
            if unless is None:
                await future
                return True
            return await _granted_unless(future, unless)
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(urgent=urgent)  # the slot was handed to us as we were cancelled: pass it on
            raise

    def release(self, *, urgent: bool) -> None:
        if not urgent:
            self._others_held -= 1
        if self._hand_over(self._waiters[0]):
            return
        if self._others_held < self._others_limit and self._hand_over(self._waiters[1]):
            self._others_held += 1
            return
        self._free += 1

    @staticmethod
    def _hand_over(waiters: deque[asyncio.Future[None]]) -> bool:
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)
                return True
        return False


class RateGate:
    """At most `rate` passes per second (a burst of one second's worth), first come first served
    except that `first` waiters (a task's first progress edit) go before the others; a waiter can be
    called away (`unless`). One timer for all waiters, so a thousand channels waiting for a progress
    edit cost nothing until their turn."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._slack = max(0.0, 1.0 - self._interval)  # how far ahead passes may run: one second's worth
        self._due = 0.0  # theoretical time of the next pass (GCRA): passes are spaced `_interval` apart
        self._first: deque[asyncio.Future[None]] = deque()
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def _try_pass(self, now: float) -> bool:
        if self._due - now > self._slack:
            return False
        self._due = max(self._due, now) + self._interval
        return True

    async def wait(self, unless: asyncio.Event, *, first: bool = False) -> bool:
        """True: pass now. False: `unless` was set first (no pass used)."""
        if not self._first and not self._waiters and self._try_pass(time.monotonic()):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        (self._first if first else self._waiters).append(future)
        self._schedule()
        return await _granted_unless(future, unless)

    def _schedule(self) -> None:
        if self._timer is None and (self._first or self._waiters):
            delay = max(0.0, self._due - self._slack - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        for waiters in (self._first, self._waiters):
            while waiters:
                if waiters[0].done():
                    waiters.popleft()  # gave up waiting
                elif self._try_pass(now):
                    waiters.popleft().set_result(None)
                else:
                    break
        self._schedule()
