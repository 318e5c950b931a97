"""/imagine: a prompt (and optional reference images) in, a tracked task message out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.inputs import read_image
from bot.preferences import apply_preferences
from bot.prompts import clean_prompt
from bot.requests import ImagineRequest
from cogs._shared import BOT_TYPES, Interaction, begin, submit_from_command

if TYPE_CHECKING:
    from bot.bot import MJBot


class Imagine(commands.Cog):
    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    @app_commands.command(name=_("imagine"), description=_("Create images from a text prompt"))
    @app_commands.describe(
        prompt=_("What to draw, with optional parameters such as --ar 16:9"),
        image=_("A reference image (optional)"),
        image2=_("A second reference image (optional)"),
        model=_("Midjourney or Niji"),
    )
    @app_commands.choices(model=BOT_TYPES)
    async def imagine(
        self,
        interaction: Interaction,
        prompt: app_commands.Range[str, 1, 6000],
        image: discord.Attachment | None = None,
        image2: discord.Attachment | None = None,
        model: app_commands.Choice[str] | None = None,
    ) -> None:
        text = clean_prompt(prompt)  # cheap checks first, answered before anything is shown in the channel
        prefs = await begin(interaction)
        text = apply_preferences(text, prefs)
        max_bytes = self.bot.settings.max_image_bytes
        # Reference images are not kept with the task, so a stuck task with images has no Retry.
        images = [await read_image(a, max_bytes=max_bytes) for a in (image, image2) if a is not None]
        bot_type = model.value if model else "MID_JOURNEY"
        request = ImagineRequest(prompt=text, bot_type=bot_type, images=tuple(images))
        await submit_from_command(interaction, request, prefs=prefs)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Imagine(bot))
