"""Glue shared by the cogs: the Interaction alias, shared choices, posting a tracked task message,
and the one base of every persistent button about a task (TaskButton)."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands
from discord.utils import MISSING

from bot import render
from bot.access import Place, check_task_access
from bot.errors import InputError, NotAllowed
from bot.i18n import t
from bot.models import SUCCESS, Origin, SubmitResult, TaskRecord
from bot.policy import check_approved, check_click
from bot.preferences import UserPrefs
from bot.requests import SubmitRequest
from bot.responder import locale_of, reply, report_error
from bot.tracking.posting import send_task_message

if TYPE_CHECKING:
    from bot.bot import MJBot

    # discord.py types its callbacks for any client (Interaction[ClientT]); ours are always handed
    # the MJBot. A callback that takes this alias narrows that deliberately: the one reason for the
    # `# type: ignore[override]` on callbacks, interaction checks and error handlers in cogs/.
    Interaction = discord.Interaction[MJBot]
else:
    Interaction = discord.Interaction

log = logging.getLogger(__name__)

# Two clicks on one button within this many seconds submit one action.
CLICK_WINDOW = 10.0

BOT_TYPES = [
    app_commands.Choice(name=_("Midjourney", key="choice.midjourney"), value="MID_JOURNEY"),
    app_commands.Choice(name=_("Niji (anime)", key="choice.niji"), value="NIJI_JOURNEY"),
]


def origin_of(interaction: Interaction, *, channel_id: int | None = None, dm: bool = False) -> Origin:
    """Who typed, where the answer goes (`channel_id`, else the interaction's channel) and whose
    rules apply: the server the command was used in, also for results sent to DMs (`dm`), whose
    channel rules then check the channel it was typed in."""
    return Origin(
        user_id=interaction.user.id,
        channel_id=channel_id if channel_id is not None else interaction.channel_id or 0,
        guild_id=interaction.guild_id,
        locale=locale_of(interaction),
        in_dm=dm and interaction.guild_id is not None,
        used_in=interaction.channel_id if dm else None,
    )


def origin_of_click(interaction: Interaction, parent: TaskRecord) -> Origin:
    """A click on (or a modal about) `parent`: its server's rules and key apply (bot/access.py let
    the click through only there, or in its owner's DMs), and the new task is shown where the click
    was: the server's channel, or those DMs (no channel rule applies there)."""
    in_dm = interaction.guild_id is None and parent.guild_id is not None
    return Origin(
        user_id=interaction.user.id,
        channel_id=interaction.channel_id or parent.channel_id,
        guild_id=parent.guild_id,
        locale=locale_of(interaction),
        in_dm=in_dm,
    )


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
    interaction: Interaction, request: SubmitRequest, *, prefs: UserPrefs, extra: Mapping[str, Any] | None = None
) -> TaskRecord:
    """For slash commands that already called `begin`: submit, then show the task's message (the
    deferred response, or a DM), which the tracker keeps editing with the bot token. Errors go to
    the command tree's handler, which clears the "thinking…" message and answers privately."""
    bot = interaction.client
    dm = await dm_channel(interaction) if prefs.visibility == "dm" else None
    origin = origin_of(interaction, channel_id=dm.id if dm else None, dm=dm is not None)
    record, _ = await bot.jobs.submit(request, origin, extra=extra)
    parts = render.render_task(record)
    view = render.build_view(parts.buttons)
    try:
        if dm is not None:
            message = await dm.send(
                content=parts.content, embed=parts.embed, view=view if view is not None else MISSING
            )
            await interaction.edit_original_response(
                content=t("settings.sent_to_dm", origin.locale, url=message.jump_url)
            )
        else:
            message = await interaction.edit_original_response(content=parts.content, embed=parts.embed, view=view)
    except discord.HTTPException as exc:
        # The task is stored: the tracker will post a fresh message for it.
        log.warning("Could not show task %s (HTTP %s); the tracker will post it", record.id, exc.status)
        bot.tracker.track(record)
        return record
    if dm is not None:  # a DM posted with the bot token: edited with it too
        return await bot.jobs.attach_message(record, message.id, parts.fingerprint())
    return await attach_through_interaction(interaction, record, message, parts)


