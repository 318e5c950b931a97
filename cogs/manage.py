"""Cancel an in-flight task and delete a result: the requester or a moderator only."""

from __future__ import annotations

import logging
import re
import time
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.errors import InputError, NotAllowed
from bot.i18n import t
from bot.jobs import Submit
from bot.models import CANCEL, FINAL_STATUSES, TaskRecord
from bot.responder import locale_of, reply, report_error
from cogs._shared import ItemsCog, submit_click

if TYPE_CHECKING:
    from bot.bot import MJBot

    Interaction = discord.Interaction[MJBot]
else:
    Interaction = discord.Interaction

log = logging.getLogger(__name__)

CANCELLED_REASON = "bot:failure.cancelled_by_user"


async def own_task(interaction: Interaction, task_id: str) -> TaskRecord:
    """The task, if the clicking user asked for it or may moderate messages here."""
    # The button's message tells the task apart should two upstreams have given it the same id.
    record = await interaction.client.store.get_task(
        task_id, message_id=interaction.message.id if interaction.message else None
    )
    if record is None:
        raise InputError("click.unknown_task")
    permissions = interaction.permissions
    if interaction.user.id != record.user_id and not (permissions and permissions.manage_messages):
        raise NotAllowed("manage.not_yours")
    return record


class CancelButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=render.CANCEL_TEMPLATE):
    def __init__(self, task_id: str) -> None:
        super().__init__(discord.ui.Button(custom_id=render.CANCEL_ID.format(task=task_id)))
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(match["task"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        bot = interaction.client
        try:
            record = await own_task(interaction, self.task_id)
            if record.status in FINAL_STATUSES or record.delivered:
                raise InputError("manage.already_finished")
            bot.tracker.forget(record.key)
            await interaction.response.defer()
            cancelled_upstream = await bot.jobs.client(record.upstream).cancel(record.id)
            log.info(
                "Task %s cancelled by %s (upstream cancel: %s)", record.id, interaction.user.id, cancelled_upstream
            )
            now = time.time()
            await bot.store.update_task(
                record.key, status=CANCEL, fail_reason=CANCELLED_REASON, finished_at=now, delivered=True
            )
            record = await bot.store.get_task(record.id, record.upstream) or record
            parts = render.render_task(record)
            await interaction.edit_original_response(
                content=parts.content, embed=parts.embed, view=render.build_view(parts.buttons)
            )
            await bot.store.update_task(record.key, shown=parts.fingerprint())
        except Exception as error:
            await report_error(interaction, error)


class DeleteButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=render.DELETE_TEMPLATE):
    def __init__(self, task_id: str) -> None:
        super().__init__(discord.ui.Button(custom_id=render.DELETE_ID.format(task=task_id)))
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> DeleteButton:
        return cls(match["task"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            await own_task(interaction, self.task_id)
            if interaction.message is None:
                raise InputError("click.unknown_task")
            await interaction.message.delete()
            await reply(interaction, t("manage.deleted", locale_of(interaction)))
        except Exception as error:
            await report_error(interaction, error)


def retry_submit(bot: MJBot, stuck: TaskRecord) -> Submit:
    """The same request again, from the spec stored when it was first submitted."""
    spec: dict[str, Any] = stuck.extra.get("retry") or {}
    kind = spec.get("kind")
    bot_type = str(spec.get("bot_type") or "MID_JOURNEY")
    if kind == "imagine":
        return lambda client: client.imagine(str(spec["prompt"]), bot_type=bot_type)
    if kind == "shorten":
        return lambda client: client.shorten(str(spec["prompt"]), bot_type=bot_type)
    if kind == "action" and stuck.parent_id:
        parent_id = stuck.parent_id
        return lambda client: client.action(parent_id, str(spec["custom_id"]))
    if kind == "change" and stuck.parent_id:
        parent_id = stuck.parent_id
        return lambda client: client.change(parent_id, str(spec["action"]), int(spec["index"]))
    if kind == "video":  # a relay's Animate (with its picture's link) or Extend (with the video's index)
        prompt, motion = str(spec.get("prompt") or "animate"), str(spec.get("motion") or "low")
        if stuck.parent_id and isinstance(spec.get("index"), int):
            extend = (stuck.parent_id, int(spec["index"]))
            return lambda client: client.video(prompt, motion=motion, extend=extend)
        if isinstance(spec.get("image"), str):
            image = str(spec["image"])
            return lambda client: client.video(prompt, motion=motion, image=image)
    raise InputError("retry.impossible")


class RetryButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=render.RETRY_TEMPLATE):
    """On a task the bot gave up on: asks first, because a new submit may be charged again."""

    def __init__(self, task_id: str) -> None:
        super().__init__(discord.ui.Button(custom_id=render.RETRY_ID.format(task=task_id)))
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> RetryButton:
        return cls(match["task"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            record = await own_task(interaction, self.task_id)
            if not render.is_stuck(record):
                raise InputError("retry.impossible")
            locale = locale_of(interaction)
            confirm = render.ButtonSpec(
                render.RETRY_CONFIRM_ID.format(task=record.id), t("retry.confirm_button", locale), "🔁", 1
            )
            await reply(interaction, t("retry.confirm", locale), view=render.build_view((confirm,)))
        except Exception as error:
            await report_error(interaction, error)


class RetryConfirmButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=render.RETRY_CONFIRM_TEMPLATE):
    def __init__(self, task_id: str) -> None:
        super().__init__(discord.ui.Button(custom_id=render.RETRY_CONFIRM_ID.format(task=task_id)))
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> RetryConfirmButton:
        return cls(match["task"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            stuck = await own_task(interaction, self.task_id)
            if not render.is_stuck(stuck):
                raise InputError("retry.impossible")
            await submit_click(
                interaction,
                stuck,
                "retry",
                retry_submit(interaction.client, stuck),
                action=stuck.action,
                prompt=stuck.prompt,
                retry=stuck.extra.get("retry"),
            )
        except Exception as error:
            await report_error(interaction, error)


class Manage(ItemsCog):
    items = (CancelButton, DeleteButton, RetryButton, RetryConfirmButton)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Manage(bot))
