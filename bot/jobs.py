"""Submitting work: one place that turns a user's request into a stored, tracked task.

The order matters for "nothing is lost": the task row is written right after the upstream accepted
it and before any Discord message exists, so a crash in between still resumes the task (the tracker
posts a fresh message for a task that has none).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import Any

from bot.client import MJClient
from bot.errors import TaskNotFound
from bot.models import MODAL, NOT_START, SubmitResult
from bot.store import Store, TaskRecord
from bot.tracker import Tracker

log = logging.getLogger(__name__)

Submit = Callable[[MJClient], Awaitable[SubmitResult]]


class Jobs:
    def __init__(self, store: Store, upstreams: Mapping[str, MJClient], tracker: Tracker) -> None:
        self.store = store
        self.upstreams = upstreams
        self.tracker = tracker

    def client(self, upstream: str = "default") -> MJClient:
        client = self.upstreams.get(upstream) or self.upstreams.get("default")
        if client is None:
            raise RuntimeError("no upstream configured")
        return client

    async def submit(
        self,
        submit: Submit,
        *,
        action: str,
        prompt: str,
        user_id: int,
        channel_id: int,
        guild_id: int | None,
        locale: str,
        parent_id: str | None = None,
        upstream: str = "default",
        extra: dict[str, Any] | None = None,
    ) -> tuple[TaskRecord, SubmitResult]:
        """Submit once (never retried: a submit may be charged) and store the accepted task."""
        result = await submit(self.client(upstream))
        record = TaskRecord(
            id=result.task_id,
            action=action,
            user_id=user_id,
            channel_id=channel_id,
            guild_id=guild_id,
            upstream=upstream,
            prompt=prompt,
            final_prompt=result.final_prompt if action not in ("DESCRIBE", "SHORTEN") else "",
            parent_id=parent_id,
            status=MODAL if result.needs_modal else NOT_START,
            queue_position=result.queue_position,
            locale=locale,
            extra=extra or {},
            # A MODAL task has no message until the user fills in the modal: do not track it yet.
            delivered=result.needs_modal,
        )
        record = await self.store.insert_task(record)
        log.info("Task %s (%s) accepted with code %s", record.id, action, result.code)
        return record, result

    async def attach_message(self, record: TaskRecord, message_id: int, shown: str = "") -> TaskRecord:
        """The task's message exists: remember it and start tracking."""
        record = replace(record, message_id=message_id, shown=shown)
        await self.store.update_task(record.id, message_id=message_id, shown=shown)
        self.tracker.track(record)
        return record

    async def submit_modal(
        self, modal_task_id: str, prompt: str, *, mask_base64: str | None = None
    ) -> tuple[TaskRecord, SubmitResult]:
        """Second step of a MODAL task: send the user's prompt, then track it like any task."""
        record = await self.store.get_task(modal_task_id)
        if record is None:
            raise TaskNotFound(modal_task_id)
        result = await self.client(record.upstream).modal(record.id, prompt, mask_base64=mask_base64)
        now = time.time()
        record = replace(
            record,
            created_at=now,
            status=NOT_START,
            prompt=prompt,
            final_prompt=prompt,
            queue_position=result.queue_position,
            delivered=False,
        )
        await self.store.update_task(
            record.id,
            status=record.status,
            prompt=prompt,
            final_prompt=prompt,
            queue_position=record.queue_position,
            created_at=now,
            delivered=False,
        )
        return record, result