async def attach_through_interaction(
    interaction: Interaction, record: TaskRecord, message: discord.Message, parts: render.MessageParts
) -> TaskRecord:
    """Track a task whose message the interaction created (its response or a followup): the tracker
    edits it through the interaction's token for its first 14 minutes, which Discord does not count
    against the bot-wide limit (issue 16)."""
    return await interaction.client.jobs.attach_message(
        record,
        message.id,
        parts.fingerprint(),
        interaction_token=interaction.token,
        interaction_at=interaction.created_at.timestamp(),
    )


async def post_for_click(interaction: Interaction, record: TaskRecord) -> TaskRecord:
    """A click or modal created a task: post its message as that interaction's followup. That is an
    interaction route, outside the bot-wide limit, and the tracker edits the message through the
    token for its first 14 minutes (issue 16); Discord shows it as answering the message the button
    was on. Where that would point at a private message (a confirmation only the clicker sees), where
    the task's messages go elsewhere (results in DMs), or where the followup is refused, the bot token
    posts it as a reply to its parent (bot/tracking/posting.py, shared with the web editor)."""
    bot = interaction.client
    parts = render.render_task(record)
    source = interaction.message
    if record.channel_id == interaction.channel_id and source is not None and not source.flags.ephemeral:
        view = render.build_view(parts.buttons)
        try:
            followup = await interaction.followup.send(
                content=parts.content, embed=parts.embed, view=view if view is not None else MISSING, wait=True
            )
        except discord.HTTPException as exc:
            log.info("Task %s: the interaction's followup was refused (HTTP %s); posting it", record.id, exc.status)
        else:
            return await attach_through_interaction(interaction, record, followup, parts)
    message = await send_task_message(bot, bot.store, record, parts)
    if message is None:
        log.warning("Could not post task %s; the tracker will retry", record.id)
        bot.tracker.track(record)
        return record
    return await bot.jobs.attach_message(record, message.id, parts.fingerprint())


async def submit_child(
    interaction: Interaction,
    parent: TaskRecord,
    request: SubmitRequest,
    *,
    action: str | None = None,
    prompt: str,
    extra: Mapping[str, Any] | None = None,
) -> tuple[TaskRecord, SubmitResult]:
    """Submit a task that follows from `parent` (a click, a modal): same key, same server's rules."""
    origin = origin_of_click(interaction, parent)
    jobs = interaction.client.jobs
    return await jobs.submit(request, origin, action=action, prompt=prompt, parent=parent, extra=extra)


async def deliver_click(interaction: Interaction, record: TaskRecord, result: SubmitResult) -> None:
    """Show what a click created: its message, or a button that opens the prompt modal when the
    server wants the prompt confirmed (remix; the interaction is already answered)."""
    if result.needs_modal:
        view = render.build_view(
            (render.ButtonSpec(render.MODAL_TASK_ID.format(task=record.id), t("modal.open", record.locale), "✏️", 1),)
        )
        await interaction.followup.send(
            t("modal.needed", record.locale), view=view if view is not None else MISSING, ephemeral=True
        )
        return
    await post_for_click(interaction, record)


