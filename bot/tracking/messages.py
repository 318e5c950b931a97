"""How the tracker's requests reach a task's message: through its interaction token while that
lives, else with the bot token, each bot-token request within the bot-wide write budget (issue 16).

Knows Discord's two routes and the budget; what to show, the queue and the retries are the writer's
(bot/tracking/writer.py), which also decides what a refusal means for the task.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable
from typing import Literal

import discord
from discord.utils import MISSING

from bot import render
from bot.models import FINAL_STATUSES, TaskRecord
from bot.tracking.limits import FIRST_POST, RESULT, WriteBudget
from bot.tracking.settings import TrackerSettings

log = logging.getLogger(__name__)


class BudgetShort(Exception):
    """A progress edit found the bot-token budget spent: skipped, not queued."""


def token_key(task_id: str) -> int:
    """The write queue's and pacer's key of a task written through its interaction token: a bucket
    of its own (negative, so it never meets a channel id)."""
    return -1 - zlib.crc32(task_id.encode())


class TaskMessages:
    """Reads, edits and posts a task's message by the route its tokens allow."""

    def __init__(self, client: discord.Client, settings: TrackerSettings, *, wall: Callable[[], float]) -> None:
        self._client = client
        self.settings = settings
        self._wall = wall
        self.budget = WriteBudget(settings.write_budget)

    def live_token(self, record: TaskRecord) -> str | None:
        """The task's interaction token while the tracker may still write through it."""
        token, created = record.interaction_token, record.interaction_at
        if token and created is not None and self._wall() < created + self.settings.interaction_seconds:
            return token
        return None

    def write_key(self, record: TaskRecord) -> int:
        """Whose bucket a write of this task draws from: its interaction token's, or its channel's."""
        if record.message_id is not None and self.live_token(record) is not None:
            return token_key(record.id)
        return record.channel_id

    async def fetch(self, record: TaskRecord) -> discord.Message:
        """The task's message as Discord has it: through its token while that lives, else within the budget."""
        assert record.message_id is not None
        token = self.live_token(record)
        if token is not None:
            webhook = discord.Webhook.partial(self._client.application_id or 0, token, client=self._client)
            return await webhook.fetch_message(record.message_id)
        await self.budget.take(RESULT)
        channel = self._client.get_partial_messageable(record.channel_id, guild_id=record.message_guild_id)
        return await channel.fetch_message(record.message_id)

    async def edit_through_interaction(
        self, record: TaskRecord, token: str, parts: render.MessageParts, file: discord.File | None
    ) -> discord.Message | Literal["gone", "refused"]:
        """Edit through the interaction's token (its own bucket; discord.py's webhook adapter honours
        its X-RateLimit headers and retry_after). "gone": the message was deleted; "refused":
        Discord no longer takes the token (401). Either way the bot token goes on from here."""
        assert record.message_id is not None
        webhook = discord.Webhook.partial(self._client.application_id or 0, token, client=self._client)
        view = render.build_view(parts.buttons)
        try:
            # view None removes the buttons; MISSING (discord.py's "not given") keeps the attachments.
            return await webhook.edit_message(
                record.message_id,
                content=parts.content,
                embed=parts.embed,
                view=view,
                attachments=[file] if file is not None else MISSING,
            )
        except discord.NotFound:
            return "gone"
        except discord.HTTPException as exc:
            if exc.status != 401:
                raise
            log.warning("Discord refused the interaction token of task %s (401); using the bot token", record.id)
            return "refused"

    async def write_with_bot_token(
        self, record: TaskRecord, parts: render.MessageParts, file: discord.File | None
    ) -> discord.Message:
        """Edit (or post) with the bot token, each request within the budget."""
        channel = self._client.get_partial_messageable(record.channel_id, guild_id=record.message_guild_id)
        view = render.build_view(parts.buttons)
        if record.message_id is not None:
            await self._take_budget(record)
            try:
                # view None removes the buttons; MISSING (discord.py's "not given") keeps the attachments.
                message = await channel.get_partial_message(record.message_id).edit(
                    content=parts.content,
                    embed=parts.embed,
                    view=view,
                    attachments=[file] if file is not None else MISSING,
                )
                return message
            except discord.NotFound:
                log.info("Message of task %s was deleted; posting a new one", record.id)
                if file is not None:
                    file.reset()
        await self._take_budget(record, first_post=True)
        message = await channel.send(
            content=parts.content,
            embed=parts.embed,
            view=view if view is not None else MISSING,
            file=file if file is not None else MISSING,
        )
        return message

    async def _take_budget(self, record: TaskRecord, *, first_post: bool = False) -> None:
        if record.status in FINAL_STATUSES:
            await self.budget.take(RESULT)
        elif first_post or record.message_id is None:
            await self.budget.take(FIRST_POST)
        elif not self.budget.try_take():
            raise BudgetShort
