"""The tracker's Discord side: bringing each task's message up to date, within Discord's limits.

A poll result becomes an edit only when what the message shows changed (a render fingerprint).
Writes queue per channel, at most one per task, so progress that moves again before its edit left
collapses into one edit showing the newest state; final results and first posts go before progress.
Each channel gets at most `channel_edits` writes per `channel_window` seconds (the size of
Discord's per-channel bucket), so a busy channel is paced instead of drawing 429s, and a few shared
slots (`edit_concurrency`, finals served first) keep one slow channel from holding up the rest.

Two tokens (issue 16). A task started by a command or a click carries its interaction's token: its
message is edited through that token (Discord's interaction routes: exempt from the bot-wide limit,
a bucket per token, which is paced like a channel) for `interaction_seconds` (14 minutes) after the
interaction, then with the bot token, before the token's 15 minutes run out, so never a 401. Writes
with the bot token share one budget (`WriteBudget`, DISCORD_WRITE_BUDGET per second over all
processes): results first, then first posts; progress is skipped when the budget is short (its
next change queues it again; the result shows the end anyway). Which route a request takes, and the
budget, are bot/tracking/messages.py's.

A refused write is retried after a pause that doubles with each refusal in a row; a result's
picture is downloaded once and re-uploaded (its link expires).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace

import aiohttp
import discord

from bot import render
from bot.errors import BotError, DownloadRefused, DownloadTooLarge, NotMedia
from bot.images import Media
from bot.models import FAILURE, FINAL_STATUSES, MODAL, SUCCESS, TaskKey, TaskRecord
from bot.net.fetcher import Fetcher
from bot.tracking.messages import BudgetShort, TaskMessages
from bot.tracking.pacing import ChannelPacer, EditQueue, PrioritySlots, RateGate
from bot.tracking.saving import PendingSaves
from bot.tracking.settings import TrackerCounters, TrackerSettings
from bot.tracking.tasks import TrackedTasks

log = logging.getLogger(__name__)

MAX_DOWNLOAD_ATTEMPTS = 5
#: Longest wait before retrying a write Discord refused.
MAX_WRITE_RETRY = 60.0

#: Ends the tracking of a task that needs nothing more from Discord: (its state before, after).
Finisher = Callable[[TaskRecord, TaskRecord], None]


class DiscordWriter:
    """Queues, paces and sends the writes of the tracked tasks, one worker per busy channel.

    `still_ours` fences a final result's lease before it is posted; `finish` ends a task's tracking
    (delivered, or its channel is gone)."""

    def __init__(
        self,
        client: discord.Client,
        fetcher: Fetcher,
        tasks: TrackedTasks,
        saves: PendingSaves,
        settings: TrackerSettings,
        counters: TrackerCounters,
        *,
        clock: Callable[[], float],
        wall: Callable[[], float] = time.time,
        still_ours: Callable[[TaskKey], Awaitable[bool]],
        finish: Finisher,
    ) -> None:
        self._fetcher = fetcher
        self._tasks = tasks
        self._saves = saves
        self.settings = settings
        self.counters = counters
        self._still_ours = still_ours
        self._finish = finish
        self._queue = EditQueue()
        self._pacer = ChannelPacer(settings.channel_edits, settings.channel_window, clock=clock)
        self._messages = TaskMessages(client, settings, wall=wall)
        self.budget = self._messages.budget
        self._progress_gate = RateGate(settings.progress_rate) if settings.progress_rate > 0 else None
        self._slots = PrioritySlots(settings.edit_concurrency, others_limit=max(1, settings.edit_concurrency // 2))
        self._downloads = asyncio.Semaphore(max(1, settings.download_concurrency))
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._kicks: dict[int, asyncio.Event] = {}  # wakes a channel's writer for an urgent write
        self._writing: set[str] = set()

    @property
    def pending(self) -> int:
        """Writes queued, being sent or waiting for a retry."""
        retrying = sum(1 for task in self._tasks.values() if task.retry is not None)
        return len(self._queue) + len(self._writing) + retrying

    def is_pending(self, task_id: str) -> bool:
        if task_id in self._queue or task_id in self._writing:
            return True
        task = self._tasks.get(task_id)
        return task is not None and task.retry is not None

    def discard(self, task_id: str) -> None:
        """Drop a task's queued write (it is finished or let go of)."""
        self._queue.discard(task_id)

    def cancel(self) -> list[asyncio.Task[None]]:
        """Cancel the channel workers and the retries; the caller awaits what is returned."""
        for task in self._tasks.values():
            task.cancel_retry()
        workers = list(self._workers.values())
        for worker in workers:
            worker.cancel()
        return workers

    def clear(self) -> None:
        self._workers.clear()
        self._kicks.clear()
        self._writing.clear()
        self._queue.clear()

    def queue(self, record: TaskRecord, *, urgent: bool) -> None:
        task = self._tasks.get(record.id)
        if task is not None and task.retry is not None:
            return  # a refused write waits for its retry, which will show the newest state
        key = self._messages.write_key(record)
        if not self._queue.push(key, record.id, urgent=urgent) and not urgent:
            self.counters.progress_coalesced += 1
        if urgent and key in self._kicks:
            self._kicks[key].set()  # its writer may be waiting for a progress slot
        if key not in self._workers:
            self._workers[key] = asyncio.create_task(self._channel_worker(key), name=f"mj-writes-{key}")

    async def _channel_worker(self, channel_id: int) -> None:
        """Send one channel's queued writes (or one interaction token's: `token_key`), one at a time,
        within its pace. Progress leaves the last writes of each window (`final_reserve`) to
        results, so a result rarely waits at all."""
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
                tracked = self._tasks.get(task_id)
                first = tracked is not None and tracked.shown_states == 0
                self._writing.add(task_id)
                kick.clear()  # from here on, set only by a result queued while this write waits
                try:
                    if urgent or self._progress_gate is None or await self._progress_gate.wait(kick, first=first):
                        used = await self._write(channel_id, task_id, urgent, kick)
                    else:  # a result was queued in this channel meanwhile: it goes first
                        self._queue.push(channel_id, task_id, urgent=False)
                        used = False
                finally:
                    self._writing.discard(task_id)
                if used:
                    self._pacer.record(channel_id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Writing to channel %s failed", channel_id)
        finally:
            if self._workers.get(channel_id) is asyncio.current_task():
                del self._workers[channel_id]
                self._kicks.pop(channel_id, None)

    async def _write(self, key: int, task_id: str, urgent: bool, result_waiting: asyncio.Event) -> bool:
        """Bring one task's message up to date. True if a request reached Discord (it counts
        against the channel's pace even when refused).

        A result is downloaded before a write slot is taken (at most `download_concurrency` at
        once, which also bounds the images held in memory): slots guard Discord writes, and a slow
        image server must not hold them. A progress edit waiting for a slot steps back when a result
        is queued in its channel (`result_waiting`): the channel's writer serves the result first."""
        task = self._tasks.get(task_id)
        if task is None or task.record.status == MODAL:
            return False
        record = task.record
        if self._messages.write_key(record) != key:  # its token aged out while the write waited: the channel paces it
            self.queue(record, urgent=urgent)
            return False
        try:
            if record.status in FINAL_STATUSES:
                # The task's upstream slot first: results waiting on one slow image host hold none
                # of the shared download slots the other upstreams' results need.
                async with self._fetcher.slot(record.upstream), self._downloads:
                    go, data = await self._fetch_result(record)
                    if not go or not await self._still_ours(record.key):
                        return False
                    async with self._slots.hold(urgent=True):
                        if task.check_delivered and await self._already_posted(record):
                            return True
                        return await self._deliver(record, data)
            if not await self._slots.acquire(urgent=urgent, unless=None if urgent else result_waiting):
                self._queue.push(key, task_id, urgent=False)  # after the result
                return False
            try:
                return await self._update(record)
            finally:
                self._slots.release(urgent=urgent)
        except Exception:
            log.exception("Updating the message of task %s failed; will retry", task_id)
            self._retry_later(task_id, urgent)
            return True

    async def _update(self, record: TaskRecord) -> bool:
        """Show a running task's latest state (or post its first message)."""
        task = self._tasks.get(record.id)
        if task is not None:
            record = task.record  # the newest state, after waiting for a slot
        if record.status in FINAL_STATUSES:
            self.queue(record, urgent=True)  # it finished meanwhile: deliver with its result
            return False
        parts = render.render_task(record)
        fingerprint = parts.fingerprint()
        if fingerprint == record.shown and record.message_id is not None:
            return False
        try:
            message = await self._send_or_edit(record, parts)
        except BudgetShort:
            self.counters.progress_skipped += 1
            return False
        if message is not None:
            current = self._tasks.get(record.id)
            if current is not None:
                updated = replace(current.record, shown=fingerprint, message_id=message.id)
                self._saves.note(current.record, updated)
                current.record = updated
                current.shown_states += 1
                if updated.status not in FINAL_STATUSES:
                    self._queue.demote(record.id)  # queued while it had no message: now only progress
                self._saves.save_soon()
        return True

    async def _fetch_result(self, record: TaskRecord) -> tuple[bool, Media | BotError | None]:
        """(go on, the picture to upload). The picture of a success is downloaded once, to be
        re-uploaded (its link expires); after MAX_DOWNLOAD_ATTEMPTS failures the link is shown. A
        link the guarded fetcher refuses (private address) or bytes that are no picture come back as
        that error: the task is shown as failed, never posted."""
        if not (record.status == SUCCESS and record.image_url and not record.result_url):
            return True, None
        try:
            media = await self._fetcher.fetch_media(record.image_url, max_bytes=self.settings.max_upload_bytes)
            return True, media
        except DownloadTooLarge:
            return True, None  # Discord shows the link itself
        except (DownloadRefused, NotMedia) as exc:
            log.warning("The result of %s is not posted: %s", record.id, exc.detail)
            return True, exc
        except BotError as exc:
            task = self._tasks.get(record.id)
            failures = task.download_failures + 1 if task is not None else MAX_DOWNLOAD_ATTEMPTS
            if task is not None:
                task.download_failures = failures
            if failures < MAX_DOWNLOAD_ATTEMPTS:
                log.warning("Downloading the result of %s failed (%s); retrying", record.id, exc)
                self._retry_later(record.id, True)
                return False, None
            log.warning("Giving up downloading the result of %s; posting the link", record.id)
            return True, None

    async def _deliver(self, record: TaskRecord, result: Media | BotError | None) -> bool:
        file: discord.File | None = None
        image_ref: str | None = None
        shown = record
        if isinstance(result, BotError):
            shown = replace(record, status=FAILURE, fail_reason=f"bot:{result.key}")
        elif result is not None:
            name = render.result_filename(record, result.extension)
            file = discord.File(io.BytesIO(result.data), filename=name)
            image_ref = f"attachment://{name}"
            if result.is_video:
                shown = replace(shown, extra={**shown.extra, "video": True})  # Discord plays the attachment
        parts = render.render_task(shown, image=image_ref)
        message = await self._send_or_edit(shown, parts, file=file)
        if message is None:
            return True
        result_url = message.attachments[0].url if message.attachments else record.result_url
        delivered = replace(
            shown,
            shown=parts.fingerprint(),
            message_id=message.id,
            delivered=True,
            result_url=result_url,
            interaction_token=None,  # done with it: the row keeps no live secret
        )
        self._finish(record, delivered)
        return True

    async def _already_posted(self, record: TaskRecord) -> bool:
        """A task claimed from the database: is its result on its message already (its last holder
        died between posting it and storing `delivered`)? Then it is delivered, not uploaded again.
        One read per claimed task, through its token while that lives, else within the budget."""
        task = self._tasks.get(record.id)
        if task is not None:
            task.check_delivered = False
        if record.message_id is None:
            return False
        try:
            message = await self._messages.fetch(record)
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError):
            return False  # gone or unreadable: post the result as usual
        prefix = render.result_filename(record, "")
        posted = next((a for a in message.attachments if a.filename.startswith(prefix)), None)
        if posted is None:
            return False
        log.info("The result of task %s was already posted; marking it delivered", record.id)
        self._finish(record, replace(record, delivered=True, result_url=posted.url, interaction_token=None))
        return True

    def _retry_later(self, task_id: str, urgent: bool) -> None:
        """Try a refused write again after a pause that doubles with each refusal in a row."""
        task = self._tasks.get(task_id)
        if task is None or task.retry is not None:
            return
        task.write_failures += 1
        base = min(1.0, self.settings.poll_interval)
        delay = min(MAX_WRITE_RETRY, base * 2 ** (task.write_failures - 1))
        self._queue.discard(task_id)
        task.retry = asyncio.get_running_loop().call_later(delay, self._retry_now, task_id, urgent)

    def _retry_now(self, task_id: str, urgent: bool) -> None:
        task = self._tasks.get(task_id)
        if task is not None:
            task.retry = None
            record = task.record
            urgent = urgent or record.status in FINAL_STATUSES or record.message_id is None
            self.queue(record, urgent=urgent)

    async def _send_or_edit(
        self, record: TaskRecord, parts: render.MessageParts, *, file: discord.File | None = None
    ) -> discord.Message | None:
        """Edit the task's message (or post one if it has none / it was deleted): through its
        interaction token while that lives, else with the bot token within the budget. The
        message, or None when Discord refused (retried later) or the channel is gone (tracking
        stops). BudgetShort: a progress edit found the bot-token budget spent."""
        token = self._messages.live_token(record)
        try:
            if token is not None and record.message_id is not None:
                edited = await self._messages.edit_through_interaction(record, token, parts, file)
                if isinstance(edited, discord.Message):
                    self._wrote(record.id)
                    return edited
                self._drop_token(record.id)
                record = replace(record, interaction_token=None)
                if edited == "gone":
                    log.info("Message of task %s was deleted; posting a new one", record.id)
                    record = replace(record, message_id=None)
                if file is not None:
                    file.reset()
            message = await self._messages.write_with_bot_token(record, parts, file)
            self._wrote(record.id)
            return message
        except BudgetShort:
            raise
        except discord.NotFound:
            log.warning("Channel %s of task %s is gone; stopping its tracking", record.channel_id, record.id)
            self._finish(record, replace(record, delivered=True, interaction_token=None))
            return None
        except discord.Forbidden:
            log.warning("No permission to post task %s in channel %s; stopping", record.id, record.channel_id)
            self._finish(record, replace(record, delivered=True, interaction_token=None))
            return None
        except (discord.DiscordException, aiohttp.ClientError, OSError, TimeoutError) as exc:
            status = getattr(exc, "status", type(exc).__name__)
            log.warning("Discord refused the update of task %s (%s); retrying", record.id, status)
            self.counters.write_failures += 1
            urgent = record.status in FINAL_STATUSES or record.message_id is None
            self._retry_later(record.id, urgent)
            return None

    def _drop_token(self, task_id: str) -> None:
        task = self._tasks.get(task_id)
        if task is not None:
            task.record = replace(task.record, interaction_token=None)

    def _wrote(self, task_id: str) -> None:
        self.counters.edits_sent += 1
        task = self._tasks.get(task_id)
        if task is not None:
            task.write_failures = 0
