"""Posting a new task's message with the bot token, as a reply to its parent's message.

Shared by button clicks (cogs/) and the Vary (Region) web editor (bot/web/server.py), which has no
interaction to answer: both need "post it where the parent is, then track it", so it lives here.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import discord
from discord.utils import MISSING

from bot import render
from bot.models import TaskRecord
from bot.storage.protocols import TaskStore

if TYPE_CHECKING:
    from bot.jobs import Jobs

log = logging.getLogger(__name__)


async def parent_reference(store: TaskStore, record: TaskRecord) -> discord.MessageReference | None:
    """Reply to the parent task's message (not to the clicked one, which may be ephemeral)."""
    # A task made from another (a click) stays on its parent's upstream.
    parent = await store.get_task(record.parent_id, record.upstream) if record.parent_id else None
    if parent is None or parent.message_id is None:
        return None
    return discord.MessageReference(
        message_id=parent.message_id,
        channel_id=parent.channel_id,
        guild_id=parent.message_guild_id,
        fail_if_not_exists=False,
    )


async def send_task_message(
    client: discord.Client, store: TaskStore, record: TaskRecord, parts: render.MessageParts
) -> discord.Message | None:
    """The task's first message in its channel, or None when Discord refused it (caller decides)."""
    channel = client.get_partial_messageable(record.channel_id, guild_id=record.message_guild_id)
    reference = await parent_reference(store, record)
    view = render.build_view(parts.buttons)
    try:
        return await channel.send(
            content=parts.content,
            embed=parts.embed,
            view=view if view is not None else MISSING,
            # send() takes None as "no reply" (its default), which discord.py's typed overloads leave out.
            reference=reference,  # type: ignore[arg-type]
            mention_author=False,
        )
    except discord.HTTPException as exc:
        log.info("Posting task %s in channel %s failed (HTTP %s)", record.id, record.channel_id, exc.status)
        return None


async def post_tracked(
    client: discord.Client, jobs: Jobs, record: TaskRecord
) -> tuple[TaskRecord, discord.Message | None]:
    """Post the task's message and start tracking it. Without a message the tracker still posts one
    on its next cycle, so a refused post never loses the task."""
    parts = render.render_task(record)
    message = await send_task_message(client, jobs.store, record, parts)
    if message is None:
        jobs.tracker.track(record)
        return record, None
    return await jobs.attach_message(record, message.id, parts.fingerprint()), message
