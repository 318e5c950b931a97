"""Replying to an interaction whatever state it is in, and turning errors into user messages.

The one error path of the Discord side: the command tree's error handler and every button and
modal (whose errors never reach the tree) end in `report_error`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import discord

from bot import render
from bot.errors import BotError, SubmitLost
from bot.i18n import t

log = logging.getLogger(__name__)

#: Discord's limit on a message's content.
MAX_CONTENT = 2000


def locale_of(interaction: discord.Interaction[Any]) -> str:
    return str(interaction.locale.value if interaction.locale else interaction.guild_locale or "en")


async def reply(interaction: discord.Interaction[Any], content: str, *, ephemeral: bool = True, **kwargs: Any) -> None:
    """send_message if the interaction is unanswered, else a followup. Content over Discord's
    limit is cut (with an ellipsis) rather than refused."""
    content = render.truncate(content, MAX_CONTENT)
    try:
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=ephemeral, **kwargs)
        else:
            await interaction.response.send_message(content, ephemeral=ephemeral, **kwargs)
    except discord.HTTPException as exc:
        log.warning("Could not reply to interaction %s: HTTP %s", interaction.id, exc.status)


async def reply_lines(interaction: discord.Interaction[Any], lines: list[str]) -> None:
    """A private answer of many lines, in as many messages as Discord's 2,000 characters need."""
    for page in render.paginate(lines, MAX_CONTENT):
        await reply(interaction, page, ephemeral=True)


def error_text(error: BaseException, locale: str, *, markdown: bool = True) -> str:
    """The message for `error`. With `markdown` (a Discord message), the API server's own words in
    it (`detail`: untrusted) are neutralized, so they show as typed: no masked links, no mentions."""
    if isinstance(error, BotError):
        params = error.params
        if markdown and error.detail:
            params = {**params, "detail": render.neutralize(error.detail)}
        return "⚠️ " + t(error.key, locale, **params)
    return "⚠️ " + t("error.generic", locale)


async def discard_thinking(interaction: discord.Interaction[Any]) -> None:
    """Drop a 'thinking…' response (a deferred command, or a button deferred with thinking), so the
    error that follows can be private. A deferred update of a clicked message is left alone."""
    if interaction.response.type is not discord.InteractionResponseType.deferred_channel_message:
        return
    try:
        await interaction.delete_original_response()
    except discord.HTTPException:
        pass


async def report_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Show a known error as a short private message; log anything unexpected with context."""
    if not isinstance(error, BotError):
        # A button's or modal's custom_id, never interaction.data: a modal's data holds what was
        # typed into it (the add-key form's API key).
        data: Mapping[str, object] = interaction.data or {}
        custom_id = data.get("custom_id", "?")
        command = interaction.command.qualified_name if interaction.command else f"component {custom_id}"
        log.error(
            "Unhandled error in %s (user %s, guild %s)",
            command,
            interaction.user.id,
            interaction.guild_id,
            exc_info=error,
        )
    await discard_thinking(interaction)
    locale = locale_of(interaction)
    text = error_text(error, locale)
    if isinstance(error, SubmitLost):
        retry = render.ButtonSpec(render.LOST_RETRY.build(state=error.state), t("button.retry", locale), "🔁", 2)
        await reply(interaction, text, ephemeral=True, view=render.build_view((retry,)))
        return
    await reply(interaction, text, ephemeral=True)
