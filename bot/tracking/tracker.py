"""The background tracker: polls every in-flight task and keeps its Discord message current.

Upstream side. One loop ticks every `poll_interval` and reads only the tasks that are due, per
upstream, in batches (list-by-condition, or per-task fetch where a server lacks it). A task that was
just submitted, started or resumed, or is near its end, is due every tick; one that waits in a queue
or is mid-way is read every few ticks, so thousands of tasks cost a few requests per tick. When a
tick has more batches than `fetch_concurrency`, they are spread over the interval, each task at its
own fixed moment (`read_phase`): results then come in evenly instead of as one burst per tick that
queues for the downloads and uploads. An upstream that errors or answers slowly is read less and
less often (up to `max_backoff`, at least its Retry-After), and the first failing batch stops that
tick's other batches.

Discord side. A poll result becomes an edit only when what the message shows changed (a render
fingerprint). Writes queue per channel, at most one per task, so progress that moves again before
its edit left collapses into one edit showing the newest state; final results and first posts go
before progress. Each channel gets at most `channel_edits` writes per `channel_window` seconds (the
size of Discord's per-channel bucket), so a busy channel is paced instead of drawing 429s, and a
few shared slots (`edit_concurrency`, finals served first) keep one slow channel from holding up
the rest. Edits use the bot token, so a task that outlives the 15-minute interaction token lands.

A task is done only once its final state is on Discord (`delivered`), so a crash at any point
resumes where it stopped and posts the result once.

Several processes. Each tracks only the tasks it holds a lease on (a row's owner and expiry in the
database): the ones it submitted, and free ones it claims. It renews its leases a few times per
lease period, lets go of tasks another process took over, and takes over those whose process died
(lease expired) or shut down (released), up to an even share of all tasks in flight. Before posting
a final result it re-checks its lease, so a process that stalled past its lease cannot deliver what
its successor delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
import zlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import aiohttp
import discord

from bot import render
from bot.errors import BotError, TaskNotFound, UnsupportedAction
from bot.images import EXTENSIONS, ImageFetcher, sniff_image
from bot.models import FAILURE, FINAL_STATUSES, IN_PROGRESS, MODAL, SUCCESS, MJTask, result_extra
from bot.storage.sqlite import Storage, TaskRecord

if TYPE_CHECKING:
    from bot.upstream.client import MJClient

log = logging.getLogger(__name__)

BOT_TIMEOUT_REASON = render.STUCK_REASON
MAX_DOWNLOAD_ATTEMPTS = 5
#: Resume claims all of a process's tasks in one go (no real deployment holds more in flight).
RESUME_ALL = 1_000_000
#: Seconds a delivered task is remembered, so a claim racing its background save cannot adopt it.
DELIVERED_MEMORY = 600.0
#: Counted on top of a channel's window: our clock and Discord's never agree to the millisecond.
PACING_MARGIN = 0.05
#: Seconds stop() waits for the last task updates to be stored.
STOP_SAVE_GRACE = 5.0
#: Longest wait before retrying a write Discord refused.
MAX_WRITE_RETRY = 60.0
#: Seconds between two reads of one task prompted by pushes that kept arriving during the first.
HINT_GAP = 0.5
# Columns the tracker changes; everything else in a row belongs to the cogs.
_TRACKED_COLUMNS = (
    "action",
    "status",
    "progress",
    "queue_position",
    "image_url",
    "result_url",
    "fail_reason",
    "buttons",
    "extra",
    "final_prompt",
    "finished_at",
    "message_id",
    "shown",
    "delivered",
)


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    poll_interval: float = 3.0
    batch_size: int = 100
    task_timeout: float = 3600.0
    max_upload_bytes: int = 10 * 1024 * 1024
    fetch_concurrency: int = 8
    # Share of the interval over which a tick's batches are spread when there are more of them than
    # `fetch_concurrency` (the rest of the interval is room for the last answers before the next tick).
    read_spread: float = 0.75
    edit_concurrency: int = 8
    download_concurrency: int = 32  # result pictures being fetched or waiting to be uploaded
    # Adaptive polling. A task is read every tick for `fresh_seconds` after it was submitted, changed
    # status or was resumed, and from `near_end_percent` (or when its pace says it ends within two
    # ticks); otherwise every `running_every` ticks while running and `queued_every` while waiting.
    fresh_seconds: float = 20.0
    near_end_percent: int = 60
    running_every: int = 2
    queued_every: int = 4
    # A running task whose status and progress have not moved for `stall_seconds` is read on its own
    # (fetch), at most once per `stall_seconds`: a relay's list-by-condition can keep answering stale
    # state, and the single read is the one that tells the truth.
    stall_seconds: float = 120.0
    stall_reads_per_tick: int = 10
    # An upstream whose batch takes longer than this is slow: its reads are spaced out like errors.
    slow_read_seconds: float = 5.0
    max_backoff: float = 60.0
    # Discord: about 5 message writes per 5 s per channel. `global_edits` (per second, all channels;
    # 0 = none of our own) leaves room under the bot-wide limit of 50 requests per second.
    channel_edits: int = 5
    channel_window: float = 5.0
    global_edits: int = 0
    # Writes of each channel window that progress leaves free for final results and first posts.
    final_reserve: int = 2
    # Progress edits per second, all channels together (0 = no cap). Progress is the optional part:
    # at thousands of tasks it would take the CPU and Discord's bot-wide budget (50 requests/s) from
    # results. Below the cap (about a hundred running tasks) it changes nothing.
    progress_rate: float = 40.0
    # Tasks claimed per database round trip when taking over (start-up, or a process that died).
    claim_batch: int = 1000


@dataclass(slots=True)
class TrackerCounters:
    """Running totals, for logs, tests and the benchmark (bench/tracker.py)."""

    cycles: int = 0
    polled: int = 0  # task reads asked of upstreams
    upstream_requests: int = 0  # list-by-condition / fetch calls (not the client's own retries)
    last_cycle_requests: int = 0
    max_cycle_requests: int = 0
    read_failures: int = 0
    edits_sent: int = 0  # Discord writes that went through (edits and posts)
    edits_skipped: int = 0  # reads whose result showed nothing new: no edit
    progress_coalesced: int = 0  # progress states replaced by a newer one before their edit left
    write_failures: int = 0  # writes Discord refused (retried later)
    timeouts: int = 0
    stall_reads: int = 0  # single reads of tasks that had not moved for stall_seconds
    cpu_seconds: float = 0.0  # CPU time spent inside run_cycle


def apply_update(record: TaskRecord, task: MJTask) -> TaskRecord:
    """The record with what the upstream now reports. Pure; unknown statuses are kept as text."""
    status = task.status or record.status
    progress = task.progress if task.progress is not None else record.progress
    if status == SUCCESS:
        progress = 100
    queue_position = record.queue_position
    if status not in ("", "NOT_START", "SUBMITTED"):
        queue_position = None
    changes: dict[str, object] = {
        "action": task.action or record.action,
        "status": status,
        "progress": progress,
        "queue_position": queue_position,
        "image_url": task.image_url or record.image_url,
        "fail_reason": task.fail_reason if status == FAILURE else record.fail_reason,
    }
    if task.final_prompt and task.action not in ("DESCRIBE", "SHORTEN"):
        changes["final_prompt"] = task.final_prompt
    if status in FINAL_STATUSES:
        changes["buttons"] = task.buttons
        changes["finished_at"] = record.finished_at or time.time()
        if status == SUCCESS:
            extra = result_extra(replace(task, action=task.action or record.action))
            if extra:
                changes["extra"] = {**record.extra, **extra}
    return replace(record, **changes)  # type: ignore[arg-type]


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
    """At most `rate` passes per second (a burst of one second's worth), first come first served;
    a waiter can be called away (`unless`). One timer for all waiters, so a thousand channels waiting
    for a progress edit cost nothing until their turn."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate
        self._slack = max(0.0, 1.0 - self._interval)  # how far ahead passes may run: one second's worth
        self._due = 0.0  # theoretical time of the next pass (GCRA): passes are spaced `_interval` apart
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def _try_pass(self, now: float) -> bool:
        if self._due - now > self._slack:
            return False
        self._due = max(self._due, now) + self._interval
        return True

    async def wait(self, unless: asyncio.Event) -> bool:
        """True: pass now. False: `unless` was set first (no pass used)."""
        if not self._waiters and self._try_pass(time.monotonic()):
            return True
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        self._schedule()
        return await _granted_unless(future, unless)

    def _schedule(self) -> None:
        if self._timer is None and self._waiters:
            delay = max(0.0, self._due - self._slack - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._release)

    def _release(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._waiters:
            if self._waiters[0].done():
                self._waiters.popleft()  # gave up waiting
            elif self._try_pass(now):
                self._waiters.popleft().set_result(None)
            else:
                break
        self._schedule()


@dataclass(slots=True)
class _Watch:
    """Scheduling state of one tracked task (memory only: rebuilt on resume)."""

    status: str
    since: float  # when the task entered `status`, or tracking (re)started
    due: float  # when it is next read
    moved: float = 0.0  # when its status or progress last changed (or tracking (re)started)
    stall_read: float = 0.0  # when it was last read on its own because it had not moved
    write_failures: int = 0
    download_failures: int = 0


@dataclass(slots=True)
class _Health:
    """How an upstream has been answering; its reads are spaced out while it fails or is slow."""

    factor: float = 1.0
    not_before: float = 0.0
    failing: bool = False


class Tracker:
    """Owns the polling loop. `track()` adds a task; `run_cycle()` is one pass (tests, benchmarks)."""

    def __init__(
        self,
        client: discord.Client,
        store: Storage,
        upstreams: Mapping[str, MJClient],
        fetcher: ImageFetcher,
        settings: TrackerSettings,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._store = store
        self._upstreams = upstreams  # may gain entries at runtime (API keys): looked up per read
        self._fetcher = fetcher
        self.settings = settings
        self._clock = clock
        self._wall = wall
        self._active: dict[str, TaskRecord] = {}
        self._delivered: dict[str, float] = {}  # recently delivered task ids (clock time)
        self._watch: dict[str, _Watch] = {}
        self._health: dict[str, _Health] = {}
        self._no_list: set[str] = set()  # upstreams without list-by-condition
        self._unknown: set[str] = set()  # upstream names already reported missing
        self._unsaved: dict[str, dict[str, Any]] = {}
        self._finished: dict[str, dict[str, Any]] = {}  # rows of delivered tasks: saved first
        self._queue = EditQueue()
        self._pacer = ChannelPacer(settings.channel_edits, settings.channel_window, clock=clock)
        self._global = ChannelPacer(settings.global_edits, 1.0, clock=clock) if settings.global_edits > 0 else None
        self._progress_gate = RateGate(settings.progress_rate) if settings.progress_rate > 0 else None
        self._slots = PrioritySlots(settings.edit_concurrency, others_limit=max(1, settings.edit_concurrency // 2))
        # task id -> when its lease was last confirmed ours (time.monotonic: leases run in real time)
        self._confirmed: dict[str, float] = {}
        self._fence_next: tuple[set[str], asyncio.Future[set[str]]] | None = None  # ids for the next fence
        self._fencer: asyncio.Task[None] | None = None
        self._downloads = asyncio.Semaphore(max(1, settings.download_concurrency))
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._kicks: dict[int, asyncio.Event] = {}  # wakes a channel's writer for an urgent write
        self._saver: asyncio.Task[None] | None = None
        self._writing: set[str] = set()
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._polls: dict[str, asyncio.Task[None]] = {}
        self._hint_reads: set[str] = set()  # tasks being read because a push said they changed
        self._hint_again: set[str] = set()  # ...and pushed again meanwhile: one more read after
        self._requests_seen = 0
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self._leaser: asyncio.Task[None] | None = None
        self.counters = TrackerCounters()

    # ---- lifecycle -------------------------------------------------------------------------------

    async def resume(self) -> int:
        """Take every undelivered task that no live process holds (and our own from before a
        restart). Called once at start-up; `_keep_leases` goes on taking over orphans later."""
        # One claim for all of them: with include_own the same rows come back on every call, so
        # batches would never end (lease upkeep claims the free ones in batches later).
        asked = time.monotonic()
        claimed = self._adopt(await self._store.claim_tasks(RESUME_ALL, include_own=True), asked)
        if claimed:
            log.info("Resumed tracking %d in-flight task(s)", claimed)
        return claimed

    def _adopt(self, records: Sequence[TaskRecord], asked: float) -> int:
        """Track claimed tasks; `asked` is when the claim was sent (time.monotonic: the leases run from no earlier)."""
        now = self._clock()
        adopted = 0
        for record in records:
            if record.id not in self._active and record.id not in self._delivered:
                self._active[record.id] = record
                self._watch[record.id] = _Watch(record.status, since=now, due=now, moved=now)
                self._confirmed[record.id] = asked
                adopted += 1
        return adopted

    def start(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="mj-tracker")
        if self._leaser is None or self._leaser.done():
            self._leaser = asyncio.create_task(self._keep_leases(), name="mj-tracker-leases")

    async def _keep_leases(self) -> None:
        """Several processes share the tracking through leases on the task rows. Renew ours a few
        times per lease; drop what another process took over (we were too slow to renew); take over
        tasks whose process died (its lease ran out) or shut down (it released them)."""
        period = max(0.2, self._store.lease_seconds / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self.balance_leases()
            except asyncio.CancelledError:
                raise
            except Exception:  # a database hiccup must not end lease upkeep; the next round retries
                log.exception("Renewing task leases failed; retrying")

    async def balance_leases(self) -> tuple[int, int]:
        """One round of lease upkeep: (tasks let go, tasks taken over)."""
        horizon = self._clock() - DELIVERED_MEMORY
        for task_id in [t for t, when in self._delivered.items() if when < horizon]:
            del self._delivered[task_id]
        asked = time.monotonic()
        held = await self._store.renew_leases()
        for task_id in held:
            if task_id in self._active:
                self._confirmed[task_id] = asked
        lost = [task_id for task_id in self._active if task_id not in held]
        for task_id in lost:
            log.warning("Task %s is tracked by another process now; letting it go", task_id)
            self.forget(task_id)
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
            self._wake.set()
        return len(lost), taken

    async def _fair_share_room(self) -> int:
        """How many free tasks to take over: up to an even share of all in flight among the live
        processes, so the survivors of a crash split its tasks instead of the first one taking all."""
        in_flight, others = await self._store.lease_census()
        return -(-in_flight // (others + 1)) - len(self._active)

    async def stop(self) -> None:
        """Cancel the loop, reads and writes in flight, then store what was noted (for at most
        STOP_SAVE_GRACE s): above all which results were delivered, or the next start would upload
        them again. Nothing is lost either way: what was not written is still undelivered in the
        database and resumes on the next start."""
        running = (self._runner, self._leaser, self._fencer, *self._polls.values(), *self._workers.values())
        tasks = [t for t in running if t is not None]
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await asyncio.wait_for(self.flush(), timeout=STOP_SAVE_GRACE)
        except Exception as exc:  # a locked or full database: the rows resume as they are
            log.warning("Stopping: %d task update(s) not saved (%s)", len(self._unsaved) + len(self._finished), exc)
        if self._saver is not None:
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
        self._runner = None
        self._leaser = None
        self._saver = None
        self._fencer = None
        if self._fence_next is not None:
            self._fence_next[1].cancel()
            self._fence_next = None
        self._polls.clear()
        self._workers.clear()
        self._kicks.clear()
        self._writing.clear()
        self._queue.clear()

    def track(self, record: TaskRecord) -> None:
        now = self._clock()
        self._active[record.id] = record
        self._watch[record.id] = _Watch(record.status, since=now, due=now, moved=now)
        self._wake.set()

    def forget(self, task_id: str) -> None:
        self._active.pop(task_id, None)
        self._watch.pop(task_id, None)
        self._confirmed.pop(task_id, None)
        self._unsaved.pop(task_id, None)
        self._queue.discard(task_id)
        handle = self._retries.pop(task_id, None)
        if handle is not None:
            handle.cancel()

    @property
    def active_ids(self) -> list[str]:
        return list(self._active)

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
        return len(self._queue) + len(self._writing) + len(self._retries)

    async def drain(self) -> None:
        """Wait until no write is pending, as before a clean stop (the caller bounds the wait)."""
        # No "drained" event to wait on: writes end in several places (sent, dropped, retry timers).
        while self.pending_writes:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

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
        for task_id, record in self._active.items():
            if record.status in FINAL_STATUSES or record.message_id is None:
                # Undelivered results and tasks without a message (resumed, or a post failed).
                if not self._write_pending(task_id):
                    self._queue_write(record, urgent=True)
                if record.status in FINAL_STATUSES:
                    continue
            if record.created_at and wall - record.created_at > self.settings.task_timeout:
                expired.append(record)
            elif self._watch[task_id].due <= now:
                due.setdefault(record.upstream, []).append(task_id)
        for record in expired:
            log.info("Task %s timed out after %.0f s", record.id, wall - record.created_at)
            counters.timeouts += 1
            ended = replace(record, status=FAILURE, fail_reason=BOT_TIMEOUT_REASON, finished_at=wall)
            self._apply(record, ended, now)
        started: list[asyncio.Task[None]] = []
        for name, ids in due.items():
            health = self._health.setdefault(name, _Health())
            if name in self._polls or health.not_before > now:
                continue  # still reading from an earlier tick, or backing off
            poll = asyncio.create_task(self._poll_upstream(name, ids, now), name=f"mj-poll-{name}")
            self._polls[name] = poll
            poll.add_done_callback(partial(self._poll_done, name))
            started.append(poll)
        self._save_soon()  # expiries, and changes an earlier save could not write
        counters.cpu_seconds += time.process_time() - cpu
        if started:
            # A slow upstream must not stall the others: its read finishes in the background.
            await asyncio.wait(started, timeout=max(2 * self.settings.poll_interval, 1.0))
        requests = counters.upstream_requests - self._requests_seen
        self._requests_seen = counters.upstream_requests
        counters.last_cycle_requests = requests
        counters.max_cycle_requests = max(counters.max_cycle_requests, requests)

    def _poll_done(self, name: str, poll: asyncio.Task[None]) -> None:
        if self._polls.get(name) is poll:
            del self._polls[name]

    async def _poll_upstream(self, name: str, ids: list[str], tick: float) -> None:
        try:
            client = self._upstreams.get(name) or self._upstreams.get("default")
        except Exception:  # a broken key config must not end the loop
            log.exception("Resolving upstream %r failed", name)
            client = None
        if client is None:
            if name not in self._unknown:
                self._unknown.add(name)
                log.error("No upstream %r for %d task(s); they wait for it or their timeout", name, len(ids))
            return
        self._unknown.discard(name)
        error, slowest = await self._read_tasks(name, client, ids, tick, alone=self._stalled(ids, self._clock()))
        self._note_health(name, error, slowest, self._clock(), tick)
        self._save_soon()

    def _take_reads(self, ids: Sequence[str], found: Mapping[str, MJTask], tick: float) -> None:
        """Apply one answer: each read task's new state (a task missing from a list answer is kept as
        it was, and read again when next due)."""
        cpu = time.process_time()
        now = self._clock()
        for task_id in ids:
            record = self._active.get(task_id)
            if record is None or record.status in FINAL_STATUSES:
                continue  # forgotten, or finished by a push meanwhile
            task = found.get(task_id)
            self._apply(record, apply_update(record, task) if task is not None else record, now, tick=tick)
        self.counters.cpu_seconds += time.process_time() - cpu

    def _stalled(self, ids: Sequence[str], now: float) -> set[str]:
        """Running tasks that have not moved for `stall_seconds` (and were not read alone since)."""
        limit = self.settings.stall_seconds
        stalled: set[str] = set()
        for task_id in ids:
            if len(stalled) >= self.settings.stall_reads_per_tick:
                break  # the rest next tick: a mass stall must not become a burst of single reads
            watch = self._watch.get(task_id)
            if watch is None or watch.status != IN_PROGRESS:
                continue  # a task waiting in a queue is expected not to move
            if now - watch.moved >= limit and now - watch.stall_read >= limit:
                watch.stall_read = now
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
        """Read `ids` and apply each answer as it comes: (the error that stopped reading, the longest
        a request took). `alone` are read one by one even where list-by-condition works. After one
        failed request the rest of this tick's are not sent: a failing upstream gets no burst."""
        self.counters.polled += len(ids)
        error: BotError | None = None
        slowest = 0.0
        use_list = name not in self._no_list
        size = max(1, self.settings.batch_size) if use_list else 1
        concurrency = max(1, self.settings.fetch_concurrency)
        ordered = sorted(ids, key=read_phase)
        listed = [task_id for task_id in ordered if task_id not in alone] if use_list else ordered
        regular = [listed[i : i + size] for i in range(0, len(listed), size)]
        # More batches than can go at once: each waits for its moment in the interval (the first goes now).
        spread = self.settings.poll_interval * self.settings.read_spread if len(regular) > concurrency else 0.0
        # (ids, listed, seconds into the read): a batch for list-by-condition, or one id to fetch on its own.
        chunks = [(chunk, use_list, read_phase(chunk[0]) * spread if n else 0.0) for n, chunk in enumerate(regular)]
        chunks += [([task_id], False, 0.0) for task_id in ordered if use_list and task_id in alone]
        slots = asyncio.Semaphore(concurrency)
        began = time.monotonic()

        async def read(chunk: Sequence[str], batch: bool, at: float) -> None:
            nonlocal error, slowest
            if at:
                await asyncio.sleep(max(0.0, began + at - time.monotonic()))
            async with slots:
                if error is not None:
                    return
                self.counters.upstream_requests += 1
                sent = self._clock()
                try:
                    if batch:
                        tasks = await client.list_by_ids(chunk)
                    else:
                        try:
                            task = await client.fetch(chunk[0])
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
                    error = error or exc
                    return
                finally:
                    slowest = max(slowest, self._clock() - sent)
            self._take_reads(chunk, {task.id: task for task in tasks}, tick)

        await asyncio.gather(*(read(chunk, batch, at) for chunk, batch, at in chunks))
        return error, slowest

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

    def _apply(self, old: TaskRecord, new: TaskRecord, now: float, *, tick: float | None = None) -> None:
        """Take a task's new state: schedule its next read, note what to store, queue an edit if
        what its message shows changed."""
        watch = self._watch.get(new.id)
        if watch is None:
            return  # forgotten meanwhile
        if new.status != watch.status:
            watch.status = new.status
            watch.since = now
        if new.status != old.status or new.progress != old.progress:
            watch.moved = now
        interval = self.settings.poll_interval
        base = now if tick is None else tick
        watch.due = base + poll_every(new, now - watch.since, self.settings) * interval - interval / 2
        changed = self._note(old, new)
        self._active[new.id] = new
        if new.status == MODAL:
            return  # waits for the user's modal; nothing to show in a channel
        if new.status in FINAL_STATUSES or new.message_id is None:
            self._queue_write(new, urgent=True)
            return
        if (not changed and new.shown) or render.render_task(new).fingerprint() == new.shown:
            self.counters.edits_skipped += 1
            return
        self._queue_write(new, urgent=False)

    # ---- storage ---------------------------------------------------------------------------------

    def _note(self, old: TaskRecord, new: TaskRecord) -> bool:
        """Remember the columns that changed, for the next save. True if any did."""
        changes = {name: getattr(new, name) for name in _TRACKED_COLUMNS if getattr(new, name) != getattr(old, name)}
        if changes:
            self._unsaved.setdefault(new.id, {}).update(changes)
        return bool(changes)

    async def _save(self, ids: Sequence[str] | None = None) -> None:
        """Have the noted changes written soon (all of them: `ids` is only a hint)."""
        self._save_soon()

    def _save_soon(self) -> None:
        if (self._unsaved or self._finished) and (self._saver is None or self._saver.done()):
            self._saver = asyncio.create_task(self._save_all(), name="mj-tracker-save")

    async def flush(self) -> None:
        """Wait until every change noted so far is written (or the database refused it)."""
        self._save_soon()
        if self._saver is not None:
            await asyncio.shield(self._saver)

    async def _save_all(self) -> None:
        """Write the noted changes (finished tasks first), one transaction per batch, in the
        background: a locked or full database delays the writes, never the reads or Discord. A failed
        batch (after the store's own retries) stays noted and is tried again: memory stays the truth
        until it is written."""
        failures = 0
        while self._finished or self._unsaved:
            source = self._finished if self._finished else self._unsaved
            batch = dict(source)
            source.clear()
            try:
                await self._store.update_many(batch)
                failures = 0
            except Exception as exc:
                for task_id, changes in batch.items():
                    source[task_id] = {**changes, **source.get(task_id, {})}
                failures += 1
                delay = min(30.0, self.settings.poll_interval * 2**failures)
                log.warning("Saving %d task update(s) failed (%s); will try again in %.1f s", len(batch), exc, delay)
                await asyncio.sleep(delay)

    # ---- Discord side ------------------------------------------------------------------------------

    def _write_pending(self, task_id: str) -> bool:
        return task_id in self._queue or task_id in self._writing or task_id in self._retries

    def _queue_write(self, record: TaskRecord, *, urgent: bool) -> None:
        if record.id in self._retries:
            return  # a refused write waits for its retry, which will show the newest state
        if not self._queue.push(record.channel_id, record.id, urgent=urgent) and not urgent:
            self.counters.progress_coalesced += 1
        if urgent and record.channel_id in self._kicks:
            self._kicks[record.channel_id].set()  # its writer may be waiting for a progress slot
        if record.channel_id not in self._workers:
            self._workers[record.channel_id] = asyncio.create_task(
                self._channel_worker(record.channel_id), name=f"mj-writes-{record.channel_id}"
            )

    async def _channel_worker(self, channel_id: int) -> None:
        """Send one channel's queued writes, one at a time, within its pace. Progress leaves the
        last writes of each window (`final_reserve`) to results, so a result rarely waits at all."""
        kick = self._kicks[channel_id] = asyncio.Event()
        try:
            while self._queue.pending(channel_id):
                reserve = 0 if self._queue.has_urgent(channel_id) else self.settings.final_reserve
                wait = self._pacer.wait_time(channel_id, reserve=reserve)
                if wait > 0:
                    kick.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(kick.wait(), timeout=wait)
                    continue
                item = self._queue.pop(channel_id)
                if item is None:
                    break
                task_id, urgent = item
                self._writing.add(task_id)
                kick.clear()  # from here on, set only by a result queued while this write waits
                try:
                    if urgent or self._progress_gate is None or await self._progress_gate.wait(kick):
                        used = await self._write(task_id, urgent, kick)
                    else:  # a result was queued in this channel meanwhile: it goes first
                        self._queue.push(channel_id, task_id, urgent=False)
                        used = False
                finally:
                    self._writing.discard(task_id)
                if used:
                    self._pacer.record(channel_id)
                    if self._global is not None:
                        self._global.record(0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Writing to channel %s failed", channel_id)
        finally:
            if self._workers.get(channel_id) is asyncio.current_task():
                del self._workers[channel_id]
                self._kicks.pop(channel_id, None)

    async def _global_turn(self) -> None:
        """Wait until the bot-wide budget allows one more write (finals hold the slots first)."""
        assert self._global is not None
        wait = self._global.wait_time(0)
        while wait > 0:
            await asyncio.sleep(wait)
            wait = self._global.wait_time(0)

    async def _write(self, task_id: str, urgent: bool, result_waiting: asyncio.Event) -> bool:
        """Bring one task's message up to date. True if a request reached Discord (it counts
        against the channel's pace even when refused).

        A result is downloaded before a write slot is taken (at most `download_concurrency` at
        once, which also bounds the images held in memory): slots guard Discord writes, and a slow
        image server must not hold them. A progress edit waiting for a slot steps back when a result
        is queued in its channel (`result_waiting`): the channel's writer serves the result first."""
        record = self._active.get(task_id)
        if record is None or record.status == MODAL:
            return False
        try:
            if record.status in FINAL_STATUSES:
                async with self._downloads:
                    go, data = await self._fetch_result(record)
                    if not go or not await self._still_ours(record.id):
                        return False
                    async with self._slots.hold(urgent=True):
                        if self._global is not None:
                            await self._global_turn()
                        return await self._deliver(record, data)
            if not await self._slots.acquire(urgent=urgent, unless=None if urgent else result_waiting):
                self._queue.push(record.channel_id, task_id, urgent=False)  # after the result
                return False
            try:
                if self._global is not None:
                    await self._global_turn()
                return await self._update(record)
            finally:
                self._slots.release(urgent=urgent)
        except Exception:
            log.exception("Updating the message of task %s failed; will retry", task_id)
            self._retry_later(task_id, urgent)
            return True

    async def _update(self, record: TaskRecord) -> bool:
        """Show a running task's latest state (or post its first message)."""
        record = self._active.get(record.id, record)  # the newest state, after waiting for a slot
        if record.status in FINAL_STATUSES:
            self._queue_write(record, urgent=True)  # it finished meanwhile: deliver with its result
            return False
        parts = render.render_task(record)
        fingerprint = parts.fingerprint()
        if fingerprint == record.shown and record.message_id is not None:
            return False
        message = await self._send_or_edit(record, parts)
        if message is not None:
            current = self._active.get(record.id)
            if current is not None:
                updated = replace(current, shown=fingerprint, message_id=message.id)
                self._note(current, updated)
                self._active[record.id] = updated
                if updated.status not in FINAL_STATUSES:
                    self._queue.demote(record.id)  # queued while it had no message: now only progress
                self._save_soon()
        return True

    async def _still_ours(self, task_id: str) -> bool:
        """Fence before a final post: only the process holding a task's lease delivers it, so a
        process that stalled past its lease cannot post a result its successor posts too.

        A lease confirmed less than half a lease ago (claimed, renewed or fenced) cannot have been
        taken over yet: no database round trip. Otherwise the task joins the next fence, one
        transaction for every result waiting (`_fence`)."""
        confirmed = self._confirmed.get(task_id)
        if confirmed is not None and time.monotonic() - confirmed < self._store.lease_seconds / 2:
            return True
        if self._fence_next is None:
            self._fence_next = (set(), asyncio.get_running_loop().create_future())
        ids, answer = self._fence_next
        ids.add(task_id)
        if self._fencer is None or self._fencer.done():
            self._fencer = asyncio.create_task(self._fence(), name="mj-tracker-fence")
        held = task_id in await asyncio.shield(answer)
        if not held:
            log.warning("Task %s is held by another process; it delivers the result", task_id)
            self.forget(task_id)
        return held

    async def _fence(self) -> None:
        """Confirm the leases of the results waiting to be posted, a batch per round trip. When the
        database cannot answer, deliver anyway: one process alone must not stall on a busy disk."""
        while self._fence_next is not None:
            ids, answer = self._fence_next
            self._fence_next = None
            asked = time.monotonic()
            try:
                held = await self._store.hold_leases(sorted(ids))
            except asyncio.CancelledError:
                answer.cancel()
                raise
            except Exception as exc:
                log.warning("Could not confirm the leases of %d task(s) (%s); delivering anyway", len(ids), exc)
                held = ids
            else:
                for task_id in held:
                    if task_id in self._active:
                        self._confirmed[task_id] = asked
            answer.set_result(held)

    async def _fetch_result(self, record: TaskRecord) -> tuple[bool, bytes | None]:
        """(go on, the picture to upload). The picture of a success is downloaded once, to be
        re-uploaded (its link expires); after MAX_DOWNLOAD_ATTEMPTS failures the link is shown."""
        if not (record.status == SUCCESS and record.image_url and not record.result_url):
            return True, None
        try:
            return True, await self._fetcher.fetch(record.image_url, max_bytes=self.settings.max_upload_bytes)
        except BotError as exc:
            watch = self._watch.get(record.id)
            failures = watch.download_failures + 1 if watch is not None else MAX_DOWNLOAD_ATTEMPTS
            if watch is not None:
                watch.download_failures = failures
            if failures < MAX_DOWNLOAD_ATTEMPTS:
                log.warning("Downloading the result of %s failed (%s); retrying", record.id, exc)
                self._retry_later(record.id, True)
                return False, None
            log.warning("Giving up downloading the result of %s; posting the link", record.id)
            return True, None

    async def _deliver(self, record: TaskRecord, data: bytes | None) -> bool:
        file: discord.File | None = None
        image_ref: str | None = None
        if data is not None:
            mime = sniff_image(data) or "image/png"
            name = render.result_filename(record, EXTENSIONS.get(mime, "png"))
            file = discord.File(io.BytesIO(data), filename=name)
            image_ref = f"attachment://{name}"
        parts = render.render_task(record, image=image_ref)
        message = await self._send_or_edit(record, parts, file=file)
        if message is None:
            return True
        result_url = message.attachments[0].url if message.attachments else record.result_url
        delivered = replace(
            record, shown=parts.fingerprint(), message_id=message.id, delivered=True, result_url=result_url
        )
        await self._finish(record, delivered)
        return True

    async def _finish(self, old: TaskRecord, new: TaskRecord) -> None:
        """The task needs nothing more from Discord: store that now and stop tracking it."""
        self._note(old, new)
        if new.delivered:
            # Until `delivered` is stored the row still looks in flight: never adopt it again meanwhile.
            self._delivered[new.id] = self._clock()
        self._active.pop(new.id, None)
        self._watch.pop(new.id, None)
        self._confirmed.pop(new.id, None)
        self._queue.discard(new.id)
        handle = self._retries.pop(new.id, None)
        if handle is not None:
            handle.cancel()
        # The sooner `delivered` is stored, the smaller the window in which a crash posts twice:
        # finished rows jump ahead of the poll batches (never waited for here: a locked or full
        # database must not hold up Discord writes).
        self._finished[new.id] = self._unsaved.pop(new.id, {})
        self._save_soon()

    def _retry_later(self, task_id: str, urgent: bool) -> None:
        """Try a refused write again after a pause that doubles with each refusal in a row."""
        watch = self._watch.get(task_id)
        if watch is None or task_id in self._retries:
            return
        watch.write_failures += 1
        base = min(1.0, self.settings.poll_interval)
        delay = min(MAX_WRITE_RETRY, base * 2 ** (watch.write_failures - 1))
        self._queue.discard(task_id)
        loop = asyncio.get_running_loop()
        self._retries[task_id] = loop.call_later(delay, self._retry_now, task_id, urgent)

    def _retry_now(self, task_id: str, urgent: bool) -> None:
        self._retries.pop(task_id, None)
        record = self._active.get(task_id)
        if record is not None:
            urgent = urgent or record.status in FINAL_STATUSES or record.message_id is None
            self._queue_write(record, urgent=urgent)

    async def _send_or_edit(
        self, record: TaskRecord, parts: render.MessageParts, *, file: discord.File | None = None
    ) -> discord.Message | None:
        """Edit the task's message (or post one if it has none / it was deleted). The message, or
        None when Discord refused (retried later) or the channel is gone (tracking stops)."""
        channel = self._client.get_partial_messageable(record.channel_id, guild_id=record.guild_id)
        view = render.build_view(parts.buttons)
        try:
            if record.message_id is not None:
                try:
                    kwargs: dict[str, object] = {"content": parts.content, "embed": parts.embed, "view": view}
                    if file is not None:
                        kwargs["attachments"] = [file]
                    message = await channel.get_partial_message(record.message_id).edit(**kwargs)  # type: ignore[arg-type]
                    self._wrote(record.id)
                    return message
                except discord.NotFound:
                    log.info("Message of task %s was deleted; posting a new one", record.id)
                    if file is not None:
                        file.reset()
            send_kwargs: dict[str, object] = {"content": parts.content, "embed": parts.embed}
            if view is not None:
                send_kwargs["view"] = view
            if file is not None:
                send_kwargs["file"] = file
            message = await channel.send(**send_kwargs)  # type: ignore[arg-type]
            self._wrote(record.id)
            return message
        except discord.NotFound:
            log.warning("Channel %s of task %s is gone; stopping its tracking", record.channel_id, record.id)
            await self._finish(record, replace(record, delivered=True))
            return None
        except discord.Forbidden:
            log.warning("No permission to post task %s in channel %s; stopping", record.id, record.channel_id)
            await self._finish(record, replace(record, delivered=True))
            return None
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            status = getattr(exc, "status", type(exc).__name__)
            log.warning("Discord refused the update of task %s (%s); retrying", record.id, status)
            self.counters.write_failures += 1
            urgent = record.status in FINAL_STATUSES or record.message_id is None
            self._retry_later(record.id, urgent)
            return None

    def _wrote(self, task_id: str) -> None:
        self.counters.edits_sent += 1
        watch = self._watch.get(task_id)
        if watch is not None:
            watch.write_failures = 0

    # ---- push updates (issue 6: bot/web/server.py) ------------------------------------------------------

    def is_tracking(self, upstream: str, task_id: str) -> bool:
        """Whether `task_id` is in flight here and belongs to `upstream` (a push names its upstream)."""
        record = self._active.get(task_id)
        return record is not None and record.status not in FINAL_STATUSES and record.upstream == upstream

    async def hint(self, upstream: str, task_id: str) -> bool:
        """A push (notifyHook) said this task changed: read it again now, from its own upstream with
        that upstream's key, instead of at its next poll (which stays the safety net). The push's
        own content is never used. Pushes that arrive while a read is under way cost one more read
        after it, not one each. False when nothing was read (not tracked here, another upstream's
        task, no such upstream, or that upstream is backing off)."""
        if not self.is_tracking(upstream, task_id):
            return False
        if task_id in self._hint_reads:
            self._hint_again.add(task_id)
            return False
        self._hint_reads.add(task_id)
        read = False
        try:
            while self.is_tracking(upstream, task_id):
                self._hint_again.discard(task_id)
                read = await self._read_hinted(upstream, task_id) or read
                if task_id not in self._hint_again:
                    break
                await asyncio.sleep(HINT_GAP)
        finally:
            self._hint_reads.discard(task_id)
            self._hint_again.discard(task_id)
        return read

    async def _read_hinted(self, upstream: str, task_id: str) -> bool:
        now = self._clock()
        health = self._health.get(upstream)
        if health is not None and health.not_before > now:
            return False  # failing or slow: pushes must not add reads the poll loop holds back
        try:
            client = self._upstreams.get(upstream)  # exactly the task's own upstream: no fallback
        except Exception:
            log.exception("Resolving upstream %r failed", upstream)
            return False
        if client is None:
            return False
        error, _ = await self._read_tasks(upstream, client, [task_id], now, alone={task_id})
        if error is not None:
            return False
        await self._save([task_id])
        return True
