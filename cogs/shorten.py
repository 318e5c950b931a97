"""/shorten: Midjourney's analysis of a long prompt, with shorter options to imagine from."""

from __future__ import annotations

from typing import TYPE_CHECKING

from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.prompts import clean_prompt
from bot.requests import ShortenRequest
from cogs._shared import BOT_TYPES, Interaction, begin, submit_from_command

if TYPE_CHECKING:
    from bot.bot import MJBot


class Shorten(commands.Cog):
    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    @app_commands.command(name=_("shorten"), description=_("Find the words that matter in a long prompt"))
    @app_commands.describe(prompt=_("The prompt to analyse"), model=_("Midjourney or Niji"))
    @app_commands.choices(model=BOT_TYPES)
    async def shorten(
        self,
        interaction: Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        model: app_commands.Choice[str] | None = None,
    ) -> None:
        text = clean_prompt(prompt)
        prefs = await begin(interaction)
        request = ShortenRequest(prompt=text, bot_type=model.value if model else "MID_JOURNEY")
        await submit_from_command(interaction, request, prefs=prefs)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Shorten(bot))
