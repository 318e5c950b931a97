"""The tracker's scheduling: adaptive polling, backoff, per-channel pacing, coalescing, priorities.

Scheduling is tested with a fake clock and small fakes for the upstream and the Discord client (a
clock in our hands makes "read every 4th tick" exact). The burst test runs the real tracker through
discord.py against the fake Discord with per-channel buckets and the simulated API.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import discord
import pytest

from bot import render
from bot.config import Settings
from bot.errors import QueueFull, TransientError
from bot.models import FAILURE, IN_PROGRESS, NOT_START, MJTask, TaskKey, TaskRecord
from bot.net.fetcher import Fetcher
from bot.storage.sqlite import Store
from bot.tracking.pacing import ChannelPacer, EditQueue, PrioritySlots, RateGate
from bot.tracking.scheduling import PlannedRead, plan_reads, poll_every, read_phase
from bot.tracking.settings import TrackerSettings
from bot.tracking.tracker import BOT_TIMEOUT_REASON, Tracker
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.simulator import SimulatedProxy
from tests.fakes.discord import FakeDiscord

TOKEN = "fake-bot-token"

# ---- fakes ----------------------------------------------------------------------------------------


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeUpstream:
    """list-by-condition / fetch answering from `tasks`; `errors` are raised first, one per call."""

    tasks: dict[str, MJTask] = field(default_factory=dict)
    errors: list[Exception] = field(default_factory=list)
    calls: list[list[str]] = field(default_factory=list)
    clock: Clock | None = None
    takes: float = 0.0  # how long a call takes on `clock`

    async def list_by_ids(self, ids: Sequence[str]) -> list[MJTask]:
        self.calls.append(list(ids))
        if self.clock is not None:
            self.clock.now += self.takes
        if self.errors:
            raise self.errors.pop(0)
        return [self.tasks[i] for i in ids if i in self.tasks]

    def reads_of(self, task_id: str) -> int:
        return sum(task_id in call for call in self.calls)


@dataclass
class SentMessage:
    id: int
    attachments: list[Any] = field(default_factory=list)


class FakeChannel:
    def __init__(self, client: FakeDiscordClient, channel_id: int) -> None:
        self._client = client
        self.id = channel_id

    async def send(self, **kwargs: Any) -> SentMessage:
        self._client.writes.append(("send", self.id, kwargs))
        return SentMessage(id=900_000 + len(self._client.writes))

    def get_partial_message(self, message_id: int) -> FakePartial:
        return FakePartial(self._client, self.id, message_id)


class FakePartial:
    def __init__(self, client: FakeDiscordClient, channel_id: int, message_id: int) -> None:
        self._client = client
        self.channel_id = channel_id
        self.id = message_id

    async def edit(self, **kwargs: Any) -> SentMessage:
        if self._client.gate is not None:
            await self._client.gate.wait()
        self._client.writes.append(("edit", self.channel_id, kwargs))
        return SentMessage(id=self.id)


class FakeDiscordClient:
    """Just the part of discord.Client the tracker writes through; edits wait for `gate` if set."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.writes: list[tuple[str, int, dict[str, Any]]] = []
        self.gate = gate

    def get_partial_messageable(self, channel_id: int, *, guild_id: int | None = None) -> FakeChannel:
        return FakeChannel(self, channel_id)


def settings(**changes: Any) -> TrackerSettings:
    base = {"poll_interval": 1.0, "fresh_seconds": 5.0, "queued_every": 4, "running_every": 2, "near_end_percent": 60}
    return TrackerSettings(**{**base, **changes})


def tracked(tracker: Tracker, task_id: str) -> TaskRecord:
    """The tracker's newest state of a task it tracks."""
    record = tracker.record_of(task_id)
    assert record is not None, f"task {task_id} is not tracked"
    return record


def shown(record: TaskRecord) -> TaskRecord:
    """The record as if its message already shows it."""
    return replace(record, shown=render.render_task(record).fingerprint())


_ids = itertools.count(1748339100000000)


def record(
    status: str = IN_PROGRESS, progress: int | None = 10, *, message_id: int | None = 555, **kw: Any
) -> TaskRecord:
    base: dict[str, Any] = {
        "id": str(next(_ids)),
        "action": "IMAGINE",
        "user_id": 11,
        "channel_id": 22,
        "guild_id": 33,
        "prompt": "a cat",
        "status": status,
        "progress": progress,
        "message_id": message_id,
        "created_at": 0.0,  # no timeout unless a test sets one
    }
    base.update(kw)
    return shown(TaskRecord(**base))


def as_task(rec: TaskRecord, **changes: Any) -> MJTask:
    values: dict[str, Any] = {"id": rec.id, "action": rec.action, "status": rec.status, "progress": rec.progress}
    values.update(changes)
    return MJTask(**values)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "bot.sqlite3")
    yield store
    await store.close()


