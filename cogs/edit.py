"""/edit and /retexture: Midjourney's image editor, where the server offers it.

Only pools of YouChuan or midjourney.com accounts can edit; a pool of Discord accounts answers
code 9. That answer is remembered per upstream (bot/upstream/capabilities.py), so the next member
is told at once instead of waiting on a refusal. A relay answers /retexture with its web page
(recognised by its Content-Type in the client), which is remembered the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot.errors import FeatureUnavailable, InputError, UnsupportedAction
from bot.inputs import read_image
from bot.prompts import clean_prompt
from bot.requests import EditRequest, RetextureRequest
from cogs._shared import Interaction, begin, submit_from_command

if TYPE_CHECKING:
    from bot.bot import MJBot


class Edit(commands.Cog):
    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    async def _known_refusal(self, interaction: Interaction, feature: str) -> None:
        """Refuse at once (before anything is shown) when this guild's first server already refused `feature`."""
        chain = self.bot.keys.chain(interaction.guild_id)
        if not chain:
            return
        # A pool that cannot edit cannot retexture either (same accounts, same refusal).
        for known in dict.fromkeys((feature, "edit")):
            if await self.bot.capabilities.offers(chain[0], known) is False:
                raise InputError(f"error.{known}_unsupported")

    async def _run(self, interaction: Interaction, image: discord.Attachment, prompt: str, feature: str) -> None:
        text = clean_prompt(prompt)
        await self._known_refusal(interaction, feature)
        prefs = await begin(interaction)
        picture = await read_image(image, max_bytes=self.bot.settings.max_image_bytes)
        request = (
            EditRequest(prompt=text, image=picture)
            if feature == "edit"
            else RetextureRequest(prompt=text, image=picture)
        )
        memory = self.bot.capabilities
        try:
            record = await submit_from_command(interaction, request, prefs=prefs)
        except FeatureUnavailable as refused:
            if refused.upstream is not None:  # the pool cannot edit: neither tool works
                await memory.learn(refused.upstream, "edit", False)
            raise
        except UnsupportedAction as refused:
            if refused.upstream is not None:
                await memory.learn(refused.upstream, feature, False)
            raise FeatureUnavailable(f"error.{feature}_unsupported") from None
        await memory.learn(record.upstream, feature, True)

    @app_commands.command(name=_("edit"), description=_("Edit an image with a prompt"))
    @app_commands.describe(image=_("The image to edit"), prompt=_("What it should become"))
    async def edit(
        self, interaction: Interaction, image: discord.Attachment, prompt: app_commands.Range[str, 1, 2000]
    ) -> None:
        await self._run(interaction, image, prompt, "edit")

    @app_commands.command(name=_("retexture"), description=_("Keep an image's shapes, change its look"))
    @app_commands.describe(image=_("The image to retexture"), prompt=_("The new look"))
    async def retexture(
        self, interaction: Interaction, image: discord.Attachment, prompt: app_commands.Range[str, 1, 2000]
    ) -> None:
        await self._run(interaction, image, prompt, "retexture")


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Edit(bot))
