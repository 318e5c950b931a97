"""When the tracker reads each task, and how it reads an upstream.

A task that was just submitted, started or resumed, or is near its end, is read every tick; one that
waits in a queue or is mid-way is read every few ticks (`poll_every`), so thousands of tasks cost a
few requests per tick. When a tick has more batches than `fetch_concurrency`, each task is read at
its own fixed moment of the interval (`read_phase`): results then come in evenly instead of as one
burst per tick. An upstream that errors or answers slowly is read less and less often (its health),
and the first failing batch stops that tick's other batches.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from bot.errors import BotError, TaskNotFound, UnsupportedAction
from bot.models import IN_PROGRESS, MJTask, TaskRecord
from bot.tracking.settings import TrackerCounters, TrackerSettings
from bot.tracking.tasks import TrackedTask, TrackedTasks

if TYPE_CHECKING:
    from bot.upstream.client import MJClient

log = logging.getLogger(__name__)

#: Takes one answer: (the ids asked, the tasks found among them, the tick they were read for).
AnswerHandler = Callable[[Sequence[str], Mapping[str, MJTask], float], None]


def read_phase(task_id: str) -> float:
    """Where in the poll interval a task is read when a tick's reads are spread, in [0, 1). Pure.

    Fixed per task (a hash of its id, the same after a restart), so each task keeps being read
    every interval, not sooner or later as other tasks come and go.
    """
    return zlib.crc32(task_id.encode()) / 2**32


def poll_every(record: TaskRecord, in_status_for: float, settings: TrackerSettings) -> int:
    """Ticks between two reads of a task. Pure.

    Reads go where news is likely: a task that just started may move any moment and one near its
    end is about to deliver, while a task in a queue or in the middle of a long run can wait.
    """
    if in_status_for < settings.fresh_seconds:
        return 1
    if record.status == IN_PROGRESS:
        progress = record.progress
        if progress is None or progress >= settings.near_end_percent:
            return 1
        if progress > 0 and in_status_for * (100 - progress) / progress <= 2 * settings.poll_interval:
            return 1  # at its pace so far it ends within two ticks
        return max(1, settings.running_every)
    return max(1, settings.queued_every)


@dataclass(frozen=True, slots=True)
class PlannedRead:
    """One request of a tick's read: a batch for list-by-condition, or one id to fetch on its own."""

    ids: Sequence[str]
    listed: bool
    at: float  # seconds into the read when it goes


def plan_reads(
    ids: Sequence[str], *, alone: set[str] | frozenset[str], use_list: bool, settings: TrackerSettings
) -> list[PlannedRead]:
    """The requests that read `ids`, in the order of their moments. Pure.

    Batches of `batch_size` (one id each where the upstream cannot list), then `alone` one by one.
    When there are more batches than `fetch_concurrency`, each waits for its moment in the interval
    (`read_phase` of its first id; the first batch goes at once)."""
    size = max(1, settings.batch_size) if use_list else 1
    ordered = sorted(ids, key=read_phase)
    listed = [task_id for task_id in ordered if task_id not in alone] if use_list else ordered
    batches = [listed[i : i + size] for i in range(0, len(listed), size)]
    many = len(batches) > max(1, settings.fetch_concurrency)
    spread = settings.poll_interval * settings.read_spread if many else 0.0
    reads = [
        PlannedRead(batch, use_list, read_phase(batch[0]) * spread if n else 0.0) for n, batch in enumerate(batches)
    ]
    reads += [PlannedRead([task_id], False, 0.0) for task_id in ordered if use_list and task_id in alone]
    return reads


@dataclass(slots=True)
class _ReadRun:
    """What the requests of one tick's read share: their slots, their start, the first error, the slowest answer."""

    slots: asyncio.Semaphore
    began: float
    error: BotError | None = None
    slowest: float = 0.0