@pytest.fixture
async def fetcher() -> AsyncIterator[Fetcher]:
    # One upstream in these tests: the shared download_concurrency is what they measure, not its
    # per-upstream share.
    fetcher = Fetcher(slots_per_upstream=1000)
    yield fetcher
    await fetcher.aclose()


async def make_tracker(
    store: Store,
    fetcher: Fetcher,
    upstream: Any,
    records: Sequence[TaskRecord],
    *,
    clock: Clock,
    wall: Clock | None = None,
    discord_client: Any = None,
    **changes: Any,
) -> Tracker:
    await store.insert_many(records)
    tracker = Tracker(
        discord_client or FakeDiscordClient(),
        store,
        {"default": upstream},
        fetcher,
        settings(**changes),
        clock=clock,
        wall=wall or Clock(10_000.0),
    )
    await tracker.resume()
    return tracker


async def ticks(tracker: Tracker, clock: Clock, count: int) -> None:
    for _ in range(count):
        await tracker.run_cycle()
        clock.now += tracker.settings.poll_interval


async def settle(tracker: Tracker) -> None:
    """Until every queued Discord write went out (the writers run as their own tasks)."""
    for _ in range(500):
        if not tracker.pending_writes:
            await tracker.flush()
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{tracker.pending_writes} write(s) still pending")


# ---- settings -------------------------------------------------------------------------------------


def test_the_tracker_takes_its_share_of_the_deployment_settings() -> None:
    env = {
        "DISCORD_TOKEN": "t",
        "MJ_API_BASE": "https://mj.example",
        "POLL_INTERVAL": "2",
        "POLL_BATCH_SIZE": "50",
        "TASK_TIMEOUT": "60",
        "STALL_SECONDS": "30",
        "MAX_UPLOAD_BYTES": "2048",
        "DISCORD_CHANNEL_WINDOW": "0.25",
    }
    tracking = TrackerSettings.from_settings(Settings.from_env(env))
    taken = (tracking.poll_interval, tracking.batch_size, tracking.task_timeout, tracking.stall_seconds)
    assert taken == (2.0, 50, 60.0, 30.0)
    assert (tracking.max_upload_bytes, tracking.channel_window) == (2048, 0.25)
    # With push updates polling is the safety net: PUSH_POLL_INTERVAL wins.
    pushed = Settings.from_env({**env, "PUBLIC_URL": "https://bot.example", "PUSH_POLL_INTERVAL": "30"})
    assert TrackerSettings.from_settings(pushed).poll_interval == 30.0
    # A deployment that sets nothing runs the tracker on its own defaults: one set of defaults.
    unset = Settings(discord_token="t", api_base="https://mj.example")
    assert TrackerSettings.from_settings(unset) == TrackerSettings()


# ---- poll_every -----------------------------------------------------------------------------------


def test_a_task_that_just_started_is_read_every_tick() -> None:
    assert poll_every(record(NOT_START, None), 1.0, settings()) == 1
    assert poll_every(record(IN_PROGRESS, 5), 1.0, settings()) == 1


def test_a_queued_task_is_read_less_often_than_a_running_one() -> None:
    config = settings()
    assert poll_every(record(NOT_START, None), 60.0, config) == 4
    assert poll_every(record("", None), 60.0, config) == 4
    assert poll_every(record(IN_PROGRESS, 20), 60.0, config) == 2


def test_a_task_near_its_end_is_read_every_tick() -> None:
    assert poll_every(record(IN_PROGRESS, 60), 60.0, settings()) == 1
    assert poll_every(record(IN_PROGRESS, None), 60.0, settings()) == 1  # unknown progress: could be anywhere


def test_a_task_whose_pace_says_it_ends_within_two_ticks_is_read_every_tick() -> None:
    # 40% in 1.2 s: 60% more takes ~1.8 s, under two 1 s ticks.
    assert poll_every(record(IN_PROGRESS, 40), 1.2, settings(fresh_seconds=0.0)) == 1
    assert poll_every(record(IN_PROGRESS, 40), 30.0, settings(fresh_seconds=0.0)) == 2


# ---- pacing primitives --------------------------------------------------------------------------


def test_a_reads_plan_batches_by_phase_spreads_only_when_slots_run_out_and_fetches_stalled_tasks_alone() -> None:
    ids = [str(1748339100000000 + n) for n in range(7)]
    ordered = sorted(ids, key=read_phase)
    alone = {ordered[3]}
    few = plan_reads(ids, alone=alone, use_list=True, settings=settings(batch_size=2, fetch_concurrency=8))
    listed = [i for i in ordered if i not in alone]
    assert few == [
        PlannedRead(listed[0:2], True, 0.0),
        PlannedRead(listed[2:4], True, 0.0),
        PlannedRead(listed[4:6], True, 0.0),
        PlannedRead([ordered[3]], False, 0.0),
    ]
    # More batches than slots: each goes at its first task's moment of the spread (the first at once).
    many = plan_reads(ids, alone=alone, use_list=True, settings=settings(batch_size=2, fetch_concurrency=2))
    assert [read.at for read in many] == [0.0, *(read_phase(r.ids[0]) * 0.75 for r in many[1:3]), 0.0]
    # An upstream without list-by-condition: every task on its own.
    single = plan_reads(ids, alone=alone, use_list=False, settings=settings(batch_size=2, fetch_concurrency=8))
    assert [read.ids for read in single] == [[i] for i in ordered] and not any(r.listed for r in single)


