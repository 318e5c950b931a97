"""Which process tracks which task, when several share one database.

Each process tracks only the tasks it holds a lease on (a row's owner and expiry): the ones it
submitted, and free ones it claims. It renews its leases a few times per lease period, lets go of
tasks another process took over, and takes over those whose process died (lease expired) or shut
down (released), up to an even share of all tasks in flight. Before posting a final result it
re-checks its lease (the fence), so a process that stalled past its lease cannot deliver what its
successor delivers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from bot.models import FINAL_STATUSES, TaskKey, TaskRecord
from bot.storage.protocols import LeaseStore
from bot.tracking.settings import TrackerSettings
from bot.tracking.tasks import TrackedTask, TrackedTasks

log = logging.getLogger(__name__)

#: Resume claims all of a process's tasks in one go (no real deployment holds more in flight).
RESUME_ALL = 1_000_000
#: Seconds a delivered task is remembered, so a claim racing its background save cannot adopt it.
DELIVERED_MEMORY = 600.0


class Leases:
    """Claims, renews, balances and fences the leases of this process's tasks.

    Adds the tasks it claims to `tasks`; lets go of lost ones through `forget` (the tracker's, which
    also drops their pending writes) and calls `on_taken_over` when it took over orphans, and
    `on_census` with the number of live processes (this one included) at each round of upkeep.
    """

    def __init__(
        self,
        store: LeaseStore,
        tasks: TrackedTasks,
        settings: TrackerSettings,
        *,
        clock: Callable[[], float],
        forget: Callable[[TaskKey], None],
        on_taken_over: Callable[[], None],
        on_census: Callable[[int], None],
    ) -> None:
        self._store = store
        self._tasks = tasks
        self.settings = settings
        self._clock = clock
        self._forget = forget
        self._on_taken_over = on_taken_over
        self._on_census = on_census
        self._delivered: dict[str, float] = {}  # recently delivered task ids (clock time)
        self._fence_next: tuple[set[TaskKey], asyncio.Future[set[TaskKey]]] | None = None  # for the next fence
        self._fencer: asyncio.Task[None] | None = None
        self._keeper: asyncio.Task[None] | None = None

    async def resume(self) -> int:
        """Take every undelivered task that no live process holds (and our own from before a
        restart). Called once at start-up; `_keep` goes on taking over orphans later."""
        # One claim for all of them: with include_own the same rows come back on every call, so
        # batches would never end (lease upkeep claims the free ones in batches later).
        asked = time.monotonic()
        claimed = self._adopt(await self._store.claim_tasks(RESUME_ALL, include_own=True), asked)
        _, others = await self._store.lease_census()
        self._on_census(others + 1)  # the bot-token budget's share, before the first write
        if claimed:
            log.info("Resumed tracking %d in-flight task(s)", claimed)
        return claimed

    def _adopt(self, records: Sequence[TaskRecord], asked: float) -> int:
        """Track claimed tasks; `asked` is when the claim was sent (time.monotonic: the leases run from no earlier)."""
        now = self._clock()
        adopted = 0
        for record in records:
            if record.id not in self._tasks and record.id not in self._delivered:
                task = TrackedTask.starting(record, now, lease_confirmed=asked)
                # A row that is final already: its last holder saw the result and may have posted it.
                task.check_delivered = record.status in FINAL_STATUSES
                self._tasks[record.id] = task
                adopted += 1
        return adopted

    def delivered(self, task_id: str) -> None:
        """Until `delivered` is stored the row still looks in flight: never adopt it again meanwhile."""
        self._delivered[task_id] = self._clock()

    def start(self) -> None:
        if self._keeper is None or self._keeper.done():
            self._keeper = asyncio.create_task(self._keep(), name="mj-tracker-leases")

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel lease upkeep and the fence in flight; the caller awaits what is returned."""
        running = [task for task in (self._keeper, self._fencer) if task is not None]
        for task in running:
            task.cancel()
        self._keeper = None
        self._fencer = None
        if self._fence_next is not None:
            self._fence_next[1].cancel()
            self._fence_next = None
        return running

    async def _keep(self) -> None:
        """Renew ours a few times per lease; drop what another process took over (we were too slow
        to renew); take over tasks whose process died (its lease ran out) or shut down (it released them)."""
        period = max(0.2, self._store.lease_seconds / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.balance()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end lease upkeep; the next round retries
                log.exception("Renewing task leases failed; retrying")

    async def balance(self) -> tuple[int, int]:
        """One round of lease upkeep: (tasks let go, tasks taken over)."""
        horizon = self._clock() - DELIVERED_MEMORY
        for task_id in [t for t, when in self._delivered.items() if when < horizon]:
            del self._delivered[task_id]
        asked = time.monotonic()
        held = await self._store.renew_leases()
        for key in held:
            task = self._task(key)
            if task is not None:
                task.lease_confirmed = asked
        lost = [task.record.key for task in self._tasks.values() if task.record.key not in held]
        for key in lost:
            log.warning("Task %s is tracked by another process now; letting it go", key.id)
            self._forget(key)
        taken = 0
        room = await self._fair_share_room()
        while room > 0:
            asked = time.monotonic()
            want = min(self.settings.claim_batch, room)
            records = await self._store.claim_tasks(want)
            taken += self._adopt(records, asked)
            room -= len(records)
            if len(records) < want:
                break
        if taken:
            log.info("Took over %d task(s) from a process that stopped", taken)
            self._on_taken_over()
        return len(lost), taken

    async def _fair_share_room(self) -> int:
        """How many free tasks to take over: up to an even share of all in flight among the live
        processes, so the survivors of a crash split its tasks instead of the first one taking all."""
        in_flight, others = await self._store.lease_census()
        self._on_census(others + 1)
        return -(-in_flight // (others + 1)) - len(self._tasks)

    def _task(self, key: TaskKey) -> TrackedTask | None:
        """The tracked task of this row (tasks are tracked by id: one upstream's at a time)."""
        task = self._tasks.get(key.id)
        return task if task is not None and task.record.upstream == key.upstream else None

    async def still_ours(self, key: TaskKey) -> bool:
        """Fence before a final post: only the process holding a task's lease delivers it.

        A lease confirmed less than half a lease ago (claimed, renewed or fenced) cannot have been
        taken over yet: no database round trip. Otherwise the task joins the next fence, one
        transaction for every result waiting (`_fence`)."""
        task = self._task(key)
        confirmed = task.lease_confirmed if task is not None else None
        if confirmed is not None and time.monotonic() - confirmed < self._store.lease_seconds / 2:
            return True
        if self._fence_next is None:
            self._fence_next = (set(), asyncio.get_running_loop().create_future())
        keys, answer = self._fence_next
        keys.add(key)
        if self._fencer is None or self._fencer.done():
            self._fencer = asyncio.create_task(self._fence(), name="mj-tracker-fence")
        held = key in await asyncio.shield(answer)
        if not held:
            log.warning("Task %s is held by another process; it delivers the result", key.id)
            self._forget(key)
        return held

    async def _fence(self) -> None:
        """Confirm the leases of the results waiting to be posted, a batch per round trip. When the
        database cannot answer, deliver anyway: one process alone must not stall on a busy disk."""
        while self._fence_next is not None:
            keys, answer = self._fence_next
            self._fence_next = None
            asked = time.monotonic()
            try:
                held = await self._store.hold_leases(sorted(keys))
            except asyncio.CancelledError:
                answer.cancel()
                raise
            except Exception as exc:
                log.warning("Could not confirm the leases of %d task(s) (%s); delivering anyway", len(keys), exc)
                held = keys
            else:
                for key in held:
                    task = self._task(key)
                    if task is not None:
                        task.lease_confirmed = asked
            answer.set_result(held)
