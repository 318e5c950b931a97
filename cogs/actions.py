"""Buttons on task messages and the modals they open.

Every button is a TaskButton (cogs/_shared.py) matched by its custom_id, so buttons on messages
from before a restart keep working. The custom_id only holds our task id and an index; the long
Midjourney customId is read from the database.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.errors import BotError, InputError
from bot.i18n import t
from bot.models import MODAL, TaskRecord
from bot.preferences import apply_preferences
from bot.prompts import clean_prompt, with_zoom
from bot.requests import ActionRequest, ChangeRequest, ImagineRequest, SubmitRequest, VideoRequest
from bot.responder import locale_of, reply, report_error
from bot.upstream.accounts import RELAY
from bot.web.inpaint import LINK_TTL
from cogs._shared import Interaction, ItemsCog, TaskButton, post_for_click, submit_child, submit_click
from cogs.info import split_parameters

if TYPE_CHECKING:
    from bot.bot import MJBot

log = logging.getLogger(__name__)

CHANGE_ACTIONS = {"U": "UPSCALE", "V": "VARIATION", "R": "REROLL"}
#: Longest wait for a first probe of the server before a click is answered (Discord allows 3 s).
PROBE_SECONDS = 1.5
# Actions Midjourney's remix mode lets the user re-prompt.
REMIXABLE = frozenset({"VARIATION", "PAN", "REROLL"})


# ---- modals ---------------------------------------------------------------------------------------


class PromptModal(discord.ui.Modal):
    """Edit a prompt, then submit something with it and post the new task as a reply.

    Subclasses say how to read the prompt (`clean`) and what to submit (`run`); answering Discord,
    reporting errors and posting the result are the same for all of them.
    """

    def __init__(self, *, title: str, locale: str, default: str, zoom: str | None = None) -> None:
        super().__init__(title=render.truncate(title, 45), timeout=900)
        self.locale = locale
        self.prompt: discord.ui.TextInput[PromptModal] = discord.ui.TextInput(
            label=render.truncate(t("modal.prompt_label", locale), 45),
            style=discord.TextStyle.paragraph,
            default=render.truncate(default, 4000) or None,
            max_length=4000,
            required=True,
        )
        self.add_item(self.prompt)
        self.zoom: discord.ui.TextInput[PromptModal] | None = None
        if zoom is not None:
            self.zoom = discord.ui.TextInput(
                label=render.truncate(t("modal.zoom_label", locale), 45),
                default=zoom,
                max_length=4,
                required=True,
            )
            self.add_item(self.zoom)

    def clean(self) -> str:
        return clean_prompt(self.prompt.value)

    async def run(self, interaction: Interaction, prompt: str) -> TaskRecord:
        raise NotImplementedError

    async def on_submit(self, interaction: Interaction) -> None:  # type: ignore[override]
        prompt = self.clean()  # a bad prompt is answered (on_error) before anything is deferred
        await interaction.response.defer()
        record = await self.run(interaction, prompt)
        await post_for_click(interaction, record)

    async def on_error(self, interaction: Interaction, error: Exception, item: Any = None) -> None:  # type: ignore[override]
        await report_error(interaction, error)


class ParentActionModal(PromptModal):
    """A modal about one button of a finished task (Custom Zoom, remix)."""

    def __init__(
        self, parent: TaskRecord, button_index: int, *, title: str, locale: str, default: str, zoom: str | None = None
    ) -> None:
        super().__init__(title=title, locale=locale, default=default, zoom=zoom)
        self.parent = parent
        self.button_index = button_index

    def custom_id_of_button(self) -> str:
        button = self.parent.button(self.button_index)
        if button is None:
            raise InputError("click.unknown_button")
        return button.custom_id


class CustomZoomModal(ParentActionModal):
    def __init__(self, parent: TaskRecord, button_index: int, locale: str) -> None:
        prompt = re.sub(r"\s*--zoom\s+\S+", "", parent.final_prompt or parent.prompt)
        super().__init__(
            parent, button_index, title=t("modal.zoom_title", locale), locale=locale, default=prompt, zoom="2"
        )

    def clean(self) -> str:
        assert self.zoom is not None
        return with_zoom(self.prompt.value, self.zoom.value)

    async def run(self, interaction: Interaction, prompt: str) -> TaskRecord:
        custom_id = self.custom_id_of_button()
        record, result = await submit_child(
            interaction,
            self.parent,
            ActionRequest(task_id=self.parent.id, custom_id=custom_id),
            action="ZOOM",
            prompt=prompt,
        )
        if result.needs_modal:
            record, _ = await interaction.client.jobs.submit_modal(record, prompt)
        return record


class RemixModal(ParentActionModal):
    """The user's remix setting: edit the prompt before a V/pan/reroll is submitted."""

    def __init__(self, parent: TaskRecord, button_index: int, action: str, locale: str) -> None:
        super().__init__(
            parent,
            button_index,
            title=t("modal.remix_title", locale),
            locale=locale,
            default=parent.final_prompt or parent.prompt,
        )
        self.action = action

    async def run(self, interaction: Interaction, prompt: str) -> TaskRecord:
        custom_id = self.custom_id_of_button()
        record, result = await submit_child(
            interaction,
            self.parent,
            ActionRequest(task_id=self.parent.id, custom_id=custom_id, enable_remix=True),
            action=self.action,
            prompt=prompt,
        )
        if result.needs_modal:
            record, _ = await interaction.client.jobs.submit_modal(record, prompt)
        else:
            # The server ran the action at once: it cannot take an edited prompt for it.
            await reply(interaction, t("remix.not_supported", locale_of(interaction)))
        return record


