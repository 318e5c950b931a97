"""Cancel an in-flight task, delete a result, retry a task that never finished or whose submit
answer was lost: the requester (or a moderator) only, and a retry only after a warning."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot import render
from bot.errors import InputError
from bot.i18n import t
from bot.responder import locale_of, reply
from cogs._shared import Clickable, Interaction, ItemsCog, TaskButton, Who, deliver_click, submit_click

if TYPE_CHECKING:
    from bot.bot import MJBot

log = logging.getLogger(__name__)


class CancelButton(TaskButton, spec=render.CANCEL_TASK):
    who = Who.REQUESTER

    async def clicked(self, interaction: Interaction) -> None:
        jobs = interaction.client.jobs
        jobs.check_cancellable(self.task)
        await interaction.response.defer()
        record = await jobs.cancel(self.task, interaction.user.id)
        parts = render.render_task(record)
        await interaction.edit_original_response(
            content=parts.content, embed=parts.embed, view=render.build_view(parts.buttons)
        )
        await interaction.client.store.update_task(record.key, shown=parts.fingerprint())


class DeleteButton(TaskButton, spec=render.DELETE):
    who = Who.REQUESTER

    async def clicked(self, interaction: Interaction) -> None:
        if interaction.message is None:
            raise InputError("click.unknown_task")
        await interaction.message.delete()
        await reply(interaction, t("manage.deleted", locale_of(interaction)))


class RetryButton(TaskButton, spec=render.RETRY):
    """On a task the bot gave up on: asks first, because a new submit may be charged again."""

    who = Who.REQUESTER

    async def clicked(self, interaction: Interaction) -> None:
        if not render.is_stuck(self.task) or self.task.request is None:
            raise InputError("retry.impossible")
        locale = locale_of(interaction)
        confirm = render.ButtonSpec(
            render.RETRY_CONFIRM.build(task=self.task.id), t("retry.confirm_button", locale), "🔁", 1
        )
        await reply(interaction, t("retry.confirm", locale), view=render.build_view((confirm,)))


class RetryConfirmButton(TaskButton, spec=render.RETRY_CONFIRM):
    who = Who.REQUESTER

    async def clicked(self, interaction: Interaction) -> None:
        stuck = self.task
        if not render.is_stuck(stuck) or stuck.request is None:
            raise InputError("retry.impossible")
        # The retry's message shows what the first would have (a video made through a relay...).
        extra = {"relay": True} if render.through_relay(stuck) else None
        await submit_click(
            interaction, stuck, "retry", stuck.request, action=stuck.action, prompt=stuck.prompt, extra=extra
        )


class LostRetryButton(Clickable, spec=render.LOST_RETRY):
    """On the notice of a submit whose answer was lost: asks first, because the first submit may
    have been charged already."""

    async def check(self, interaction: Interaction) -> None:
        interaction.client.jobs.lost(self.values["state"], interaction.user.id)

    async def clicked(self, interaction: Interaction) -> None:
        locale = locale_of(interaction)
        confirm = render.ButtonSpec(
            render.LOST_RETRY_CONFIRM.build(state=self.values["state"]), t("retry.confirm_button", locale), "🔁", 1
        )
        await reply(interaction, t("submit.lost_confirm", locale), view=render.build_view((confirm,)))


class LostRetryConfirmButton(Clickable, spec=render.LOST_RETRY_CONFIRM):
    async def check(self, interaction: Interaction) -> None:
        interaction.client.jobs.lost(self.values["state"], interaction.user.id)

    async def clicked(self, interaction: Interaction) -> None:
        await interaction.response.defer()
        jobs = interaction.client.jobs
        record, result = await jobs.retry_lost(self.values["state"], interaction.user.id, locale_of(interaction))
        await deliver_click(interaction, record, result)


class Manage(ItemsCog):
    items = (CancelButton, DeleteButton, RetryButton, RetryConfirmButton, LostRetryButton, LostRetryConfirmButton)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Manage(bot))
