"""/swapface: put the face from one picture onto another (insight-face)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.inputs import read_images
from bot.requests import SwapFaceRequest
from cogs._shared import Interaction, begin, submit_from_command

if TYPE_CHECKING:
    from bot.bot import MJBot


class SwapFace(commands.Cog):
    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    @app_commands.command(name=_("swapface"), description=_("Put the face from one image onto another"))
    @app_commands.describe(source=_("The image with the face"), target=_("The picture to put the face on"))
    async def swapface(self, interaction: Interaction, source: discord.Attachment, target: discord.Attachment) -> None:
        prefs = await begin(interaction)
        settings = self.bot.settings
        face, picture = await read_images(
            [source, target], max_bytes=settings.max_image_bytes, max_total=settings.max_request_bytes
        )
        await submit_from_command(interaction, SwapFaceRequest(source=face, target=picture), prefs=prefs)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(SwapFace(bot))