def reschedule(task: TrackedTask, new: TaskRecord, now: float, tick: float | None, settings: TrackerSettings) -> None:
    """Set when a task is read next, now that its state is `new` (read for `tick`, or pushed at `now`)."""
    old = task.record
    if new.status != old.status:
        task.since = now
    if new.status != old.status or new.progress != old.progress:
        task.moved = now
    interval = settings.poll_interval
    base = now if tick is None else tick
    task.due = base + poll_every(new, now - task.since, settings) * interval - interval / 2


@dataclass(slots=True)
class _Health:
    """How an upstream has been answering; its reads are spaced out while it fails or is slow."""

    factor: float = 1.0
    not_before: float = 0.0
    failing: bool = False


class UpstreamReads:
    """Reads the due tasks of each upstream, one read per upstream at a time, in the background.

    Answers go to `on_answer` as they come; `on_read_done` is told when an upstream's read ended.
    """

    def __init__(
        self,
        upstreams: Mapping[str, MJClient],
        tasks: TrackedTasks,
        settings: TrackerSettings,
        counters: TrackerCounters,
        *,
        clock: Callable[[], float],
        on_answer: AnswerHandler,
        on_read_done: Callable[[], None],
    ) -> None:
        self._upstreams = upstreams  # may gain entries at runtime (API keys): looked up per read
        self._tasks = tasks
        self.settings = settings
        self.counters = counters
        self._clock = clock
        self._on_answer = on_answer
        self._on_read_done = on_read_done
        self._health: dict[str, _Health] = {}
        self._no_list: set[str] = set()  # upstreams without list-by-condition
        self._unknown: set[str] = set()  # upstream names already reported missing
        self._polls: dict[str, asyncio.Task[None]] = {}

    def start(self, due: Mapping[str, list[str]], now: float) -> list[asyncio.Task[None]]:
        """Start reading each upstream's due tasks, unless it is still reading from an earlier tick
        or backing off. The reads started."""
        started: list[asyncio.Task[None]] = []
        for name, ids in due.items():
            health = self._health.setdefault(name, _Health())
            if name in self._polls or health.not_before > now:
                continue
            poll = asyncio.create_task(self._poll_upstream(name, ids, now), name=f"mj-poll-{name}")
            self._polls[name] = poll
            poll.add_done_callback(partial(self._poll_done, name))
            started.append(poll)
        return started

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel the reads in flight; the caller awaits them."""
        polls = list(self._polls.values())
        for poll in polls:
            poll.cancel()
        self._polls.clear()
        return polls

    def _poll_done(self, name: str, poll: asyncio.Task[None]) -> None:
        if self._polls.get(name) is poll:
            del self._polls[name]

    async def _poll_upstream(self, name: str, ids: list[str], tick: float) -> None:
        try:
            # Exactly the task's own upstream: a removed key's tasks are never read with another key
            # (the .env key would be asked about another server's task ids).
            client = self._upstreams.get(name)
        except Exception:  # a broken key config must not end the loop
            log.exception("Resolving upstream %r failed", name)
            client = None
        if client is None:
            if name not in self._unknown:
                self._unknown.add(name)
                log.warning(
                    "No upstream %r (its key was removed?) for %d task(s); they wait for it or their timeout",
                    name,
                    len(ids),
                )
            return
        self._unknown.discard(name)
        error, slowest = await self._read_tasks(name, client, ids, tick, alone=self._stalled(ids, self._clock()))
        self._note_health(name, error, slowest, self._clock(), tick)
        self._on_read_done()

    async def read_now(self, name: str, task_id: str, now: float) -> bool:
        """Read one task now, on its own, from exactly its own upstream (no fallback). False when
        nothing was read: no such upstream, the read failed, or the upstream is backing off (pushes
        must not add reads the poll loop holds back)."""
        health = self._health.get(name)
        if health is not None and health.not_before > now:
            return False
        try:
            client = self._upstreams.get(name)
        except Exception:
            log.exception("Resolving upstream %r failed", name)
            return False
        if client is None:
            return False
        error, _ = await self._read_tasks(name, client, [task_id], now, alone={task_id})
        return error is None

    def _stalled(self, ids: Sequence[str], now: float) -> set[str]:
        """Running tasks that have not moved for `stall_seconds` (and were not read alone since)."""
        limit = self.settings.stall_seconds
        stalled: set[str] = set()
        for task_id in ids:
            if len(stalled) >= self.settings.stall_reads_per_tick:
                break  # the rest next tick: a mass stall must not become a burst of single reads
            task = self._tasks.get(task_id)
            if task is None or task.record.status != IN_PROGRESS:
                continue  # a task waiting in a queue is expected not to move
            if now - task.moved >= limit and now - task.stall_read >= limit:
                task.stall_read = now
                stalled.add(task_id)
        if stalled:
            self.counters.stall_reads += len(stalled)
            log.info("%d task(s) have not moved for %.0f s; reading them one by one", len(stalled), limit)
        return stalled

    async def _read_tasks(
        self,
        name: str,
        client: MJClient,
        ids: Sequence[str],
        tick: float,
        *,
        alone: set[str] | frozenset[str] = frozenset(),
    ) -> tuple[BotError | None, float]:
        """Read `ids` and hand over each answer as it comes: (the error that stopped reading, the
        longest a request took). `alone` are read one by one even where list-by-condition works.
        After one failed request the rest of this tick's are not sent: a failing upstream gets no burst."""
        self.counters.polled += len(ids)
        reads = plan_reads(ids, alone=alone, use_list=name not in self._no_list, settings=self.settings)
        run = _ReadRun(slots=asyncio.Semaphore(max(1, self.settings.fetch_concurrency)), began=time.monotonic())
        await asyncio.gather(*(self._read(name, client, read, tick, run) for read in reads))
        return run.error, run.slowest

    async def _read(self, name: str, client: MJClient, read: PlannedRead, tick: float, run: _ReadRun) -> None:
        """One request of a tick's read, at its moment, unless an earlier one of the tick failed."""
        if read.at:
            await asyncio.sleep(max(0.0, run.began + read.at - time.monotonic()))
        async with run.slots:
            if run.error is not None:
                return
            self.counters.upstream_requests += 1
            sent = self._clock()
            try:
                if read.listed:
                    tasks = await client.list_by_ids(read.ids)
                else:
                    try:
                        task = await client.fetch(read.ids[0])
                    except TaskNotFound:
                        task = None
                    tasks = [task] if task is not None else []
            except UnsupportedAction:
                if name not in self._no_list:
                    log.info("Upstream %r has no list-by-condition; polling tasks one by one", name)
                    self._no_list.add(name)
                return  # read one by one from the next tick on
            except BotError as exc:
                self.counters.read_failures += 1
                run.error = run.error or exc
                return
            finally:
                run.slowest = max(run.slowest, self._clock() - sent)
        self._on_answer(read.ids, {task.id: task for task in tasks}, tick)

    def _note_health(self, name: str, error: BotError | None, elapsed: float, now: float, tick: float) -> None:
        """Space out reads of an upstream that fails or is slow (`elapsed`: its slowest answer this
        tick) (doubling, up to `max_backoff`, at least its Retry-After); halve the spacing again
        after each good read."""
        health = self._health.setdefault(name, _Health())
        interval = self.settings.poll_interval
        cap = max(1.0, self.settings.max_backoff / interval)
        slow = elapsed > self.settings.slow_read_seconds
        if error is not None or slow:
            health.factor = min(health.factor * 2, cap)
            health.not_before = tick + interval * health.factor - interval / 2
            retry_after = getattr(error, "retry_after", None) or (error.params.get("retry_after") if error else None)
            if isinstance(retry_after, int | float) and retry_after > 0:
                health.not_before = max(health.not_before, now + min(float(retry_after), self.settings.max_backoff))
            if not health.failing:
                health.failing = True
                why = type(error).__name__ if error is not None else f"answers took {elapsed:.1f} s"
                log.warning("Upstream %r is failing or slow (%s); reading it less often", name, why)
            return
        health.factor = max(1.0, health.factor / 2)
        health.not_before = tick + interval * health.factor - interval / 2
        if health.failing and health.factor == 1.0:
            health.failing = False
            log.info("Upstream %r answers normally again", name)
