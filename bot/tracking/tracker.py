"""The background tracker: polls every in-flight task and keeps its Discord message current.

One loop ticks every `poll_interval`: it reads what is due, takes each answer (`apply_update`),
notes what to store and queues the edits the answer needs. The parts it drives, one module each:

- scheduling (bot/tracking/scheduling.py): when each task is read next, per-upstream reads in
  batches spread over the interval, and the health of each upstream (backoff while it fails);
- pacing (bot/tracking/pacing.py): the per-channel pacer, the edit queue, priority write slots and
  the rate gate for progress edits;
- the Discord writer (bot/tracking/writer.py): send or edit, deliver a result, fetch its picture,
  retry what Discord refused;
- leases (bot/tracking/leases.py): resume, adopt, keep, balance and fence, so several processes
  share the tasks of one database;
- saving (bot/tracking/saving.py): the changed columns, written in the background.

Each tracked task is one `TrackedTask` (bot/tracking/tasks.py), shared by the parts.

A task is done only once its final state is on Discord (`delivered`), so a crash at any point
resumes where it stopped and posts the result once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import discord

from bot import render
from bot.models import FAILURE, FINAL_STATUSES, MODAL, SUCCESS, MJTask, TaskKey, TaskRecord, result_extra
from bot.storage.protocols import TrackingStore
from bot.tracking.leases import Leases
from bot.tracking.limits import WriteBudget
from bot.tracking.saving import PendingSaves
from bot.tracking.scheduling import UpstreamReads, reschedule
from bot.tracking.settings import TrackerCounters, TrackerSettings
from bot.tracking.tasks import TrackedTask, TrackedTasks
from bot.tracking.writer import DiscordWriter

if TYPE_CHECKING:
    from bot.net.fetcher import Fetcher
    from bot.upstream.client import MJClient

log = logging.getLogger(__name__)

BOT_TIMEOUT_REASON = render.STUCK_REASON
#: Seconds stop() waits for the last task updates to be stored.
STOP_SAVE_GRACE = 5.0
#: Seconds between two reads of one task prompted by pushes that kept arriving during the first.
HINT_GAP = 0.5


def apply_update(record: TaskRecord, task: MJTask) -> TaskRecord:
    """The record with what the upstream now reports. Pure; unknown statuses are kept as text."""
    status = task.status or record.status
    progress = task.progress if task.progress is not None else record.progress
    if status == SUCCESS:
        progress = 100
    queue_position = record.queue_position
    if status not in ("", "NOT_START", "SUBMITTED"):
        queue_position = None
    final_prompt = record.final_prompt
    if task.final_prompt and task.action not in ("DESCRIBE", "SHORTEN"):
        final_prompt = task.final_prompt
    buttons, finished_at, extra = record.buttons, record.finished_at, record.extra
    if status in FINAL_STATUSES:
        buttons = task.buttons
        finished_at = record.finished_at or time.time()
        if status == SUCCESS:
            found = result_extra(replace(task, action=task.action or record.action))
            if found:
                extra = {**record.extra, **found}
    return replace(
        record,
        action=task.action or record.action,
        status=status,
        progress=progress,
        queue_position=queue_position,
        image_url=task.image_url or record.image_url,
        fail_reason=task.fail_reason if status == FAILURE else record.fail_reason,
        final_prompt=final_prompt,
        buttons=buttons,
        finished_at=finished_at,
        extra=extra,
    )


class Tracker:
    """Owns the polling loop. `track()` adds a task; `run_cycle()` is one pass (tests, benchmarks)."""

    def __init__(
        self,
        client: discord.Client,
        store: TrackingStore,
        upstreams: Mapping[str, MJClient],
        fetcher: Fetcher,
        settings: TrackerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self.settings = settings
        self._clock = clock
        self._wall = wall
        self.counters = TrackerCounters()
        self._tasks: TrackedTasks = {}
        self._saves = PendingSaves(store, retry_base=settings.poll_interval)
        self._reads = UpstreamReads(
            upstreams,
            self._tasks,
            settings,
            self.counters,
            clock=clock,
            on_answer=self._take_reads,
            on_read_done=self._saves.save_soon,
        )
        self._leases = Leases(
            store,
            self._tasks,
            settings,
            clock=clock,
            forget=self.forget,
            on_taken_over=self._wake_up,
            on_census=self._share_budget,
        )
        self._writer = DiscordWriter(
            client,
            fetcher,
            self._tasks,
            self._saves,
            settings,
            self.counters,
            clock=clock,
            wall=wall,
            still_ours=self._leases.still_ours,
            finish=self._finish,
        )
        self._requests_seen = 0
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None

    @property
    def write_share(self) -> int:
        """Bot-token writes per second this process allows itself (its share of the budget)."""
        return self._writer.budget.share

    def _share_budget(self, processes: int) -> None:
        """The bot-token budget is for all processes together: ours is an even share of it."""
        self._writer.budget.set_processes(processes)

    # ---- lifecycle -------------------------------------------------------------------------------

    async def resume(self) -> int:
        """Take every undelivered task that no live process holds (and our own from before a
        restart). Called once at start-up; lease upkeep goes on taking over orphans later."""
        return await self._leases.resume()

    async def balance_leases(self) -> tuple[int, int]:
        """One round of lease upkeep: (tasks let go, tasks taken over)."""
        return await self._leases.balance()

    def start(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="mj-tracker")
        self._leases.start()

    async def stop(self) -> None:
        """Cancel the loop, reads and writes in flight, then store what was noted (for at most
        STOP_SAVE_GRACE s): above all which results were delivered, or the next start would upload
        them again. Nothing is lost either way: what was not written is still undelivered in the
        database and resumes on the next start."""
        running = [self._runner] if self._runner is not None else []
        running += [*self._leases.cancel(), *self._reads.cancel(), *self._writer.cancel()]
        for task in running:
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush(), timeout=STOP_SAVE_GRACE)
        except Exception as exc:  # a locked or full database: the rows resume as they are
            log.warning("Stopping: %d task update(s) not saved (%s)", len(self._saves), exc)
        await self._saves.stop()
        self._runner = None
        self._writer.clear()

    def track(self, record: TaskRecord) -> None:
        """Track a task from now on (just submitted, or its first post failed)."""
        fresh = TrackedTask.starting(record, self._clock())
        earlier = self._tasks.get(record.id)
        if earlier is not None and earlier.record.upstream != record.upstream:
            # Tasks are tracked by id: the first one keeps it. Another server answering with a tracked
            # task's id gets its own row, never that task's tracking, messages or writes.
            log.warning(
                "Task %s of %s has the id of a task tracked for another upstream: not tracked",
                record.id,
                record.upstream,
            )
            return
        if earlier is not None:  # tracked already: its lease and a waiting retry stay as they were
            fresh.lease_confirmed, fresh.retry = earlier.lease_confirmed, earlier.retry
        self._tasks[record.id] = fresh
        self._wake.set()

    def forget(self, key: TaskKey) -> None:
        """Stop tracking a task (cancelled, or another process holds it): nothing of it is written."""
        task = self._tasks.get(key.id)
        if task is not None and task.record.upstream != key.upstream:
            return  # the task tracked under this id is another upstream's
        self._tasks.pop(key.id, None)
        if task is not None:
            task.cancel_retry()
        self._saves.drop(key)
        self._writer.discard(key.id)

    def _finish(self, old: TaskRecord, new: TaskRecord) -> None:
        """The task needs nothing more from Discord: store that now and stop tracking it."""
        self._saves.note(old, new)
        if new.delivered:
            self._leases.delivered(new.id)
        task = self._tasks.pop(new.id, None)
        if task is not None:
            task.cancel_retry()
        self._writer.discard(new.id)
        self._saves.finished(new.key)

    @property
    def write_budget(self) -> WriteBudget:
        """The bot-token write budget this process takes its writes from."""
        return self._writer.budget

    @property
    def active_ids(self) -> list[str]:
        return list(self._tasks)

    def record_of(self, task_id: str) -> TaskRecord | None:
        """The newest state of a tracked task, stored or not yet (None: not tracked here)."""
        task = self._tasks.get(task_id)
        return task.record if task is not None else None

    @property
    def cycles(self) -> int:
        return self.counters.cycles

    @property
    def edits_sent(self) -> int:
        return self.counters.edits_sent

    @property
    def edits_skipped(self) -> int:
        return self.counters.edits_skipped

    @property
    def pending_writes(self) -> int:
        """Writes queued, being sent or waiting for a retry."""
        return self._writer.pending

    async def drain(self) -> None:
        """Wait until no write is pending, as before a clean stop (the caller bounds the wait)."""
        # No "drained" event to wait on: writes end in several places (sent, dropped, retry timers).
        while self.pending_writes:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    async def flush(self) -> None:
        """Wait until every change noted so far is written (or the database refused it)."""
        await self._saves.flush()

    def _wake_up(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        await self._client.wait_until_ready()
        interval = self.settings.poll_interval
        while True:
            started = self._clock()
            try:
                await self.run_cycle()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any single failure
                log.exception("Tracker cycle failed; continuing")
            elapsed = self._clock() - started
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, interval - elapsed))
                # A new task arrived: give its submit a moment to settle, then poll.
                await asyncio.sleep(min(0.5, interval))
            except TimeoutError:
                pass

    # ---- one cycle -------------------------------------------------------------------------------

    async def run_cycle(self) -> None:
        """Read what is due, store what changed, queue the edits it needs."""
        counters = self.counters
        counters.cycles += 1
        cpu = time.process_time()
        now = self._clock()
        wall = self._wall()
        due: dict[str, list[str]] = {}
        expired: list[TaskRecord] = []
        for task_id, task in self._tasks.items():
            record = task.record
            if record.status in FINAL_STATUSES or record.message_id is None:
                # Undelivered results and tasks without a message (resumed, or a post failed).
                if not self._writer.is_pending(task_id):
                    self._writer.queue(record, urgent=True)
                if record.status in FINAL_STATUSES:
                    continue
            if record.created_at and wall - record.created_at > self.settings.task_timeout:
                expired.append(record)
            elif task.due <= now:
                due.setdefault(record.upstream, []).append(task_id)
        for record in expired:
            log.info("Task %s timed out after %.0f s", record.id, wall - record.created_at)
            counters.timeouts += 1
            ended = replace(record, status=FAILURE, fail_reason=BOT_TIMEOUT_REASON, finished_at=wall)
            self._apply(record, ended, now)
        # A slow upstream must not stall the others: its read finishes in the background.
        started = self._reads.start(due, now)
        self._saves.save_soon()  # expiries, and changes an earlier save could not write
        counters.cpu_seconds += time.process_time() - cpu
        if started:
            await asyncio.wait(started, timeout=max(2 * self.settings.poll_interval, 1.0))
        requests = counters.upstream_requests - self._requests_seen
        self._requests_seen = counters.upstream_requests
        counters.last_cycle_requests = requests
        counters.max_cycle_requests = max(counters.max_cycle_requests, requests)

    def _take_reads(self, ids: Sequence[str], found: Mapping[str, MJTask], tick: float) -> None:
        """Apply one answer: each read task's new state (a task missing from a list answer is kept as
        it was, and read again when next due)."""
        cpu = time.process_time()
        now = self._clock()
        for task_id in ids:
            task = self._tasks.get(task_id)
            if task is None or task.record.status in FINAL_STATUSES:
                continue  # forgotten, or finished by a push meanwhile
            record = task.record
            read = found.get(task_id)
            self._apply(record, apply_update(record, read) if read is not None else record, now, tick=tick)
        self.counters.cpu_seconds += time.process_time() - cpu

    def _apply(self, old: TaskRecord, new: TaskRecord, now: float, *, tick: float | None = None) -> None:
        """Take a task's new state: schedule its next read, note what to store, queue an edit if
        what its message shows changed."""
        task = self._tasks.get(new.id)
        if task is None:
            return  # forgotten meanwhile
        reschedule(task, new, now, tick, self.settings)
        changed = self._saves.note(old, new)
        task.record = new
        if new.status == MODAL:
            return  # waits for the user's modal; nothing to show in a channel
        if new.status in FINAL_STATUSES or new.message_id is None:
            self._writer.queue(new, urgent=True)
            return
        if (not changed and new.shown) or render.render_task(new).fingerprint() == new.shown:
            self.counters.edits_skipped += 1
            return
        self._writer.queue(new, urgent=False)

    # ---- push updates (issue 6: bot/web/server.py) ------------------------------------------------------

    def is_tracking(self, upstream: str, task_id: str) -> bool:
        """Whether `task_id` is in flight here and belongs to `upstream` (a push names its upstream)."""
        task = self._tasks.get(task_id)
        return task is not None and task.record.status not in FINAL_STATUSES and task.record.upstream == upstream

    async def hint(self, upstream: str, task_id: str) -> bool:
        """A push (notifyHook) said this task changed: read it again now, from its own upstream with
        that upstream's key, instead of at its next poll (which stays the safety net). The push's
        own content is never used. Pushes that arrive while a read is under way cost one more read
        after it, not one each. False when nothing was read (not tracked here, another upstream's
        task, no such upstream, or that upstream is backing off)."""
        task = self._tasks.get(task_id)
        if task is None or not self.is_tracking(upstream, task_id):
            return False
        if task.hint_reading:
            task.hint_again = True
            return False
        task.hint_reading = True
        read = False
        try:
            while self.is_tracking(upstream, task_id):
                task.hint_again = False
                read = await self._reads.read_now(upstream, task_id, self._clock()) or read
                if read:
                    self._saves.save_soon()
                if not task.hint_again:
                    break
                await asyncio.sleep(HINT_GAP)
        finally:
            task.hint_reading = task.hint_again = False
        return read
