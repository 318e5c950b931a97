"""One object per tracked task: its newest row and everything the tracker's parts keep about it.

Memory only (rebuilt from the row on resume), so forgetting a task is dropping its object.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.models import TaskRecord


@dataclass(slots=True, eq=False)
class TrackedTask:
    record: TaskRecord  # the newest state, stored or not yet
    # Scheduling (bot/tracking/scheduling.py).
    since: float  # when the task entered its status, or tracking (re)started
    due: float  # when it is next read
    moved: float  # when its status or progress last changed (or tracking (re)started)
    stall_read: float = 0.0  # when it was last read on its own because it had not moved
    # The Discord writer (bot/tracking/writer.py).
    write_failures: int = 0  # refusals in a row: the next retry waits twice as long
    # Claimed from the database with a final status (a restart, or a process that died): its result
    # may be on Discord already if that process died between posting it and storing `delivered`.
    # Checked once, before uploading it.
    check_delivered: bool = False
    shown_states: int = 0  # states written since tracking (re)started: the first goes before other progress
    download_failures: int = 0
    retry: asyncio.TimerHandle | None = None  # a refused write waiting to be tried again
    # Leases (bot/tracking/leases.py): when the lease was last confirmed ours (time.monotonic).
    lease_confirmed: float | None = None
    # Push hints (Tracker.hint): a read a push asked for is under way, and another push came meanwhile.
    hint_reading: bool = False
    hint_again: bool = False

    @classmethod
    def starting(cls, record: TaskRecord, now: float, *, lease_confirmed: float | None = None) -> TrackedTask:
        """A task tracked from `now` on: read at once, as if it had just changed."""
        return cls(record, since=now, due=now, moved=now, lease_confirmed=lease_confirmed)

    @property
    def id(self) -> str:
        return self.record.id

    def cancel_retry(self) -> None:
        if self.retry is not None:
            self.retry.cancel()
            self.retry = None


#: The tasks a tracker holds, by id. Shared by its parts; only the tracker adds and drops.
TrackedTasks = dict[str, TrackedTask]
