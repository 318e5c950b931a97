"""What the tracker is tuned by, and what it counts.

The settings a deployment may change (POLL_INTERVAL, STALL_SECONDS, ...) live in bot/config.py;
their defaults are written there once and `TrackerSettings.from_settings` copies them over. The rest
are tuned here, against Discord's limits and the benchmark (bench/tracker.py).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from bot.config import Settings


def _configured(name: str) -> Any:
    """The default of a deployment setting, as bot/config.py declares it."""
    return next(field.default for field in fields(Settings) if field.name == name)


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    poll_interval: float = _configured("poll_interval")
    batch_size: int = _configured("poll_batch_size")
    task_timeout: float = _configured("task_timeout")
    max_upload_bytes: int = _configured("max_upload_bytes")
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
    stall_seconds: float = _configured("stall_seconds")
    stall_reads_per_tick: int = 10
    # An upstream whose batch takes longer than this is slow: its reads are spaced out like errors.
    slow_read_seconds: float = 5.0
    max_backoff: float = 60.0
    # Discord: about 5 message writes per 5 s per channel (and per interaction token).
    channel_edits: int = 5
    channel_window: float = _configured("discord_channel_window")
    # Bot-token writes per second, all processes together (Discord allows 50 per bot token); each
    # process takes budget / live processes. Interaction-token writes are not counted by Discord.
    write_budget: int = _configured("discord_write_budget")
    # How long after its interaction a task's message is written through the interaction's token
    # (Discord refuses it after 15 minutes; the minute to spare covers clock skew and slow writes).
    interaction_seconds: float = 14 * 60.0
    # Writes of each channel window that progress leaves free for final results and first posts.
    final_reserve: int = 2
    # Progress edits per second, all channels together (0 = no cap). Progress is the optional part:
    # at thousands of tasks it would take the CPU from results (bot-token progress is also held to
    # the write budget). A task's first progress edit goes before the others, so every task shows
    # one (at N=10,000 with 160 per second: 98% of the tasks); below the cap (a few hundred running
    # tasks) it changes nothing.
    progress_rate: float = 160.0
    # Tasks claimed per database round trip when taking over (start-up, or a process that died).
    claim_batch: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings) -> TrackerSettings:
        """The tracker's share of a deployment's settings; the rest keep their defaults."""
        return cls(
            # With push updates polling is only the safety net (MJ_API.md §8): PUSH_POLL_INTERVAL.
            poll_interval=settings.tracker_poll_interval,
            batch_size=settings.poll_batch_size,
            task_timeout=settings.task_timeout,
            max_upload_bytes=settings.max_upload_bytes,
            stall_seconds=settings.stall_seconds,
            channel_window=settings.discord_channel_window,
            write_budget=settings.discord_write_budget,
        )


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
    progress_skipped: int = 0  # progress edits dropped because the bot-token budget was spent
    timeouts: int = 0
    stall_reads: int = 0  # single reads of tasks that had not moved for stall_seconds
    cpu_seconds: float = 0.0  # CPU time spent inside run_cycle