def test_channel_pacer_allows_the_bucket_then_waits_out_the_window() -> None:
    clock = Clock()
    pacer = ChannelPacer(5, 5.0, clock=clock)
    for _ in range(5):
        assert pacer.wait_time(1) == 0.0
        pacer.record(1)
        clock.now += 0.1
    assert pacer.wait_time(1) == pytest.approx(5.0 + 0.05 - 0.5)
    assert pacer.wait_time(1, reserve=1) == pytest.approx(5.0 + 0.05 - 0.4)  # progress leaves one for a final
    assert pacer.wait_time(2) == 0.0  # other channels are not affected
    clock.now += 4.6
    assert pacer.wait_time(1) == 0.0


def test_edit_queue_sends_finals_first_and_keeps_one_entry_per_task() -> None:
    queue = EditQueue()
    assert queue.push(7, "p1", urgent=False)
    assert queue.push(7, "p2", urgent=False)
    assert not queue.push(7, "p1", urgent=False)  # newer progress of p1: still one edit
    assert queue.push(7, "f1", urgent=True)
    assert not queue.push(7, "p2", urgent=True)  # p2 finished while waiting: now urgent
    assert queue.pending(7) == 3
    assert [queue.pop(7), queue.pop(7), queue.pop(7), queue.pop(7)] == [("f1", True), ("p2", True), ("p1", False), None]
    assert len(queue) == 0


def test_edit_queue_demotes_a_first_post_that_landed_to_progress() -> None:
    queue = EditQueue()
    queue.push(7, "new", urgent=True)  # had no message when queued
    queue.push(7, "old", urgent=False)
    queue.demote("new")  # its message was posted meanwhile: one more edit, but no longer urgent
    assert not queue.has_urgent(7)
    assert [queue.pop(7), queue.pop(7)] == [("old", False), ("new", False)]


async def test_priority_slots_serve_urgent_waiters_first() -> None:
    slots = PrioritySlots(1)
    order: list[str] = []

    async def use(name: str, urgent: bool) -> None:
        async with slots.hold(urgent=urgent):
            order.append(name)
            await asyncio.sleep(0)

    async with slots.hold(urgent=False):
        waiting = [asyncio.create_task(use("progress", False)), asyncio.create_task(use("final", True))]
        await asyncio.sleep(0)
    await asyncio.gather(*waiting)
    assert order == ["final", "progress"]


async def test_priority_slots_keep_a_share_free_for_results() -> None:
    slots = PrioritySlots(4, others_limit=2)
    assert await slots.acquire(urgent=False) and await slots.acquire(urgent=False)
    third = asyncio.create_task(slots.acquire(urgent=False))
    await asyncio.sleep(0)
    assert not third.done()  # two slots free, but progress has its share
    assert await asyncio.wait_for(slots.acquire(urgent=True), 1.0)  # a result gets one at once
    slots.release(urgent=True)
    assert not third.done()
    slots.release(urgent=False)
    assert await asyncio.wait_for(third, 1.0)


async def test_rate_gate_passes_a_burst_then_spaces_the_rest_in_order() -> None:
    gate = RateGate(20.0)  # one second's worth at once, then one per 50 ms
    never = asyncio.Event()
    assert all([await gate.wait(never) for _ in range(20)])
    order: list[int] = []

    async def wait(n: int) -> None:
        assert await gate.wait(never)
        order.append(n)

    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.gather(*(wait(n) for n in range(4)))
    assert order == [0, 1, 2, 3]
    assert loop.time() - started >= 3 * 0.05 - 0.01  # spaced out, not all at once


async def test_rate_gate_lets_a_waiter_go_when_called_away_and_keeps_its_pass() -> None:
    gate = RateGate(1.0)
    never, called = asyncio.Event(), asyncio.Event()
    assert await gate.wait(never) and await gate.wait(never)  # the burst is used up
    waiting = asyncio.create_task(gate.wait(called))
    await asyncio.sleep(0)
    called.set()
    assert await asyncio.wait_for(waiting, 1.0) is False


async def test_priority_slots_give_up_waiting_when_told_and_leak_nothing() -> None:
    slots = PrioritySlots(1)
    result_queued = asyncio.Event()
    async with slots.hold(urgent=True):
        waiting = asyncio.create_task(slots.acquire(urgent=False, unless=result_queued))
        await asyncio.sleep(0)
        result_queued.set()
        assert await waiting is False
    assert await asyncio.wait_for(slots.acquire(urgent=False), 1.0) is True  # the slot came back
    slots.release(urgent=False)
    assert await slots.acquire(urgent=False, unless=result_queued) is True  # free: taken at once


