"""ℹ️ under a finished picture: its seed, full prompt and parameters, shown only to the clicker.

The seed comes from the API (`/mj/task/{id}/image-seed`), which basic servers lack: they get a
plain "not available" instead of an error. Reading a seed changes nothing, so anyone may click.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

import discord

from bot import render
from bot.errors import BotError, UnsupportedAction
from bot.i18n import t
from bot.models import TaskRecord
from bot.responder import locale_of
from cogs._shared import Interaction, ItemsCog, TaskButton, Who

if TYPE_CHECKING:
    from bot.bot import MJBot

log = logging.getLogger(__name__)

_PARAMETER = re.compile(r"\s+(?=--[A-Za-z])")


def split_parameters(prompt: str) -> tuple[str, list[str]]:
    """'a cat --ar 16:9 --no red hat' -> ('a cat', ['--ar 16:9', '--no red hat'])."""
    parts = [part.strip() for part in _PARAMETER.split(" " + prompt.strip()) if part.strip()]
    text = parts.pop(0) if parts and not parts[0].startswith("--") else ""
    return text, parts


async def seed_text(bot: MJBot, record: TaskRecord, locale: str) -> str:
    try:
        seed = await bot.jobs.client(record.upstream).image_seed(record.id)
    except UnsupportedAction:
        return t("info.seed_unsupported", locale)
    except BotError as error:
        return t("info.seed_failed", locale, reason=t(error.key, locale, **error.params))
    return f"`{seed}`\n-# {t('info.seed_hint', locale, seed=seed)}"


def info_embed(record: TaskRecord, seed: str, locale: str) -> discord.Embed:
    prompt = record.final_prompt or record.prompt
    _, parameters = split_parameters(prompt)
    embed = discord.Embed(title=t("info.title", locale), color=render.COLOR_SUCCESS)
    embed.description = f"**{t('info.prompt', locale)}**\n{render.fenced(render.truncate(prompt or '-', 3800))}"
    shown = "\n".join(f"`{render.truncate(p, 200)}`" for p in parameters) or t("info.no_parameters", locale)
    embed.add_field(name=t("info.parameters", locale), value=render.truncate(shown, 1024), inline=False)
    embed.add_field(name=t("info.seed", locale), value=render.truncate(seed, 1024), inline=False)
    embed.add_field(name=t("info.task", locale), value=f"`{record.id}`", inline=True)
    embed.add_field(name=t("info.action", locale), value=render.action_name(record.action, locale), inline=True)
    if record.parent_id:
        embed.add_field(name=t("info.parent", locale), value=f"`{record.parent_id}`", inline=True)
    image = record.result_url or record.image_url
    if image:
        embed.add_field(name=t("info.image", locale), value=t("info.open", locale, url=image), inline=True)
    return embed


class SeedButton(TaskButton, spec=render.SEED):
    """ℹ️ on a result: its seed (an API call), full prompt and parameters, privately."""

    who = Who.ANYONE
    needs_success = True

    async def clicked(self, interaction: Interaction) -> None:
        locale = locale_of(interaction)
        await interaction.response.defer(ephemeral=True, thinking=True)  # the seed is an API call
        seed = await seed_text(interaction.client, self.task, locale)
        await interaction.followup.send(embed=info_embed(self.task, seed, locale), ephemeral=True)


class Info(ItemsCog):
    items = (SeedButton,)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Info(bot))
