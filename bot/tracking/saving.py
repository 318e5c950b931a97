"""Storing what the tracker learns: the changed columns of each task, written in the background.

Reads and Discord writes never wait for the database: changes are noted in memory (the truth until
written) and a background task writes them, one transaction per batch, finished tasks first.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from bot.models import TaskKey, TaskRecord
from bot.storage.protocols import TaskStore

log = logging.getLogger(__name__)

# Columns the tracker changes; everything else in a row belongs to the cogs.
TRACKED_COLUMNS = (
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
    "interaction_token",  # cleared once the task is delivered
)


class PendingSaves:
    """The changes noted since the last save, and the background task that writes them."""

    def __init__(self, store: TaskStore, *, retry_base: float) -> None:
        self._store = store
        self._retry_base = retry_base  # seconds before the first retry of a failed batch (doubling)
        self._unsaved: dict[TaskKey, dict[str, Any]] = {}
        self._finished: dict[TaskKey, dict[str, Any]] = {}  # rows of delivered tasks: saved first
        self._saver: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._unsaved) + len(self._finished)

    def note(self, old: TaskRecord, new: TaskRecord) -> bool:
        """Remember the columns that changed, for the next save. True if any did."""
        changes = {name: getattr(new, name) for name in TRACKED_COLUMNS if getattr(new, name) != getattr(old, name)}
        if changes:
            self._unsaved.setdefault(new.key, {}).update(changes)
        return bool(changes)

    def drop(self, key: TaskKey) -> None:
        """A task let go of: what it noted is no longer ours to store."""
        self._unsaved.pop(key, None)

    def finished(self, key: TaskKey) -> None:
        """The sooner `delivered` is stored, the smaller the window in which a crash posts twice:
        finished rows jump ahead of the poll batches (never waited for here: a locked or full
        database must not hold up Discord writes)."""
        self._finished[key] = self._unsaved.pop(key, {})
        self.save_soon()

    def save_soon(self) -> None:
        if (self._unsaved or self._finished) and (self._saver is None or self._saver.done()):
            self._saver = asyncio.create_task(self._save_all(), name="mj-tracker-save")

    async def flush(self) -> None:
        """Wait until every change noted so far is written (or the database refused it)."""
        self.save_soon()
        if self._saver is not None:
            await asyncio.shield(self._saver)

    async def stop(self) -> None:
        if self._saver is not None:
            self._saver.cancel()
            await asyncio.gather(self._saver, return_exceptions=True)
        self._saver = None

    async def _save_all(self) -> None:
        """Write the noted changes (finished tasks first), one transaction per batch. A failed batch
        (after the store's own retries) stays noted and is tried again: memory stays the truth
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
                for key, changes in batch.items():
                    source[key] = {**changes, **source.get(key, {})}
                failures += 1
                delay = min(30.0, self._retry_base * 2**failures)
                log.warning("Saving %d task update(s) failed (%s); will try again in %.1f s", len(batch), exc, delay)
                await asyncio.sleep(delay)
