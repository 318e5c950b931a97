"""Glue shared by the command cogs: posting a tracked task message and reading attachments."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar

import discord
from discord.ext import commands

from bot import render
from bot.errors import BotError, InputError
from bot.i18n import t
from bot.images import SHRINK_FACTOR, check_upload
from bot.jobs import Submit
from bot.models import SubmitResult, TaskRecord
from bot.preferences import UserPrefs
from bot.responder import locale_of, reply, report_error
from bot.tracking.posting import send_task_message
from bot.upstream.client import data_url

if TYPE_CHECKING:
    from bot.bot import MJBot

    Interaction = discord.Interaction[MJBot]
else:
    Interaction = discord.Interaction

log = logging.getLogger(__name__)

# Two clicks on one button within this many seconds submit one action.
CLICK_WINDOW = 10.0


async def read_image(attachment: discord.Attachment, *, max_bytes: int) -> str:
    """A user's attachment as a data URL, after checking its bytes (not its name); a moderately
    oversized image is shrunk to fit."""
    if attachment.size > max_bytes * SHRINK_FACTOR:
        raise InputError(
            "input.too_large", size_mb=f"{attachment.size / 1048576:.1f}", limit_mb=f"{max_bytes / 1048576:.0f}"
        )
    try:
        data = await attachment.read()
    except discord.HTTPException:
        raise InputError("input.download_failed") from None
    checked = await check_upload(data, max_bytes=max_bytes)
    return data_url(checked.data, checked.mime)


async def read_images(attachments: list[discord.Attachment | None], *, max_bytes: int, max_total: int) -> list[str]:
    """Several attachments as data URLs; also caps the request body the API will receive."""
    images = [await read_image(a, max_bytes=max_bytes) for a in attachments if a is not None]
    total = sum(len(i) * 3 // 4 for i in images)  # decoded size of the base64 payloads
    if total > max_total:
        raise InputError(
            "input.total_too_large", size_mb=f"{total / 1048576:.1f}", limit_mb=f"{max_total / 1048576:.0f}"
        )
    return images


async def discard_thinking(interaction: Interaction) -> None:
    """Drop a public 'thinking…' response so the error that follows can be ephemeral."""
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        pass


async def begin(interaction: Interaction) -> UserPrefs:
    """Acknowledge a generating command within Discord's 3 seconds, privately if the user's results
    go to their DMs. Returns the user's preferences."""
    prefs = await interaction.client.store.get_prefs(interaction.user.id)
    await interaction.response.defer(thinking=True, ephemeral=prefs.visibility == "dm")
    return prefs


async def dm_channel(interaction: Interaction) -> discord.DMChannel | None:
    try:
        return await interaction.user.create_dm()
    except discord.HTTPException:
        return None


async def submit_from_command(
    interaction: Interaction,
    submit: Submit,
    *,
    action: str,
    prompt: str,
    prefs: UserPrefs,
    extra: dict[str, Any] | None = None,
) -> TaskRecord | None:
    """For slash commands that already called `begin`: submit, then show the task's message (the
    deferred response, or a DM), which the tracker keeps editing with the bot token."""
    bot = interaction.client
    locale = locale_of(interaction)
    dm = await dm_channel(interaction) if prefs.visibility == "dm" else None
    try:
        record, _ = await bot.jobs.submit(
            submit,
            action=action,
            prompt=prompt,
            user_id=interaction.user.id,
            channel_id=dm.id if dm else interaction.channel_id or 0,
            guild_id=None if dm else interaction.guild_id,
            locale=locale,
            extra=extra,
        )
    except BotError as error:
        await discard_thinking(interaction)
        await report_error(interaction, error)
        return None
    parts = render.render_task(record)
    view = render.build_view(parts.buttons)
    try:
        if dm is not None:
            message = await dm.send(content=parts.content, embed=parts.embed, view=view)  # type: ignore[arg-type]
            await interaction.edit_original_response(content=t("settings.sent_to_dm", locale, url=message.jump_url))
        else:
            message = await interaction.edit_original_response(content=parts.content, embed=parts.embed, view=view)
    except discord.HTTPException as exc:
        # The task is stored: the tracker will post a fresh message for it.
        log.warning("Could not show task %s (HTTP %s); the tracker will post it", record.id, exc.status)
        bot.tracker.track(record)
        return record
    if dm is not None:  # a DM posted with the bot token: edited with it too
        return await bot.jobs.attach_message(record, message.id, parts.fingerprint())
    # The message is the command's response: edited through the interaction's token for its first
    # 14 minutes, which Discord does not count against the bot-wide limit (issue 16).
    return await bot.jobs.attach_message(
        record,
        message.id,
        parts.fingerprint(),
        interaction_token=interaction.token,
        interaction_at=interaction.created_at.timestamp(),
    )


