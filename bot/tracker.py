"""The background tracker: polls every in-flight task and keeps its Discord message current.

One loop for all tasks. Each cycle asks each upstream for its tasks in batches (list-by-condition,
or per-task fetch where a server lacks it), stores what changed, and edits a message only when what
it shows changed. Edits go through the bot token (channel message edits), so a task that outlives
the 15-minute interaction token still lands. A task is done only once its final state is on
Discord (`delivered`), so a crash at any point resumes where it stopped and posts the result once.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import discord

from bot import render
from bot.errors import BotError, UnsupportedAction
from bot.images import EXTENSIONS, ImageFetcher, sniff_image
from bot.models import FAILURE, FINAL_STATUSES, MODAL, SUCCESS, MJTask, result_extra
from bot.store import Store, TaskRecord

if TYPE_CHECKING:
    from bot.client import MJClient

log = logging.getLogger(__name__)

BOT_TIMEOUT_REASON = "bot:failure.bot_timeout"
MAX_DOWNLOAD_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class TrackerSettings:
    poll_interval: float = 3.0
    batch_size: int = 100
    task_timeout: float = 3600.0
    max_upload_bytes: int = 10 * 1024 * 1024
    fetch_concurrency: int = 8
    edit_concurrency: int = 8


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


class Tracker:
    """Owns the polling loop. `track()` adds a task; `run_cycle()` is one pass (tests, benchmarks)."""

    def __init__(
        self,
        client: discord.Client,
        store: Store,
        upstreams: Mapping[str, MJClient],
        fetcher: ImageFetcher,
        settings: TrackerSettings,
    ) -> None:
        self._client = client
        self._store = store
        self._upstreams = upstreams
        self._fetcher = fetcher
        self.settings = settings
        self._active: dict[str, TaskRecord] = {}
        self._no_list: set[str] = set()  # upstreams without list-by-condition
        self._download_failures: dict[str, int] = {}
        self._channel_locks: dict[int, asyncio.Lock] = {}
        self._edit_slots = asyncio.Semaphore(settings.edit_concurrency)
        self._wake = asyncio.Event()
        self._runner: asyncio.Task[None] | None = None
        self.cycles = 0
        self.edits_sent = 0
        self.edits_skipped = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    async def resume(self) -> int:
        """Load every task whose result is not yet on Discord. Called once at start-up."""
        records = await self._store.in_flight()
        for record in records:
            self._active[record.id] = record
        if records:
            log.info("Resumed tracking %d in-flight task(s)", len(records))
        return len(records)

    def start(self) -> None:
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="mj-tracker")

    async def stop(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
            self._runner = None

    def track(self, record: TaskRecord) -> None:
        self._active[record.id] = record
        self._wake.set()

    def forget(self, task_id: str) -> None:
        self._active.pop(task_id, None)

    @property
    def active_ids(self) -> list[str]:
        return list(self._active)

    async def _run(self) -> None:
        await self._client.wait_until_ready()
        while True:
            started = time.monotonic()
            try:
                await self.run_cycle()
            except asyncio.CancelledError:
                raise
            except Exception:  # the loop must outlive any single failure
                log.exception("Tracker cycle failed; continuing")
            elapsed = time.monotonic() - started
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, self.settings.poll_interval - elapsed))
                # A new task arrived: give its submit a moment to settle, then poll.
                await asyncio.sleep(min(0.5, self.settings.poll_interval))
            except TimeoutError:
                pass

    # ---- one cycle -------------------------------------------------------------------------------

    async def run_cycle(self) -> None:
        self.cycles += 1
        if not self._active:
            return
        by_upstream: dict[str, list[TaskRecord]] = {}
        for record in list(self._active.values()):
            by_upstream.setdefault(record.upstream, []).append(record)
        await asyncio.gather(*(self._poll_upstream(name, records) for name, records in by_upstream.items()))

    async def _poll_upstream(self, name: str, records: list[TaskRecord]) -> None:
        client = self._upstreams.get(name) or self._upstreams.get("default")
        if client is None:
            log.error("No upstream %r for %d task(s)", name, len(records))
            return
        pending = [r for r in records if r.status not in FINAL_STATUSES]
        found = await self._read_tasks(name, client, [r.id for r in pending]) if pending else {}
        now = time.time()
        jobs = []
        for record in records:
            task = found.get(record.id)
            jobs.append(self._advance(record, task, now))
        await asyncio.gather(*jobs)

    async def _read_tasks(self, name: str, client: MJClient, ids: Sequence[str]) -> dict[str, MJTask]:
        found: dict[str, MJTask] = {}
        if name not in self._no_list:
            size = max(1, self.settings.batch_size)
            batches = [ids[i : i + size] for i in range(0, len(ids), size)]
            slots = asyncio.Semaphore(self.settings.fetch_concurrency)

            async def one_batch(batch: Sequence[str]) -> None:
                async with slots:
                    try:
                        for task in await client.list_by_ids(batch):
                            found[task.id] = task
                    except UnsupportedAction:
                        log.info("Upstream %r has no list-by-condition; polling tasks one by one", name)
                        self._no_list.add(name)
                    except BotError as exc:
                        log.warning("Polling upstream %r failed: %s", name, type(exc).__name__)

            await asyncio.gather(*(one_batch(b) for b in batches))
            if name not in self._no_list:
                return found
        slots = asyncio.Semaphore(self.settings.fetch_concurrency)

        async def one_fetch(task_id: str) -> None:
            async with slots:
                try:
                    task = await client.fetch(task_id)
                except BotError as exc:
                    log.warning("Fetching task %s failed: %s", task_id, type(exc).__name__)
                    return
                if task is not None:
                    found[task.id] = task

        await asyncio.gather(*(one_fetch(i) for i in ids if i not in found))
        return found

    async def _advance(self, record: TaskRecord, task: MJTask | None, now: float) -> None:
        try:
            if task is not None and record.status not in FINAL_STATUSES:
                record = apply_update(record, task)
            if record.status not in FINAL_STATUSES and now - record.created_at > self.settings.task_timeout:
                log.info("Task %s timed out after %.0f s", record.id, now - record.created_at)
                record = replace(record, status=FAILURE, fail_reason=BOT_TIMEOUT_REASON, finished_at=now)
            if record.status == MODAL:
                return  # waits for the user's modal; nothing to show in a channel
            if record.status in FINAL_STATUSES:
                await self._deliver(record)
            else:
                await self._show_progress(record)
        except Exception:
            log.exception("Updating task %s failed; will retry next cycle", record.id)

    # ---- Discord side ------------------------------------------------------------------------------

    def _lock(self, channel_id: int) -> asyncio.Lock:
        lock = self._channel_locks.get(channel_id)
        if lock is None:
            lock = self._channel_locks[channel_id] = asyncio.Lock()
        return lock

    async def _save(self, old: TaskRecord, new: TaskRecord) -> TaskRecord:
        changed = {
            name: getattr(new, name)
            for name in (
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
            if getattr(new, name) != getattr(old, name)
        }
        if changed:
            await self._store.update_task(new.id, **changed)
        if new.delivered:
            self._active.pop(new.id, None)
        else:
            self._active[new.id] = new
        return new

    async def _show_progress(self, record: TaskRecord) -> None:
        old = self._active.get(record.id, record)
        parts = render.render_task(record)
        fingerprint = parts.fingerprint()
        if fingerprint == record.shown and record.message_id is not None:
            self.edits_skipped += 1
            await self._save(old, record)
            return
        posted = await self._send_or_edit(record, parts)
        if posted is None:
            await self._save(old, record)
            return
        await self._save(old, replace(record, shown=fingerprint, message_id=posted.id))

    async def _deliver(self, record: TaskRecord) -> None:
        old = self._active.get(record.id, record)
        file: discord.File | None = None
        image_ref: str | None = None
        if record.status == SUCCESS and record.image_url and not record.result_url:
            try:
                data = await self._fetcher.fetch(record.image_url, max_bytes=self.settings.max_upload_bytes)
            except BotError as exc:
                failures = self._download_failures.get(record.id, 0) + 1
                self._download_failures[record.id] = failures
                if failures < MAX_DOWNLOAD_ATTEMPTS:
                    log.warning("Downloading the result of %s failed (%s); retrying", record.id, exc)
                    await self._save(old, record)
                    return
                log.warning("Giving up downloading the result of %s; posting the link", record.id)
                data = None
            if data is not None:
                mime = sniff_image(data) or "image/png"
                name = render.result_filename(record, EXTENSIONS.get(mime, "png"))
                file = discord.File(io.BytesIO(data), filename=name)
                image_ref = f"attachment://{name}"
        parts = render.render_task(record, image=image_ref)
        posted = await self._send_or_edit(record, parts, file=file)
        if posted is None:
            await self._save(old, record)
            return
        self._download_failures.pop(record.id, None)
        result_url = posted.attachments[0].url if posted.attachments else record.result_url
        delivered = replace(
            record, shown=parts.fingerprint(), message_id=posted.id, delivered=True, result_url=result_url
        )
        await self._save(old, delivered)

    async def _send_or_edit(
        self, record: TaskRecord, parts: render.MessageParts, *, file: discord.File | None = None
    ) -> discord.Message | None:
        """Edit the task's message (or post one if it has none / it was deleted). The message, or
        None when Discord failed (the next cycle tries again)."""
        channel = self._client.get_partial_messageable(record.channel_id, guild_id=record.guild_id)
        view = render.build_view(parts.buttons)
        async with self._lock(record.channel_id), self._edit_slots:
            try:
                if record.message_id is not None:
                    try:
                        kwargs: dict[str, object] = {
                            "content": parts.content,
                            "embed": parts.embed,
                            "view": view,
                        }
                        if file is not None:
                            kwargs["attachments"] = [file]
                        message = await channel.get_partial_message(record.message_id).edit(**kwargs)  # type: ignore[arg-type]
                        self.edits_sent += 1
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
                self.edits_sent += 1
                return message
            except discord.NotFound:
                log.warning("Channel %s of task %s is gone; stopping its tracking", record.channel_id, record.id)
                await self._store.update_task(record.id, delivered=True)
                self._active.pop(record.id, None)
                return None
            except discord.Forbidden:
                log.warning("No permission to post task %s in channel %s; stopping", record.id, record.channel_id)
                await self._store.update_task(record.id, delivered=True)
                self._active.pop(record.id, None)
                return None
            except discord.HTTPException as exc:
                log.warning("Discord refused the update of task %s (HTTP %s); retrying", record.id, exc.status)
                return None
