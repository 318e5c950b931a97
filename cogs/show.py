"""/show: bring back one of your past results, with live buttons, in the current channel."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands
from discord.utils import MISSING

from bot import render
from bot.access import Place, check_task_access
from bot.errors import BotError, InputError, NotAllowed
from bot.images import Media
from bot.models import SUCCESS, TaskRecord
from cogs._shared import Interaction

if TYPE_CHECKING:
    from bot.bot import MJBot

log = logging.getLogger(__name__)


def may_show(record: TaskRecord, interaction: Interaction) -> bool:
    """Only where the task belongs (its server, or its owner's DMs; bot/access.py), and there only
    for its owner or a moderator. Anything else reads as "not found": no hint that it exists."""
    try:
        check_task_access(record, Place.of(interaction))
    except NotAllowed:
        return False
    return record.user_id == interaction.user.id or bool(interaction.permissions.manage_messages)


class Show(commands.Cog):
    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    async def _image(self, record: TaskRecord) -> Media | None:
        """Our re-uploaded copy first; if that link expired, ask the API for the task again. Every
        link goes through the guarded fetcher and must be a picture."""
        limit = self.bot.settings.max_upload_bytes
        fetcher = self.bot.fetcher
        for url in (record.result_url, record.image_url):
            if not url:
                continue
            try:
                return await fetcher.fetch_media(url, max_bytes=limit)
            except BotError:
                continue
        try:
            task = await self.bot.jobs.client(record.upstream).fetch(record.id)
        except BotError:
            return None
        if task is None or not task.image_url:
            return None
        try:
            return await fetcher.fetch_media(task.image_url, max_bytes=limit)
        except BotError:
            return None

    @app_commands.command(name=_("show"), description=_("Bring back one of your results by its task id"))
    @app_commands.describe(task_id=_("The task id shown under the result"))
    async def show(self, interaction: Interaction, task_id: app_commands.Range[str, 1, 40]) -> None:
        record = await self.bot.store.get_task(task_id.strip())
        if record is None or not may_show(record, interaction):
            raise InputError("show.not_found")
        if record.status != SUCCESS:
            raise InputError("show.not_finished")
        await interaction.response.defer(thinking=True)
        media = await self._image(record)
        file = None
        image = None
        if media is not None:
            name = render.result_filename(record, media.extension)
            file = discord.File(io.BytesIO(media.data), filename=name)
            image = f"attachment://{name}"
        parts = render.render_task(record, image=image)
        try:
            await interaction.edit_original_response(
                content=parts.content,
                embed=parts.embed,
                view=render.build_view(parts.buttons),
                attachments=[file] if file is not None else MISSING,
            )
        except discord.HTTPException as exc:
            log.warning("Could not show task %s again (HTTP %s)", record.id, exc.status)
            raise InputError("show.failed") from None


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Show(bot))
