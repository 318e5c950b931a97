"""/blend: two to five images mixed into a new grid."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.inputs import read_images
from bot.requests import BlendRequest
from cogs._shared import BOT_TYPES, Interaction, begin, submit_from_command

if TYPE_CHECKING:
    from bot.bot import MJBot

DIMENSIONS = [
    app_commands.Choice(name=_("Portrait 2:3", key="choice.portrait"), value="PORTRAIT"),
    app_commands.Choice(name=_("Square 1:1", key="choice.square"), value="SQUARE"),
    app_commands.Choice(name=_("Landscape 3:2", key="choice.landscape"), value="LANDSCAPE"),
]


class Blend(commands.Cog):
    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    @app_commands.command(name=_("blend"), description=_("Blend 2 to 5 images into a new picture"))
    @app_commands.describe(
        image1=_("First image"),
        image2=_("Second image"),
        image3=_("Third image (optional)"),
        image4=_("Fourth image (optional)"),
        image5=_("Fifth image (optional)"),
        dimensions=_("Shape of the result"),
        model=_("Midjourney or Niji"),
    )
    @app_commands.choices(dimensions=DIMENSIONS, model=BOT_TYPES)
    async def blend(
        self,
        interaction: Interaction,
        image1: discord.Attachment,
        image2: discord.Attachment,
        image3: discord.Attachment | None = None,
        image4: discord.Attachment | None = None,
        image5: discord.Attachment | None = None,
        dimensions: app_commands.Choice[str] | None = None,
        model: app_commands.Choice[str] | None = None,
    ) -> None:
        prefs = await begin(interaction)
        settings = self.bot.settings
        images = await read_images(
            [image1, image2, image3, image4, image5],
            max_bytes=settings.max_image_bytes,
            max_total=settings.max_request_bytes,
        )
        request = BlendRequest(
            images=tuple(images),
            dimensions=dimensions.value if dimensions else "SQUARE",
            bot_type=model.value if model else "MID_JOURNEY",
        )
        await submit_from_command(interaction, request, prefs=prefs)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Blend(bot))
