"""Submitting work: one place that turns a user's request into a stored, tracked task.

The order matters for "nothing is lost": the task row is written right after the upstream accepted
it and before any Discord message exists, so a crash in between still resumes the task (the tracker
posts a fresh message for a task that has none).

A submit whose answer is lost (dropped connection, timeout) may still have started, and charged, a
task. It is never re-sent on its own: every submit carries a unique `state`, the bot looks for the
task by it where the server lists recent tasks, and adopts it when found; the member is told the
outcome is unknown and may retry after being warned that it may charge twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, replace
from typing import Any

from bot.access import KeyGone, check_task_key
from bot.errors import (
    BotError,
    InputError,
    NotAllowed,
    SubmitLost,
    SubmitOutcomeUnknown,
    TaskNotFound,
    UnsupportedAction,
    UpstreamError,
)
from bot.models import CANCEL, FINAL_STATUSES, MODAL, NOT_START, MJTask, Origin, SubmitResult, TaskRecord
from bot.policy import GuildSettings, Policy
from bot.requests import ModalRequest, SubmitRequest
from bot.storage.protocols import Storage
from bot.tracking.tracker import Tracker
from bot.upstream.client import MJClient
from bot.upstream.keys import DEFAULT_UPSTREAM, REFUSALS, KeyRing, Upstreams

log = logging.getLogger(__name__)

CANCELLED_REASON = "bot:failure.cancelled_by_user"
#: Seconds between looks for a task whose submit answer was lost (after the first, immediate one).
LOST_SEARCH_DELAYS = (2.0, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0)
#: How long a lost submit can still be retried from its notice.
LOST_KEEP_SECONDS = 3600.0
#: A task listed without our `state` matches by prompt only if submitted no earlier than this before us.
_CLOCK_SLACK_MS = 5000


def new_state() -> str:
    """The unique value sent as a submit's `state`, echoed in the task (MJ_API.md §2.1)."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class LostSubmit:
    """A submit whose answer never arrived; `state` is what the server echoes in the task, if any."""

    state: str
    request: SubmitRequest
    origin: Origin
    upstream: str
    action: str
    prompt: str
    parent_id: str | None
    sent_at: float
    extra: Mapping[str, Any] | None = None

    def matches(self, task: MJTask) -> bool:
        """Our task: it echoes our state; or, on a server that keeps no state, the one with our
        prompt and action submitted since we sent it."""
        if task.state:
            return task.state == self.state
        if not self.prompt or task.action != self.action or task.submit_time is None:
            return False
        if task.submit_time < self.sent_at * 1000 - _CLOCK_SLACK_MS:
            return False
        return self.prompt in (task.prompt, task.prompt_en, task.final_prompt)


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
        self._lost: dict[str, LostSubmit] = {}
        self._searches: set[asyncio.Task[None]] = set()

    def _hook(self, upstream: str) -> str | None:
        return self.notify_hooks(upstream) if self.notify_hooks is not None else None

    def client(self, upstream: str = "default") -> MJClient:
        """Exactly this upstream's client. A key removed since (or never known here) is KeyGone, never
        the .env key in its place: that would spend the operator's key on another server's task."""
        client = self.upstreams.get(upstream)
        if client is None:
            if upstream == DEFAULT_UPSTREAM:
                raise RuntimeError("no upstream configured")
            raise KeyGone()
        return client

    async def aclose(self) -> None:
        """Stop looking for lost submits (shutdown)."""
        for search in list(self._searches):
            search.cancel()
        if self._searches:
            await asyncio.gather(*self._searches, return_exceptions=True)

    async def submit(
        self,
        request: SubmitRequest,
        origin: Origin,
        *,
        action: str | None = None,
        prompt: str | None = None,
        parent: TaskRecord | None = None,
        upstream: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> tuple[TaskRecord, SubmitResult]:
        """Check the guild's rules, submit, and store the accepted task with its request (and
        `extra`, what the task's message needs to know, such as a video made through a relay).

        The rules, limits and keys are those of `origin.guild_id` (the server the command was used
        in, wherever the result is shown; None: made in DMs, the operator's DM rules).

        A new task goes to the guild's first usable key; a task made from another (`parent`, a
        click) stays on that task's upstream, which must still exist and belong to that guild or to
        every guild (bot/access.py: KeyGone, never another key). A submit is never repeated, except on the next key
        after an Unauthorized / QuotaExhausted refusal: a refused submit started nothing, so that is
        the one retry that cannot charge twice. A lost answer raises SubmitLost (see the module doc).
        """
        action = action or request.task_action()
        prompt = request.label() if prompt is None else prompt
        upstream = upstream or (parent.upstream if parent is not None else None)
        if upstream is not None:
            if self.keys is not None:
                await self.keys.refresh()
            check_task_key(upstream, origin.guild_id, self.keys, self.upstreams)
        async with self._admit(origin, prompt) as rules:
            if upstream is None:
                if self.keys is not None:
                    await self.keys.refresh()
                chain, mode = self._chain(origin.guild_id), rules.default_mode if rules is not None else ""
            else:
                chain, mode = [upstream], ""
            state = new_state()
            try:
                result, used = await self._submit_on(request, chain, mode, state)
            except _LostOn as lost_on:
                lost = LostSubmit(
                    state=state,
                    request=request,
                    origin=origin,
                    upstream=lost_on.upstream,
                    action=action,
                    prompt=prompt,
                    parent_id=parent.id if parent is not None else None,
                    sent_at=lost_on.sent_at,
                    extra=extra,
                )
                return await self._after_lost(lost, lost_on.error)
            record = await self._store_accepted(result, request, origin, action, prompt, parent, used, extra)
        log.info("Task %s (%s) accepted with code %s on %s", record.id, action, result.code, used)
        return record, result

    def lost(self, state: str, user_id: int) -> LostSubmit:
        """A lost submit its own member may retry; refused once it expired (or after a restart)."""
        self._forget_expired()
        lost = self._lost.get(state)
        if lost is None:
            raise InputError("retry.impossible")
        if lost.origin.user_id != user_id:
            raise NotAllowed("manage.not_yours")
        return lost

    async def retry_lost(self, state: str, user_id: int, locale: str) -> tuple[TaskRecord, SubmitResult]:
        """The member confirmed: send the lost request again (it may be charged twice). Taken out
        while it is sent, so a second click cannot send it a third time; a refusal (nothing
        started) puts it back."""
        lost = self.lost(state, user_id)
        del self._lost[state]
        parent = await self.store.get_task(lost.parent_id, lost.upstream) if lost.parent_id else None
        try:
            return await self.submit(
                lost.request,
                replace(lost.origin, locale=locale),
                action=lost.action,
                prompt=lost.prompt,
                parent=parent,
                upstream=lost.upstream,
                extra=lost.extra,
            )
        except SubmitLost:
            raise
        except BotError:
            self._lost[state] = lost
            raise

    def _admit(self, origin: Origin, prompt: str) -> AbstractAsyncContextManager[GuildSettings | None]:
        if self.policy is None:
            return nullcontext(None)
        channel = origin.rules_channel
        return self.policy.admit(
            guild_id=origin.guild_id,
            user_id=origin.user_id,
            channel_id=channel if channel is not None else origin.channel_id,
            prompt=prompt,
            check_place=channel is not None,
        )

    def _chain(self, guild_id: int | None) -> list[str]:
        return self.keys.chain(guild_id) if self.keys is not None else [DEFAULT_UPSTREAM]

    async def _submit_on(
        self, request: SubmitRequest, chain: list[str], mode: str, state: str
    ) -> tuple[SubmitResult, str]:
        """The first upstream of `chain` that accepts; only refusals move on to the next one."""
        if not chain:
            raise RuntimeError("no upstream configured")
        error: BotError | None = None
        for position, name in enumerate(chain):
            if mode and isinstance(self.upstreams, Upstreams):
                name = self.upstreams.with_mode(name, mode)
            sent_at = time.time()
            try:
                result = await self.client(name).submit(request, notify_hook=self._hook(name), state=state)
            except REFUSALS as refused:
                error = refused
                if self.keys is not None:
                    await self.keys.record_refusal(name, refused)
                if position + 1 < len(chain):
                    log.warning("Upstream %s refused a submit (%s); trying the next key", name, type(refused).__name__)
                continue
            except SubmitOutcomeUnknown as unknown:
                raise _LostOn(name, sent_at, unknown) from None
            except UpstreamError as failed:
                failed.upstream = name  # which server said so (cogs/edit.py learns what it offers)
                raise
            if self.keys is not None:
                await self.keys.record_success(name)
            return result, name
        assert error is not None
        raise error

    async def _store_accepted(
        self,
        result: SubmitResult,
        request: SubmitRequest,
        origin: Origin,
        action: str,
        prompt: str,
        parent: TaskRecord | None,
        upstream: str,
        extra: Mapping[str, Any] | None = None,
    ) -> TaskRecord:
        record = TaskRecord(
            id=result.task_id,
            action=action,
            user_id=origin.user_id,
            channel_id=origin.channel_id,
            guild_id=origin.guild_id,
            in_dm=origin.in_dm and origin.guild_id is not None,
            upstream=upstream,
            prompt=prompt,
            final_prompt=result.final_prompt if action not in ("DESCRIBE", "SHORTEN") else "",
            parent_id=parent.id if parent is not None else None,
            status=MODAL if result.needs_modal else NOT_START,
            queue_position=result.queue_position,
            locale=origin.locale,
            extra=dict(extra or {}),
            request=request if request.to_json() is not None else None,
            # A MODAL task has no message until the user fills in the modal: do not track it yet.
            delivered=result.needs_modal,
        )
        return await self.store.insert_task(record)

    # ---- lost answers ----

    async def _after_lost(self, lost: LostSubmit, error: SubmitOutcomeUnknown) -> tuple[TaskRecord, SubmitResult]:
        """Look once at once (the server may list the task already); else keep looking in the
        background where the server can be searched, and tell the member the outcome is unknown."""
        log.warning(
            "Submit %s to %s lost its answer (%s); looking for the task by its state",
            lost.action,
            lost.upstream,
            error.detail,
        )
        try:
            found = await self._find(lost)
        except UnsupportedAction:
            self._remember(lost)
            log.info("Upstream %s cannot list its tasks: the lost submit cannot be looked for", lost.upstream)
            raise SubmitLost(lost.state, searching=False) from None
        except BotError as failed:
            log.info("Looking for the lost submit on %s failed (%s); will look again", lost.upstream, failed.detail)
            found = None
        if found is not None:
            record = await self._adopt(lost, found)
            return record, SubmitResult(code=1, task_id=record.id)
        self._remember(lost)
        search = asyncio.create_task(self._keep_looking(lost), name=f"lost-submit-{lost.state}")
        self._searches.add(search)
        search.add_done_callback(self._searches.discard)
        raise SubmitLost(lost.state, searching=True)

    async def _find(self, lost: LostSubmit) -> MJTask | None:
        tasks = await self.client(lost.upstream).recent_tasks()
        return next((task for task in tasks if lost.matches(task)), None)

    async def _keep_looking(self, lost: LostSubmit) -> None:
        for delay in LOST_SEARCH_DELAYS:
            await asyncio.sleep(delay)
            try:
                found = await self._find(lost)
            except BotError as failed:
                log.info("Looking for the lost submit on %s failed (%s)", lost.upstream, failed.detail)
                continue
            if found is not None:
                with contextlib.suppress(BotError):
                    await self._adopt(lost, found)
                return
        log.warning(
            "The lost %s submit on %s was not found: the server most likely never made it", lost.action, lost.upstream
        )

    async def _adopt(self, lost: LostSubmit, task: MJTask) -> TaskRecord:
        """The lost submit's task turned up: store it and let the tracker post its message."""
        existing = await self.store.get_task(task.id, lost.upstream)
        if existing is not None:
            return existing
        result = SubmitResult(code=1, task_id=task.id, properties={"finalPrompt": task.final_prompt})
        parent = await self.store.get_task(lost.parent_id, lost.upstream) if lost.parent_id else None
        record = await self._store_accepted(
            result, lost.request, lost.origin, lost.action, lost.prompt, parent, lost.upstream, lost.extra
        )
        self._lost.pop(lost.state, None)
        self.tracker.track(record)
        log.info("Found the lost submit as task %s on %s; tracking it", record.id, lost.upstream)
        return record

    def _remember(self, lost: LostSubmit) -> None:
        self._forget_expired()
        self._lost[lost.state] = lost

    def _forget_expired(self) -> None:
        cutoff = time.time() - LOST_KEEP_SECONDS
        for state in [s for s, lost in self._lost.items() if lost.sent_at < cutoff]:
            del self._lost[state]

    # ---- after the submit ----

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
        self, modal_task: TaskRecord, prompt: str, *, mask_base64: str | None = None
    ) -> tuple[TaskRecord, SubmitResult]:
        """Second step of a MODAL task: send the user's prompt, then track it like any task. The
        two steps cannot be repeated as one request, so the task keeps no request to retry."""
        record = await self.store.get_task(modal_task.id, modal_task.upstream)
        if record is None:
            raise TaskNotFound(modal_task.id)
        if self.policy is not None:
            # The prompt is new text: the guild's banned words apply to it too.
            await self.policy.check_prompt(record.guild_id, prompt)
        request = ModalRequest(task_id=record.id, prompt=prompt, mask_base64=mask_base64)
        result = await self.client(record.upstream).submit(request, notify_hook=self._hook(record.upstream))
        now = time.time()
        record = replace(
            record,
            created_at=now,
            status=NOT_START,
            prompt=prompt,
            final_prompt=prompt,
            queue_position=result.queue_position,
            delivered=False,
            request=None,
        )
        await self.store.update_task(
            record.key,
            status=record.status,
            prompt=prompt,
            final_prompt=prompt,
            queue_position=record.queue_position,
            created_at=now,
            delivered=False,
            request=None,
        )
        return record, result

    @staticmethod
    def check_cancellable(record: TaskRecord) -> None:
        if record.status in FINAL_STATUSES or record.delivered:
            raise InputError("manage.already_finished")

    async def cancel(self, record: TaskRecord, by_user: int) -> TaskRecord:
        """Stop tracking, ask the server to cancel (best effort: most cannot), and mark the task
        cancelled by its user. Returns the updated task."""
        self.check_cancellable(record)
        self.tracker.forget(record.key)
        cancelled_upstream = await self.client(record.upstream).cancel(record.id)
        log.info("Task %s cancelled by %s (upstream cancel: %s)", record.id, by_user, cancelled_upstream)
        await self.store.update_task(
            record.key, status=CANCEL, fail_reason=CANCELLED_REASON, finished_at=time.time(), delivered=True
        )
        return await self.store.get_task(record.id, record.upstream) or record


class _LostOn(Exception):
    """Internal: which upstream lost a submit's answer, and when it was sent."""

    def __init__(self, upstream: str, sent_at: float, error: SubmitOutcomeUnknown) -> None:
        super().__init__(upstream)
        self.upstream = upstream
        self.sent_at = sent_at
        self.error = error