# ---- the tracker with fakes -----------------------------------------------------------------------


async def test_each_cycle_reads_in_batches_of_batch_size(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    records = [record() for _ in range(250)]
    upstream = FakeUpstream(tasks={r.id: as_task(r) for r in records})
    tracker = await make_tracker(store, fetcher, upstream, records, clock=clock, batch_size=100)
    await tracker.run_cycle()
    assert sorted(len(call) for call in upstream.calls) == [50, 100, 100]
    assert tracker.counters.last_cycle_requests == 3


async def test_unchanged_state_sends_no_edit(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    client = FakeDiscordClient()
    rec = record(IN_PROGRESS, 30)
    upstream = FakeUpstream(tasks={rec.id: as_task(rec)})
    tracker = await make_tracker(store, fetcher, upstream, [rec], clock=clock, discord_client=client)
    await ticks(tracker, clock, 3)
    assert client.writes == []
    assert tracker.counters.edits_skipped == 3 and tracker.counters.edits_sent == 0


async def test_queued_tasks_are_read_less_often_than_running_ones_and_those_near_the_end_every_tick(
    store: Store, fetcher: Fetcher
) -> None:
    clock = Clock()
    queued, running, ending = record(NOT_START, None), record(IN_PROGRESS, 30), record(IN_PROGRESS, 80)
    upstream = FakeUpstream(tasks={r.id: as_task(r) for r in (queued, running, ending)})
    tracker = await make_tracker(store, fetcher, upstream, [queued, running, ending], clock=clock)
    await ticks(tracker, clock, 20)
    # Fresh after resume (5 s): every tick; then every 4th, every 2nd and every tick.
    assert upstream.reads_of(ending.id) == 20
    assert upstream.reads_of(running.id) == 6 + 7
    assert upstream.reads_of(queued.id) == 6 + 3
    assert max(len(call) for call in upstream.calls) <= 3


async def test_a_failing_upstream_is_read_less_and_less_often_then_normally_again(
    store: Store, fetcher: Fetcher
) -> None:
    clock = Clock()
    rec = record(IN_PROGRESS, 80)
    upstream = FakeUpstream(tasks={rec.id: as_task(rec)}, errors=[TransientError("HTTP 502")] * 4)
    tracker = await make_tracker(store, fetcher, upstream, [rec], clock=clock)
    await ticks(tracker, clock, 14)
    assert len(upstream.calls) == 3  # ticks 0, 2 and 6: the spacing doubles with each failure
    await ticks(tracker, clock, 10)
    assert len(upstream.calls) == 4  # tick 14 failed too: the next read waits until tick 30
    await ticks(tracker, clock, 20)
    assert len(upstream.calls) == 7  # ticks 30, 38, 42 answer: the spacing halves each time
    await ticks(tracker, clock, 5)
    assert len(upstream.calls) == 12  # every tick again
    assert tracker.counters.read_failures == 4


async def test_retry_after_holds_reads_back(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    rec = record(IN_PROGRESS, 80)
    upstream = FakeUpstream(tasks={rec.id: as_task(rec)}, errors=[QueueFull("overloaded", retry_after=7.0)])
    tracker = await make_tracker(store, fetcher, upstream, [rec], clock=clock)
    await ticks(tracker, clock, 7)
    assert len(upstream.calls) == 1
    await ticks(tracker, clock, 2)
    assert len(upstream.calls) == 3


async def test_a_slow_upstream_is_read_less_often(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    rec = record(IN_PROGRESS, 80)
    upstream = FakeUpstream(tasks={rec.id: as_task(rec)}, clock=clock, takes=6.0)
    tracker = await make_tracker(store, fetcher, upstream, [rec], clock=clock, slow_read_seconds=5.0)
    for _ in range(10):
        await tracker.run_cycle()
        clock.now += 1.0
    # Every read "takes" 6 s of the clock, so each one pushes the next further out.
    assert len(upstream.calls) < 5


async def test_a_task_without_a_message_gets_a_fresh_one(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    client = FakeDiscordClient()
    rec = record(NOT_START, None, message_id=None)
    upstream = FakeUpstream(tasks={rec.id: as_task(rec)})
    tracker = await make_tracker(store, fetcher, upstream, [rec], clock=clock, discord_client=client)
    await tracker.run_cycle()
    await settle(tracker)
    assert [(kind, channel) for kind, channel, _ in client.writes] == [("send", rec.channel_id)]
    stored = await store.get_task(rec.id)
    assert stored is not None and stored.message_id is not None and stored.shown


async def test_forgetting_a_task_drops_its_write_waiting_for_a_retry(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    refused: list[int] = []

    class RefusingPartial(FakePartial):
        async def edit(self, **kwargs: Any) -> SentMessage:
            refused.append(self.id)
            raise OSError("connection reset")

    class RefusingChannel(FakeChannel):
        def get_partial_message(self, message_id: int) -> FakePartial:
            return RefusingPartial(self._client, self.id, message_id)

    class RefusingClient(FakeDiscordClient):
        def get_partial_messageable(self, channel_id: int, *, guild_id: int | None = None) -> FakeChannel:
            return RefusingChannel(self, channel_id)

    rec = record(IN_PROGRESS, 10)
    upstream = FakeUpstream(tasks={rec.id: as_task(rec, progress=50)})
    tracker = await make_tracker(
        store, fetcher, upstream, [rec], clock=clock, discord_client=RefusingClient(), poll_interval=0.05
    )
    await tracker.run_cycle()
    for _ in range(200):  # until the refused edit waits for its retry
        if refused:  # refused and set to retry in one step
            break
        await asyncio.sleep(0.01)
    assert refused == [rec.message_id] and tracker.pending_writes == 1
    tracker.forget(rec.key)
    assert tracker.pending_writes == 0 and tracker.active_ids == []
    await asyncio.sleep(0.3)  # several retry delays: the retry was dropped with the task
    assert refused == [rec.message_id]
    await tracker.stop()


async def test_a_task_past_the_timeout_ends_with_a_clear_failure(store: Store, fetcher: Fetcher) -> None:
    clock, wall = Clock(), Clock(10_000.0)
    client = FakeDiscordClient()
    rec = record(IN_PROGRESS, 30, created_at=10_000.0 - 61.0)
    upstream = FakeUpstream(tasks={rec.id: as_task(rec)})
    tracker = await make_tracker(
        store, fetcher, upstream, [rec], clock=clock, wall=wall, discord_client=client, task_timeout=60.0
    )
    await tracker.run_cycle()
    await settle(tracker)
    stored = await store.get_task(rec.id)
    assert stored is not None and stored.status == FAILURE and stored.fail_reason == BOT_TIMEOUT_REASON
    assert stored.delivered and tracker.active_ids == []
    assert "stopped waiting" in client.writes[-1][2]["embed"].fields[0].value
    assert upstream.calls == []  # it was not read again


async def test_progress_that_moves_again_before_its_edit_left_is_sent_once_with_the_newest_state(
    store: Store, fetcher: Fetcher
) -> None:
    clock = Clock()
    client = FakeDiscordClient(gate=asyncio.Event())
    tasks = [record(IN_PROGRESS, 10) for _ in range(3)]
    upstream = FakeUpstream(tasks={r.id: as_task(r, progress=20) for r in tasks})
    tracker = await make_tracker(
        store, fetcher, upstream, tasks, clock=clock, discord_client=client, final_reserve=0
    )  # four writes fit the channel's window: only coalescing is at work here
    await ticks(tracker, clock, 1)  # three edits queued; the first is in flight and held
    upstream.tasks = {r.id: as_task(r, progress=40) for r in tasks}
    await ticks(tracker, clock, 1)
    assert tracker.counters.progress_coalesced == 2
    assert client.gate is not None
    client.gate.set()
    await settle(tracker)
    shown_percent = [(w[2]["embed"].fields[0].value.split()[-1]) for w in client.writes]
    assert shown_percent == ["20%", "40%", "40%", "40%"]  # the first task twice, the others once


async def test_progress_edits_share_a_bot_wide_rate_and_results_do_not_wait_for_it(
    store: Store, fetcher: Fetcher
) -> None:
    clock = Clock()
    client = FakeDiscordClient()
    running = [shown(record(IN_PROGRESS, 10, channel_id=400 + i)) for i in range(20)]
    ending = shown(record(IN_PROGRESS, 90, channel_id=500))
    upstream = FakeUpstream(tasks={r.id: as_task(r, progress=50) for r in running})
    upstream.tasks[ending.id] = as_task(ending, status="SUCCESS", progress=100, image_url=None)
    tracker = await make_tracker(
        store, fetcher, upstream, [*running, ending], clock=clock, discord_client=client, progress_rate=5.0
    )
    await tracker.run_cycle()
    await asyncio.sleep(0.3)
    progress = [w for w in client.writes if w[1] != 500]
    assert [w[1] for w in client.writes].count(500) == 1  # the result went at once
    assert len(progress) <= 6  # one second's worth of progress (5), then one per 0.2 s
    await settle(tracker)
    assert len([w for w in client.writes if w[1] != 500]) == 20  # and is sent in the end


async def test_more_batches_than_fetch_slots_are_spread_over_the_interval_and_applied_as_they_come(
    store: Store, fetcher: Fetcher
) -> None:
    clock = Clock()
    records = [record(IN_PROGRESS, 10) for _ in range(6)]
    sent: list[float] = []  # when each batch went out (real time: the spread is real waiting)
    moved: list[int] = []  # tasks already showing their new progress when each batch went out

    class TimedUpstream(FakeUpstream):
        async def list_by_ids(self, ids: Sequence[str]) -> list[MJTask]:
            sent.append(time.monotonic())
            moved.append(sum(tracked(tracker, r.id).progress == 50 for r in records))
            return await super().list_by_ids(ids)

    upstream = TimedUpstream(tasks={r.id: as_task(r, progress=50) for r in records})
    tracker = await make_tracker(
        store,
        fetcher,
        upstream,
        records,
        clock=clock,
        batch_size=2,
        fetch_concurrency=1,
        poll_interval=0.5,
        read_spread=1.0,
    )
    await tracker.run_cycle()
    assert [task_id for call in upstream.calls for task_id in call] == sorted((r.id for r in records), key=read_phase)
    for call, at in zip(upstream.calls[1:], sent[1:], strict=True):
        assert at - sent[0] >= read_phase(call[0]) * 0.5 - 0.01  # not before the task's moment
    assert moved == [0, 2, 4]  # each answer was applied before the next batch went out
    assert all(tracked(tracker, r.id).progress == 50 for r in records)


async def test_drain_waits_for_the_writes_in_flight(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    client = FakeDiscordClient(gate=asyncio.Event())
    rec = shown(record(IN_PROGRESS, 10))
    upstream = FakeUpstream(tasks={rec.id: as_task(rec, progress=50)})
    tracker = await make_tracker(store, fetcher, upstream, [rec], clock=clock, discord_client=client)
    await tracker.run_cycle()  # one edit, held by a slow Discord
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(tracker.drain(), 0.2)
    assert tracker.pending_writes == 1 and client.writes == []
    assert client.gate is not None
    client.gate.set()
    await asyncio.wait_for(tracker.drain(), 5.0)
    assert tracker.pending_writes == 0 and len(client.writes) == 1


async def test_a_result_does_not_wait_behind_its_channels_progress_edit(store: Store, fetcher: Fetcher) -> None:
    clock = Clock()
    client = FakeDiscordClient(gate=asyncio.Event())
    elsewhere = shown(record(IN_PROGRESS, 10, channel_id=99))
    running = shown(record(IN_PROGRESS, 10))
    ending = shown(record(IN_PROGRESS, 50))
    upstream = FakeUpstream(tasks={r.id: as_task(r) for r in (elsewhere, running, ending)})
    tracker = await make_tracker(
        store, fetcher, upstream, [elsewhere, running, ending], clock=clock, discord_client=client, edit_concurrency=1
    )
    upstream.tasks[elsewhere.id] = as_task(elsewhere, progress=20)
    await ticks(tracker, clock, 1)  # the one write slot: held by channel 99's edit (Discord is slow)
    upstream.tasks[running.id] = as_task(running, progress=20)
    await ticks(tracker, clock, 1)  # channel 22's writer waits for a slot with a progress edit...
    upstream.tasks[ending.id] = as_task(ending, status="SUCCESS", progress=100, image_url=None)
    await ticks(tracker, clock, 1)  # ...when a result arrives in channel 22
    assert client.gate is not None
    client.gate.set()
    await settle(tracker)
    in_channel = [w[2]["content"] for w in client.writes if w[1] == 22]
    assert len(in_channel) == 2 and "here you go" in in_channel[0]  # the result first, then the progress
    assert ending.id not in tracker.active_ids


class CountingStore(Store):
    """The real store, counting lease fences (how many round trips the results cost)."""

    fences: list[list[TaskKey]]

    async def hold_leases(self, keys: Sequence[TaskKey]) -> set[TaskKey]:
        self.fences.append(list(keys))
        return await super().hold_leases(keys)


class SlowSavingStore(Store):
    """The real store on a slow disk: each batch save takes a while."""

    async def update_many(self, changes: Any) -> None:
        await asyncio.sleep(0.2)
        await super().update_many(changes)


async def test_stopping_right_after_delivering_stores_the_delivery(tmp_path: Path, fetcher: Fetcher) -> None:
    store = await SlowSavingStore.open(tmp_path / "bot.sqlite3")
    try:
        clock = Clock()
        recs = [record(IN_PROGRESS, 80, channel_id=600 + i) for i in range(5)]
        upstream = FakeUpstream(tasks={r.id: as_task(r, status="SUCCESS", progress=100, image_url=None) for r in recs})
        client = FakeDiscordClient()
        tracker = await make_tracker(store, fetcher, upstream, recs, clock=clock, discord_client=client)
        await tracker.run_cycle()
        for _ in range(500):  # the writes went out; their save is still on its way
            if not tracker.pending_writes:
                break
            await asyncio.sleep(0.01)
        assert len(client.writes) == 5
        await tracker.stop()  # while the save of `delivered` is on its way
        assert await store.count_tasks(delivered=False) == 0  # a restart would upload them again
    finally:
        await store.close()


@pytest.mark.parametrize(("lease_seconds", "pause", "round_trips"), [(30.0, 0.0, 0), (0.6, 0.35, 1)])
async def test_results_fence_their_leases_in_one_round_trip_or_none(
    tmp_path: Path, fetcher: Fetcher, lease_seconds: float, pause: float, round_trips: int
) -> None:
    """Within half a lease of its claim a lease needs no check; later, results ready together share one."""
    store = await CountingStore.open(tmp_path / "bot.sqlite3", lease_seconds=lease_seconds)
    store.fences = []
    try:
        clock = Clock()
        recs = [record(IN_PROGRESS, 80, channel_id=300 + i) for i in range(20)]
        upstream = FakeUpstream(tasks={r.id: as_task(r) for r in recs})
        tracker = await make_tracker(store, fetcher, upstream, recs, clock=clock, download_concurrency=20)
        await asyncio.sleep(pause)  # past half the lease (not past the lease): the claim no longer vouches
        upstream.tasks = {r.id: as_task(r, status="SUCCESS", progress=100, image_url=None) for r in recs}
        await tracker.run_cycle()
        await settle(tracker)
        assert await store.count_tasks(delivered=False) == 0
        assert len(store.fences) == round_trips
        fenced = sorted(itertools.chain.from_iterable(store.fences))
        assert fenced == (sorted(r.key for r in recs) if round_trips else [])
    finally:
        await store.close()


# ---- the burst: real discord.py against the fake Discord's per-channel buckets ----------------------


async def test_a_burst_in_one_channel_draws_no_429_and_finals_jump_the_progress_queue(
    tmp_path: Path, fetcher: Fetcher
) -> None:
    window = 0.25
    async with (
        FakeDiscord(token=TOKEN) as fake,
        SimulatedProxy(flavor="relay", clock="reads", progress_steps=200, image_size=64) as proxy,
    ):
        fake.limit_channel_writes(5, window)
        store = await Store.open(tmp_path / "bot.sqlite3")
        client = discord.Client(intents=discord.Intents.none())
        upstream = MJClient(UpstreamConfig(base_url=proxy.base_url, api_key=""))
        fetcher.policy.trust(proxy.base_url)  # the upstream's own origin, as MJBot trusts MJ_API_BASE
        await client.login(TOKEN)
        try:
            busy = [proxy.add_task(f"busy {i}") for i in range(30)]
            quiet = proxy.add_task("quiet")
            channel_of = {**{i: fake.channel.id for i in busy}, quiet: fake.channel2.id}
            rows = [
                TaskRecord(id=i, action="IMAGINE", user_id=fake.member.id, channel_id=c, guild_id=fake.guild.id)
                for i, c in channel_of.items()
            ]
            await store.insert_many(rows)
            config = TrackerSettings(poll_interval=0.05, channel_edits=5, channel_window=window)
            tracker = Tracker(client, store, {"default": upstream}, fetcher, config)
            await tracker.resume()

            async def run_until(predicate: Any) -> None:
                async with asyncio.timeout(20):
                    while not predicate():
                        await tracker.run_cycle()
                        await asyncio.sleep(0.05)

            # Every task gets its message (the rows have none), then progress edits keep the channel busy.
            await run_until(lambda: all(fake.channel_messages(c) for c in (fake.channel, fake.channel2)))
            await run_until(lambda: len(fake.channel_messages(fake.channel)) == 30 and tracker.pending_writes > 5)
            first = busy[:10]
            for task_id in (*first, quiet):
                proxy.finish(task_id)
            await run_until(lambda: all(i not in tracker.active_ids for i in (*first, quiet)))
            for task_id in busy[10:]:
                proxy.finish(task_id)
            await run_until(lambda: not tracker.active_ids)
            await tracker.stop()
        finally:
            await client.close()
            await upstream.aclose()
            await store.close()

    assert fake.rate_limits_sent == 0 and fake.failed_requests == []
    writes = [r for r in fake.requests if r.method in ("POST", "PATCH") and r.path.startswith("/channels/")]
    busy_edits = [r for r in writes if r.method == "PATCH" and r.path.startswith(f"/channels/{fake.channel.id}/")]
    finals = [n for n, r in enumerate(busy_edits) if r.files]
    assert len(finals) == 30
    assert finals[:10] == list(range(finals[0], finals[0] + 10))  # the first ten jumped the progress queue
    messages = [m for m in fake.messages.values() if m.channel_id in (fake.channel.id, fake.channel2.id)]
    assert len(messages) == 31 and all(len(m.attachments) == 1 and m.buttons for m in messages)
    for message in messages:  # each result was uploaded exactly once
        assert sum(1 for r in writes if r.files and r.path.endswith(f"/{message.id}")) == 1
    for channel in (fake.channel, fake.channel2):  # never more than 5 writes in any window
        times = sorted(r.at for r in writes if r.path.startswith(f"/channels/{channel.id}/"))
        assert all(later - earlier >= window for earlier, later in zip(times, times[5:], strict=False))


# ---- several processes: leases ----------------------------------------------------------------------


async def test_a_crashed_trackers_tasks_are_taken_over_after_its_lease_and_delivered_once(
    tmp_path: Path, fetcher: Fetcher
) -> None:
    path = tmp_path / "shared.sqlite3"
    store_a = await Store.open(path, owner="a", lease_seconds=0.3)
    store_b = await Store.open(path, owner="b", lease_seconds=0.3)
    try:
        clock = Clock()
        recs = [record(IN_PROGRESS, 40, channel_id=100 + i) for i in range(6)]
        upstream = FakeUpstream(tasks={r.id: as_task(r, progress=70) for r in recs})
        client_a, client_b = FakeDiscordClient(), FakeDiscordClient()
        tracker_a = await make_tracker(store_a, fetcher, upstream, recs, clock=clock, discord_client=client_a)
        tracker_b = await make_tracker(store_b, fetcher, upstream, [], clock=clock, discord_client=client_b)
        assert sorted(tracker_a.active_ids) == sorted(r.id for r in recs) and tracker_b.active_ids == []
        assert await tracker_b.balance_leases() == (0, 0)  # a's leases are live: nothing to take

        await tracker_a.stop()  # a dies: no release, its leases simply run out
        await asyncio.sleep(0.4)
        assert await tracker_b.balance_leases() == (0, 6)
        for r in recs:
            upstream.tasks[r.id] = as_task(r, status="SUCCESS", progress=100, image_url=None)
        await tracker_b.run_cycle()
        await settle(tracker_b)
        assert len(client_b.writes) == 6 and client_a.writes == []
        assert await store_b.count_tasks(delivered=False) == 0
    finally:
        await store_a.close()
        await store_b.close()


async def test_the_survivors_of_a_crash_split_its_tasks_evenly(tmp_path: Path, fetcher: Fetcher) -> None:
    path = tmp_path / "shared.sqlite3"
    stores = [
        await Store.open(path, owner=owner, lease_seconds=lease) for owner, lease in (("c", 0.3), ("a", 30), ("b", 30))
    ]
    try:
        clock = Clock()
        recs = {
            owner: [record(IN_PROGRESS, 40) for _ in range(count)] for owner, count in (("c", 6), ("a", 3), ("b", 3))
        }
        upstream = FakeUpstream(tasks={r.id: as_task(r) for rs in recs.values() for r in rs})
        tracker_c, tracker_a, tracker_b = [
            await make_tracker(store, fetcher, upstream, recs[store.owner], clock=clock) for store in stores
        ]
        await tracker_c.stop()  # c dies: its six leases run out
        await asyncio.sleep(0.4)
        assert await tracker_a.balance_leases() == (0, 3)  # 12 in flight, 2 live processes: 6 each
        assert await tracker_b.balance_leases() == (0, 3)
        assert len(tracker_a.active_ids) == len(tracker_b.active_ids) == 6
        assert set(tracker_a.active_ids).isdisjoint(tracker_b.active_ids)
    finally:
        for store in stores:
            await store.close()


async def test_a_tracker_that_lost_its_lease_neither_delivers_nor_keeps_tracking(
    tmp_path: Path, fetcher: Fetcher
) -> None:
    path = tmp_path / "shared.sqlite3"
    store_a = await Store.open(path, owner="a", lease_seconds=0.3)
    store_b = await Store.open(path, owner="b", lease_seconds=30.0)
    try:
        clock = Clock()
        slow, other = record(IN_PROGRESS, 90), record(IN_PROGRESS, 20)
        upstream = FakeUpstream(tasks={slow.id: as_task(slow, status="SUCCESS", progress=100)})
        upstream.tasks[other.id] = as_task(other)
        client_a = FakeDiscordClient()
        tracker_a = await make_tracker(store_a, fetcher, upstream, [slow, other], clock=clock, discord_client=client_a)
        await asyncio.sleep(0.4)  # a stalls past its lease...
        assert len(await store_b.claim_tasks(10)) == 2  # ...and b takes both tasks
        await tracker_a.run_cycle()  # a still reads the final state, but the fence stops its post
        await settle(tracker_a)
        assert client_a.writes == [] and slow.id not in tracker_a.active_ids
        assert await tracker_a.balance_leases() == (1, 0)  # and it lets the other task go
        assert tracker_a.active_ids == []
        stored = await store_b.get_task(slow.id)
        assert stored is not None and not stored.delivered  # b delivers it, not a
    finally:
        await store_a.close()
        await store_b.close()


async def test_resume_takes_back_more_own_tasks_than_one_claim_batch(store: Store, fetcher: Fetcher) -> None:
    recs = [record(IN_PROGRESS, 10) for _ in range(7)]
    tracker = await asyncio.wait_for(
        make_tracker(store, fetcher, FakeUpstream(), recs, clock=Clock(), claim_batch=3), timeout=10
    )
    assert sorted(tracker.active_ids) == sorted(r.id for r in recs)
