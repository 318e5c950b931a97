"""Replying to an interaction whatever state it is in, and turning errors into user messages.

Shared by the command tree's error handler and by button/modal callbacks, whose errors never reach
the tree (discord.py only logs them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import discord

from bot.errors import BotError
from bot.i18n import t

log = logging.getLogger(__name__)


def locale_of(interaction: discord.Interaction[Any]) -> str:
    return str(interaction.locale.value if interaction.locale else interaction.guild_locale or "en")


async def reply(interaction: discord.Interaction[Any], content: str, *, ephemeral: bool = True, **kwargs: Any) -> None:
    """send_message if the interaction is unanswered, else a followup."""
    try:
        if interaction.response.is_done():
            await interaction.followup.send(content, ephemeral=ephemeral, **kwargs)
        else:
            await interaction.response.send_message(content, ephemeral=ephemeral, **kwargs)
    except discord.HTTPException as exc:
        log.warning("Could not reply to interaction %s: HTTP %s", interaction.id, exc.status)


def error_text(error: BaseException, locale: str) -> str:
    if isinstance(error, BotError):
        return "⚠️ " + t(error.key, locale, **error.params)
    return "⚠️ " + t("error.generic", locale)


async def report_error(interaction: discord.Interaction[Any], error: BaseException) -> None:
    """Show a known error as a short ephemeral message; log anything unexpected with context."""
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
    text = error_text(error, locale_of(interaction))
    await reply(interaction, text, ephemeral=True)
