"""The best any bot could do: a lower bound on completion-to-result latency under Discord's limits.

Computed from a benchmark run's own completion times (pure; no I/O), so the measured latency can be
judged against what the limits allow rather than against zero:

- a bot that polls sees a result only at its next read of the task. The bound charges each result
  the wait until that read by a poller that reads every task once per poll interval, each at a
  fixed moment of its own (`phase`: uniform over the interval, from a hash of the task id), i.e.
  on average half an interval and at most one;
- then the result is written at the earliest moment Discord's limits allow, results only (no
  progress, no first posts), in the order they became ready, with no CPU or network time:
  * through the task's interaction token while the token lives (its own bucket, one write: no wait);
  * otherwise with the bot token: at most `channel_limit` writes per `channel_window` per channel
    (the window opens with its first write, as the sink's buckets do) and, if `global_limit`, at most
    that many bot-token writes in each whole second (as the sink counts them).

Greedy, earliest ready first: a bound for the benchmark's judgement, not a proof of optimality.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Finished:
    """One finished task as the benchmark saw it."""

    task_id: str
    finished_at: float  # epoch seconds
    channel_id: int
    token_issued_at: float | None  # None: no interaction token (bot token only)


@dataclass(frozen=True, slots=True)
class Limits:
    poll_interval: float
    global_limit: int = 50  # bot-token requests per second; 0 = none
    channel_limit: int = 5
    channel_window: float = 5.0
    token_seconds: float = 900.0  # an interaction token's life


def phase(task_id: str) -> float:
    """Where in the poll interval the ideal poller reads the task, in [0, 1)."""
    return zlib.crc32(task_id.encode()) / 2**32


def lower_bound(tasks: Iterable[Finished], limits: Limits) -> dict[str, float]:
    """Task id -> the least completion-to-result latency (s) Discord's limits allow."""
    ready = sorted(((t.finished_at + limits.poll_interval * phase(t.task_id), t) for t in tasks), key=lambda r: r[0])
    latency: dict[str, float] = {}
    channels: dict[int, tuple[float, int, float]] = {}  # channel -> (window end, writes in it, last write)
    per_second: dict[int, int] = {}  # whole second -> bot-token writes in it
    for at, task in ready:
        if task.token_issued_at is not None and at < task.token_issued_at + limits.token_seconds:
            latency[task.task_id] = at - task.finished_at
            continue
        end, used, last = channels.get(task.channel_id, (0.0, 0, 0.0))
        send = max(at, last)  # a channel's writes go out in order
        while True:
            if send >= end:
                end, used = send + limits.channel_window, 0
            if used >= limits.channel_limit:
                send = end
                continue
            if limits.global_limit > 0 and per_second.get(int(send), 0) >= limits.global_limit:
                send = float(int(send) + 1)
                continue
            break
        channels[task.channel_id] = (end, used + 1, send)
        per_second[int(send)] = per_second.get(int(send), 0) + 1
        latency[task.task_id] = send - task.finished_at
    return latency


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (nearest rank); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))]