class ModalTaskModal(PromptModal):
    """The second step of a MODAL task the server created (remix V/pan/reroll)."""

    def __init__(self, task: TaskRecord, locale: str) -> None:
        super().__init__(title=t("modal.remix_title", locale), locale=locale, default=task.final_prompt or task.prompt)
        self.task = task

    async def run(self, interaction: Interaction, prompt: str) -> TaskRecord:
        record, _ = await interaction.client.jobs.submit_modal(self.task, prompt)
        return record


class PickModal(PromptModal):
    """Describe / shorten pick: the chosen prompt, editable, becomes a new /imagine."""

    def __init__(self, parent: TaskRecord, index: int, default: str, locale: str) -> None:
        super().__init__(title=t("modal.pick_title", locale, n=index), locale=locale, default=default)
        self.parent = parent

    async def run(self, interaction: Interaction, prompt: str) -> TaskRecord:
        prefs = await interaction.client.store.get_prefs(interaction.user.id)
        prompt = apply_preferences(prompt, prefs)
        record, _ = await submit_child(interaction, self.parent, ImagineRequest(prompt=prompt), prompt=prompt)
        return record


async def offer_region_editor(interaction: Interaction, parent: TaskRecord, index: int, locale: str) -> None:
    """Vary (Region) needs a mask drawn on the picture, which Discord cannot do: a private link to the
    bot's web editor (bot/web/server.py), which submits and posts the result itself."""
    web = interaction.client.web
    url = web.inpaint_url(parent.id, index, interaction.user.id, locale) if web is not None else None
    if url is None:
        await reply(interaction, t("click.inpaint_unsupported", locale))
        return
    view = render.StaticView(timeout=None)
    view.add_item(discord.ui.Button(label=t("click.inpaint_open", locale), emoji="🖌️", url=url))
    await reply(interaction, t("click.inpaint_link", locale, minutes=LINK_TTL // 60), view=view)


# ---- buttons ----------------------------------------------------------------------------------------


class ActionButton(TaskButton, spec=render.ACTION):
    """An upstream button (U1, V2, 🔄, Zoom Out, pan...): /submit/action with its customId."""

    needs_success = True

    async def clicked(self, interaction: Interaction) -> None:
        parent = self.task
        index = int(self.values["index"])
        button = parent.button(index)
        if button is None:
            raise InputError("click.unknown_button")
        locale = locale_of(interaction)
        if render.is_inpaint(button):
            await offer_region_editor(interaction, parent, index, locale)
            return
        if render.is_custom_zoom(button):
            await interaction.response.send_modal(CustomZoomModal(parent, index, locale))
            return
        action = render.action_for_button(button)
        animate = render.animate_motion(button)
        if animate is not None and not animate[1]:
            relay = await is_relay(interaction.client, parent.upstream)
            await submit_click(
                interaction,
                parent,
                f"act:{index}",
                animate_request(interaction.client, parent, button.custom_id, animate[0]),
                action=action,
                prompt=parent.final_prompt or parent.prompt,
                # Marks the video as made through a relay, so its result offers only what a relay runs.
                extra={"relay": True} if relay else None,
            )
            return
        if action in REMIXABLE and (await interaction.client.store.get_prefs(interaction.user.id)).remix:
            await interaction.response.send_modal(RemixModal(parent, index, action, locale))
            return
        await submit_click(
            interaction,
            parent,
            f"act:{index}",
            ActionRequest(task_id=parent.id, custom_id=button.custom_id),
            action=action,
            prompt=parent.final_prompt or parent.prompt,
        )


async def is_relay(bot: MJBot, upstream: str) -> bool:
    """Whether the task's server is a relay, asking it at most once and never past Discord's 3 s."""
    known = bot.capabilities.known(upstream)
    if known is None:
        try:
            known = await asyncio.wait_for(bot.capabilities.get(upstream), PROBE_SECONDS)
        except (BotError, KeyError, TimeoutError):
            bot.capabilities.learn_soon(upstream)
            return False
    return known.flavor == RELAY


def animate_request(
    bot: MJBot, parent: TaskRecord, custom_id: str, motion: str
) -> Callable[[], Awaitable[SubmitRequest]]:
    """Animate on an upscale: the server's button where it accepts it (trueai); a relay refuses the
    button (unknown_action), so there the bot submits /submit/video itself with the picture's link.
    Built once the click is acknowledged (the server's kind may need a probe)."""

    async def request() -> SubmitRequest:
        caps = await bot.capabilities.get(parent.upstream)
        if caps.flavor != RELAY:
            return ActionRequest(task_id=parent.id, custom_id=custom_id)
        image = parent.image_url or parent.result_url
        if not image:
            raise InputError("click.unknown_button")
        prompt = split_parameters(parent.final_prompt or parent.prompt)[0] or "animate"
        return VideoRequest(prompt=prompt, image=image, motion=motion)

    return request


class ChangeButton(TaskButton, spec=render.CHANGE):
    """U/V/reroll on basic servers, which have no buttons: /submit/change."""

    needs_success = True

    async def clicked(self, interaction: Interaction) -> None:
        parent = self.task
        op = self.values["op"]
        index = int(op[1]) if len(op) > 1 else 1
        await submit_click(
            interaction,
            parent,
            f"chg:{op}",
            ChangeRequest(task_id=parent.id, change=CHANGE_ACTIONS[op[0]], index=index),
            prompt=parent.final_prompt or parent.prompt,
        )


class PickButton(TaskButton, spec=render.PICK):
    """Describe/shorten candidate N: done by the bot through /submit/imagine (relays refuse these)."""

    needs_success = True

    async def clicked(self, interaction: Interaction) -> None:
        parent = self.task
        index = int(self.values["index"])
        options = parent.extra.get("candidates") or parent.extra.get("options") or []
        if not 1 <= index <= len(options):
            raise InputError("click.unknown_button")
        await interaction.response.send_modal(PickModal(parent, index, options[index - 1], locale_of(interaction)))


class OpenModalButton(TaskButton, spec=render.MODAL_TASK):
    """Opens the prompt modal of a MODAL task (the server asked for a remix prompt)."""

    async def clicked(self, interaction: Interaction) -> None:
        if self.task.status != MODAL:
            raise InputError("click.modal_done")
        await interaction.response.send_modal(ModalTaskModal(self.task, locale_of(interaction)))


class Actions(ItemsCog):
    items = (ActionButton, ChangeButton, PickButton, OpenModalButton)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Actions(bot))
