"""ℹ️ under a finished picture: its seed, full prompt and parameters, shown only to the clicker.

The seed comes from the API (`/mj/task/{id}/image-seed`), which basic servers lack: they get a
plain "not available" instead of an error. Reading a seed changes nothing, so anyone may click.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

import discord

from bot import render
from bot.errors import BotError, InputError, UnsupportedAction
from bot.i18n import t
from bot.models import SUCCESS, TaskRecord
from bot.responder import locale_of, report_error
from cogs._shared import ItemsCog

if TYPE_CHECKING:
    from bot.bot import MJBot

    Interaction = discord.Interaction[MJBot]
else:
    Interaction = discord.Interaction

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
    embed.description = f"**{t('info.prompt', locale)}**\n```\n{render.truncate(prompt or '-', 3800)}\n```"
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


class SeedButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=render.SEED_TEMPLATE):
    def __init__(self, task_id: str) -> None:
        super().__init__(discord.ui.Button(custom_id=render.SEED_ID.format(task=task_id)))
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> SeedButton:
        return cls(match["task"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        try:
            bot = interaction.client
            record = await bot.store.get_task(
                self.task_id, message_id=interaction.message.id if interaction.message else None
            )
            if record is None:
                raise InputError("click.unknown_task")
            if record.status != SUCCESS:
                raise InputError("click.not_finished")
            locale = locale_of(interaction)
            await interaction.response.defer(ephemeral=True, thinking=True)  # the seed is an API call
            seed = await seed_text(bot, record, locale)
            await interaction.followup.send(embed=info_embed(record, seed, locale), ephemeral=True)
        except Exception as error:
            await report_error(interaction, error)


class Info(ItemsCog):
    items = (SeedButton,)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Info(bot))