async def submit_click(
    interaction: Interaction,
    parent: TaskRecord,
    button_key: str,
    request: SubmitRequest | Callable[[], Awaitable[SubmitRequest]],
    *,
    action: str | None = None,
    prompt: str,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Shared path of every 'click -> new task' button: dedupe, defer, submit, post or ask for a modal.
    `request` may be a coroutine function that builds it once the click is acknowledged (a download
    can take longer than Discord's 3 seconds). A refused submit frees the click again."""
    bot = interaction.client
    if not await bot.store.claim_click(parent.key, button_key, interaction.user.id, window=CLICK_WINDOW):
        await reply(interaction, t("click.already", locale_of(interaction)))
        return
    await interaction.response.defer()
    try:
        if not isinstance(request, SubmitRequest):
            request = await request()
        record, result = await submit_child(interaction, parent, request, action=action, prompt=prompt, extra=extra)
    except Exception:
        await bot.store.release_click(parent.key, button_key)
        raise
    await deliver_click(interaction, record, result)


class ItemsCog(commands.Cog):
    """A cog whose only job is to register its persistent DynamicItems while it is loaded."""

    items: ClassVar[tuple[type[discord.ui.DynamicItem[Any]], ...]] = ()

    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(*self.items)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(*self.items)


# ---- buttons ---------------------------------------------------------------------------------------


class Who(Enum):
    """Who may click a task's button."""

    #: Anyone who sees the message.
    ANYONE = "anyone"
    #: As the guild's policy says (owner-only results, or everyone): bot/policy.py check_click.
    CLICKERS = "clickers"
    #: The member who asked for the task, or a moderator of the channel.
    REQUESTER = "requester"


_NEVER = r"(?!)"  # the template of a base class: matches no custom_id


class Clickable(discord.ui.DynamicItem[discord.ui.Item[Any]], template=_NEVER):
    """Base of every persistent button (or select, `component`): its custom_id shape (`spec`, a
    render.CustomId given as the class keyword) is written once for building ids and matching
    clicks, and every error of a check or a callback is reported in one place. Subclasses implement
    `clicked`."""

    spec: ClassVar[render.CustomId]
    component: ClassVar[type[discord.ui.Button[Any] | discord.ui.Select[Any]]] = discord.ui.Button

    def __init_subclass__(cls, *, spec: render.CustomId | None = None) -> None:
        super().__init_subclass__(template=spec.template if spec is not None else _NEVER)
        if spec is not None:  # None: another base class (TaskButton)
            cls.spec = spec

    def __init__(self, **values: object) -> None:
        super().__init__(self.component(custom_id=self.spec.build(**values)))
        self.values = {name: str(value) for name, value in values.items()}

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> Clickable:
        return cls(**match.groupdict())

    async def check(self, interaction: Interaction) -> None:
        """Raise BotError when this click may not go ahead."""

    async def interaction_check(self, interaction: Interaction) -> bool:  # type: ignore[override]
        try:
            await self.check(interaction)
        except Exception as error:
            await report_error(interaction, error)
            return False
        return True

    async def clicked(self, interaction: Interaction) -> None:
        raise NotImplementedError

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            await self.clicked(interaction)
        except Exception as error:
            await report_error(interaction, error)


class TaskButton(Clickable):
    """A button about one stored task (custom_id field `task`). interaction_check loads the task and
    checks who may click it (`who`) and, for result buttons, that it finished (`needs_success`)."""

    who: ClassVar[Who] = Who.CLICKERS
    needs_success: ClassVar[bool] = False

    def __init__(self, **values: object) -> None:
        super().__init__(**values)
        self.task_id = self.values["task"]
        self._task: TaskRecord | None = None

    @property
    def task(self) -> TaskRecord:
        """The task, loaded and checked by interaction_check."""
        assert self._task is not None, "interaction_check runs first"
        return self._task

    async def check(self, interaction: Interaction) -> None:
        # The button's message tells the task apart should two upstreams have given it the same id.
        message_id = interaction.message.id if interaction.message else None
        record = await interaction.client.store.get_task(self.task_id, message_id=message_id)
        if record is None:
            raise InputError("click.unknown_task")
        # Every button, whoever may click it: only where the task belongs, in an approved server.
        check_task_access(record, Place.of(interaction))
        await check_approved(interaction)
        if self.who is Who.CLICKERS:
            await check_click(interaction, record)  # and its server's rule for result buttons
        elif self.who is Who.REQUESTER:
            permissions = interaction.permissions
            if interaction.user.id != record.user_id and not (permissions and permissions.manage_messages):
                raise NotAllowed("manage.not_yours")
        if self.needs_success and record.status != SUCCESS:
            raise InputError("click.not_finished")
        self._task = record
