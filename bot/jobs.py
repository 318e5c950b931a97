"""Submitting work: one place that turns a user's request into a stored, tracked task.

The order matters for "nothing is lost": the task row is written right after the upstream accepted
it and before any Discord message exists, so a crash in between still resumes the task (the tracker
posts a fresh message for a task that has none).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import replace
from typing import Any

from bot.errors import BotError, TaskNotFound
from bot.models import MODAL, NOT_START, SubmitResult, TaskRecord
from bot.policy import GuildSettings, Policy
from bot.storage.protocols import Storage
from bot.tracking.tracker import Tracker
from bot.upstream.client import MJClient
from bot.upstream.keys import DEFAULT_UPSTREAM, REFUSALS, KeyRing, Upstreams

log = logging.getLogger(__name__)

Submit = Callable[[MJClient], Awaitable[SubmitResult]]

_SUBMITS = frozenset({"imagine", "blend", "describe", "shorten", "action", "modal", "swap_face", "change"})


class _WithHook:
    """An MJClient whose submits carry `notifyHook` (push updates, bot/web/server.py) unless the caller set
    one. Wrapping keeps the hook out of every `submit` lambda in cogs/."""

    def __init__(self, client: MJClient, hook: str) -> None:
        self._client = client
        self._hook = hook

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        return functools.partial(attribute, notify_hook=self._hook) if name in _SUBMITS else attribute


class Jobs:
    def __init__(
        self,
        store: Storage,
        upstreams: Mapping[str, MJClient],
        tracker: Tracker,
        *,
        keys: KeyRing | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.store = store
        self.upstreams = upstreams
        self.tracker = tracker
        self.keys = keys
        self.policy = policy
        #: Set by the bot when its web server can receive pushes (PUBLIC_URL): an upstream's name ->
        #: the notifyHook its submits carry (each upstream its own). None = poll only.
        self.notify_hooks: Callable[[str], str | None] | None = None

    def _hooked(self, client: MJClient, upstream: str) -> MJClient:
        hook = self.notify_hooks(upstream) if self.notify_hooks is not None else None
        # A proxy with the client's interface (through __getattr__), which a type checker cannot see.
        return client if not hook else _WithHook(client, hook)  # type: ignore[return-value]

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
        upstream: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> tuple[TaskRecord, SubmitResult]:
        """Check the guild's rules, submit, and store the accepted task.

        A new task (`upstream` None) goes to the guild's first usable key; a task made from another
        (a click) stays on that task's upstream. A submit is never repeated, except on the next key
        after an Unauthorized / QuotaExhausted refusal: a refused submit started nothing, so that is
        the one retry that cannot charge twice.
        """
        async with self._admit(guild_id, user_id, channel_id, prompt) as rules:
            if upstream is None:
                if self.keys is not None:
                    await self.keys.refresh()
                mode = rules.default_mode if rules is not None else ""
                result, used = await self._submit_on(submit, self._chain(guild_id), mode)
            else:
                result, used = await self._submit_on(submit, [upstream], "")
            record = await self._store_accepted(
                result,
                action=action,
                prompt=prompt,
                user_id=user_id,
                channel_id=channel_id,
                guild_id=guild_id,
                locale=locale,
                parent_id=parent_id,
                upstream=used,
                extra=extra,
            )
        log.info("Task %s (%s) accepted with code %s on %s", record.id, action, result.code, used)
        return record, result

    def _admit(
        self, guild_id: int | None, user_id: int, channel_id: int, prompt: str
    ) -> AbstractAsyncContextManager[GuildSettings | None]:
        if self.policy is None:
            return nullcontext(None)
        return self.policy.admit(guild_id=guild_id, user_id=user_id, channel_id=channel_id, prompt=prompt)

    def _chain(self, guild_id: int | None) -> list[str]:
        return self.keys.chain(guild_id) if self.keys is not None else [DEFAULT_UPSTREAM]

    async def _submit_on(self, submit: Submit, chain: list[str], mode: str) -> tuple[SubmitResult, str]:
        """The first upstream of `chain` that accepts; only refusals move on to the next one."""
        if not chain:
            raise RuntimeError("no upstream configured")
        error: BotError | None = None
        for position, name in enumerate(chain):
            if mode and isinstance(self.upstreams, Upstreams):
                name = self.upstreams.with_mode(name, mode)
            try:
                result = await submit(self._hooked(self.client(name), name))
            except REFUSALS as refused:
                error = refused
                if self.keys is not None:
                    await self.keys.record_refusal(name, refused)
                if position + 1 < len(chain):
                    log.warning("Upstream %s refused a submit (%s); trying the next key", name, type(refused).__name__)
                continue
            if self.keys is not None:
                await self.keys.record_success(name)
            return result, name
        assert error is not None
        raise error

    async def _store_accepted(
        self,
        result: SubmitResult,
        *,
        action: str,
        prompt: str,
        user_id: int,
        channel_id: int,
        guild_id: int | None,
        locale: str,
        parent_id: str | None,
        upstream: str,
        extra: dict[str, Any] | None,
    ) -> TaskRecord:
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
        return await self.store.insert_task(record)

    async def attach_message(
        self,
        record: TaskRecord,
        message_id: int,
        shown: str = "",
        *,
        interaction_token: str | None = None,
        interaction_at: float | None = None,
    ) -> TaskRecord:
        """The task's message exists: remember it and start tracking. A message that is an
        interaction's response comes with that interaction's token (and when Discord created the
        interaction): the tracker edits it through the token while it lives (issue 16)."""
        changes: dict[str, Any] = {"message_id": message_id, "shown": shown}
        if interaction_token is not None:
            changes.update(interaction_token=interaction_token, interaction_at=interaction_at)
        record = replace(record, **changes)
        await self.store.update_task(record.key, **changes)
        self.tracker.track(record)
        return record

    async def submit_modal(
        self, modal_task_id: str, prompt: str, *, mask_base64: str | None = None
    ) -> tuple[TaskRecord, SubmitResult]:
        """Second step of a MODAL task: send the user's prompt, then track it like any task."""
        record = await self.store.get_task(modal_task_id)
        if record is None:
            raise TaskNotFound(modal_task_id)
        if self.policy is not None:
            # The prompt is new text: the guild's banned words apply to it too.
            await self.policy.check_prompt(record.guild_id, prompt)
        result = await self._hooked(self.client(record.upstream), record.upstream).modal(
            record.id, prompt, mask_base64=mask_base64
        )
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
            record.key,
            status=record.status,
            prompt=prompt,
            final_prompt=prompt,
            queue_position=record.queue_position,
            created_at=now,
            delivered=False,
        )
        return record, result
