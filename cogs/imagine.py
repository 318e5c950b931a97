"""/imagine: a prompt (and optional reference images) in, a tracked task message out."""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.errors import BotError
from bot.preferences import apply_preferences
from bot.prompts import clean_prompt
from bot.responder import report_error
from cogs._shared import begin, discard_thinking, read_image, submit_from_command

if TYPE_CHECKING:
    from bot.bot import MJBot

    Interaction = discord.Interaction[MJBot]
else:
    Interaction = discord.Interaction

BOT_TYPES = [
    app_commands.Choice(name=_("Midjourney", key="choice.midjourney"), value="MID_JOURNEY"),
    app_commands.Choice(name=_("Niji (anime)", key="choice.niji"), value="NIJI_JOURNEY"),
]


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
        # Cheap checks first, answered ephemerally before anything is shown in the channel.
        try:
            text = clean_prompt(prompt)
        except BotError as error:
            await report_error(interaction, error)
            return
        prefs = await begin(interaction)
        text = apply_preferences(text, prefs)
        images: list[str] = []
        try:
            for attachment in (image, image2):
                if attachment is not None:
                    images.append(await read_image(attachment, max_bytes=self.bot.settings.max_image_bytes))
        except BotError as error:
            await discard_thinking(interaction)
            await report_error(interaction, error)
            return
        bot_type = model.value if model else "MID_JOURNEY"
        await submit_from_command(
            interaction,
            lambda client: client.imagine(text, bot_type=bot_type, images=images),
            prefs=prefs,
            action="IMAGINE",
            prompt=text,
            # Retrying a stuck task re-sends the prompt; reference images are not kept, so no retry then.
            extra=None if images else {"retry": {"kind": "imagine", "prompt": text, "bot_type": bot_type}},
        )


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Imagine(bot))
