"""/describe: four prompts Midjourney would write for an image, each one a click from /imagine."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _

from bot import render
from bot.errors import InputError
from bot.inputs import allowed_hosts, check_image_url, download_image, read_image
from bot.requests import DescribeRequest
from cogs._shared import BOT_TYPES, Interaction, ItemsCog, TaskButton, begin, submit_click, submit_from_command

if TYPE_CHECKING:
    from bot.bot import MJBot


class RedescribeButton(TaskButton, spec=render.REDESCRIBE):
    """🔄 on a describe result: a new /describe of the same image (works on every server)."""

    async def clicked(self, interaction: Interaction) -> None:
        bot = interaction.client
        parent = self.task
        source = parent.result_url or parent.image_url
        if not source:
            raise InputError("click.unknown_task")

        async def describe_again() -> DescribeRequest:
            return DescribeRequest(
                image=await download_image(bot.fetcher, source, max_bytes=bot.settings.max_image_bytes)
            )

        await submit_click(interaction, parent, "redo", describe_again, prompt="/describe")


class Describe(ItemsCog):
    items = (RedescribeButton,)

    @app_commands.command(name=_("describe"), description=_("Get four prompts that describe an image"))
    @app_commands.describe(
        image=_("The image to describe"),
        url=_("Or a link to an image on Discord"),
        model=_("Midjourney or Niji"),
    )
    @app_commands.choices(model=BOT_TYPES)
    async def describe(
        self,
        interaction: Interaction,
        image: discord.Attachment | None = None,
        url: app_commands.Range[str, 1, 2000] | None = None,
        model: app_commands.Choice[str] | None = None,
    ) -> None:
        if (image is None) == (url is None):
            raise InputError("input.one_image")
        max_bytes = self.bot.settings.max_image_bytes
        checked_url = check_image_url(url, allowed_hosts(self.bot.settings.api_base)) if url else None
        prefs = await begin(interaction)
        if image is not None:
            picture = await read_image(image, max_bytes=max_bytes)
        else:
            assert checked_url is not None
            picture = await download_image(self.bot.fetcher, checked_url, max_bytes=max_bytes)
        request = DescribeRequest(image=picture, bot_type=model.value if model else "MID_JOURNEY")
        await submit_from_command(interaction, request, prefs=prefs)


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Describe(bot))