async def post_for_click(interaction: Interaction, record: TaskRecord) -> TaskRecord:
    """A click or modal created a task: post its message as a reply to its parent's message with the
    bot token (bot/tracking/posting.py, shared with the web editor), else as a followup of the interaction."""
    bot = interaction.client
    parts = render.render_task(record)
    message = await send_task_message(bot, bot.store, record, parts)
    if message is None:
        view = render.build_view(parts.buttons)
        try:
            message = await interaction.followup.send(content=parts.content, embed=parts.embed, view=view, wait=True)  # type: ignore[call-overload]
        except discord.HTTPException as exc:
            log.warning("Could not post task %s (HTTP %s); the tracker will retry", record.id, exc.status)
            bot.tracker.track(record)
            return record
    return await bot.jobs.attach_message(record, message.id, parts.fingerprint())


async def submit_child(
    interaction: Interaction,
    parent: TaskRecord,
    submit: Submit,
    *,
    action: str,
    prompt: str,
    retry: dict[str, Any] | None = None,
) -> tuple[TaskRecord, SubmitResult]:
    """Submit a task that follows from `parent` (a click, a modal): same key, same channel."""
    return await interaction.client.jobs.submit(
        submit,
        action=action,
        prompt=prompt,
        user_id=interaction.user.id,
        channel_id=interaction.channel_id or parent.channel_id,
        guild_id=interaction.guild_id,
        locale=locale_of(interaction),
        parent_id=parent.id,
        upstream=parent.upstream,
        extra={"retry": retry} if retry else None,
    )


class ItemsCog(commands.Cog):
    """A cog whose only job is to register its persistent DynamicItems while it is loaded."""

    items: ClassVar[tuple[type[discord.ui.DynamicItem[Any]], ...]] = ()

    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*self.items)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*self.items)


async def submit_click(
    interaction: Interaction,
    parent: TaskRecord,
    button_key: str,
    submit: Submit,
    *,
    action: str,
    prompt: str,
    retry: dict[str, Any] | None = None,
) -> None:
    """Shared path of every 'click -> new task' button: dedupe, defer, submit, post or ask for a modal.

    `retry` says how to submit the same thing again should the task get stuck (see cogs/manage.py).
    """
    bot = interaction.client
    if not await bot.store.claim_click(parent.key, button_key, interaction.user.id, window=CLICK_WINDOW):
        await reply(interaction, t("click.already", locale_of(interaction)))
        return
    await interaction.response.defer()
    try:
        record, result = await submit_child(interaction, parent, submit, action=action, prompt=prompt, retry=retry)
    except BotError as error:
        await bot.store.release_click(parent.key, button_key)
        await report_error(interaction, error)
        return
    if result.needs_modal:
        # The server wants the prompt confirmed (remix). The interaction is already answered, so
        # offer a button that opens the modal.
        view = render.build_view(
            (render.ButtonSpec(render.MODAL_TASK_ID.format(task=record.id), t("modal.open", record.locale), "✏️", 1),)
        )
        await interaction.followup.send(t("modal.needed", record.locale), view=view, ephemeral=True)  # type: ignore[arg-type]
        return
    await post_for_click(interaction, record)
