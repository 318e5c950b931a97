"""/video: Midjourney's image-to-video through `/submit/video` (trueai, and relays that pass it on).

The result is re-uploaded as an MP4 file, recognised by its bytes (bot/images.py), within
MAX_UPLOAD_BYTES, else linked. U1-U4 under a video pick one, Extend continues it; those are the
server's own buttons (cogs/actions.py). Refusals each get their own message: Remix off on the
server's accounts (code 9), no account for video (3), video turned off (4).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _

from bot import render
from bot.errors import BotError
from bot.inputs import read_image
from bot.prompts import clean_prompt
from bot.requests import VideoRequest
from bot.upstream.accounts import RELAY
from cogs._shared import Interaction, ItemsCog, TaskButton, begin, submit_click, submit_from_command
from cogs.info import split_parameters

if TYPE_CHECKING:
    from bot.bot import MJBot

MOTIONS = [
    app_commands.Choice(name=_("low motion", key="choice.motion_low"), value="low"),
    app_commands.Choice(name=_("high motion", key="choice.motion_high"), value="high"),
]
BATCHES = [
    app_commands.Choice(name=_("1 video", key="choice.batch_1"), value=1),
    app_commands.Choice(name=_("2 videos", key="choice.batch_2"), value=2),
    app_commands.Choice(name=_("4 videos", key="choice.batch_4"), value=4),
]


class ExtendButton(TaskButton, spec=render.EXTEND):
    """Extend one video of a relay's VIDEO task: /submit/video with action "extend", the task id and
    the index (relays refuse the server's own Extend button). On trueai Discord accounts the new task
    starts as UPSCALE and turns VIDEO under the same id; the tracker follows its label."""

    needs_success = True

    async def clicked(self, interaction: Interaction) -> None:
        parent = self.task
        index, motion = int(self.values["index"]), self.values["motion"]
        prompt = split_parameters(parent.prompt)[0] or "extend"
        await submit_click(
            interaction,
            parent,
            f"ext:{index}:{motion}",
            VideoRequest(prompt=prompt, motion=motion, extend_task=parent.id, extend_index=index),
            prompt=prompt,
            # Only relay videos have this button: the mark keeps the extension's buttons relay-safe.
            extra={"relay": True},
        )


class Video(ItemsCog):
    items = (ExtendButton,)

    @app_commands.command(name=_("video"), description=_("Animate an image into short videos"))
    @app_commands.describe(
        image=_("The first frame"),
        prompt=_("How it should move"),
        end_image=_("The last frame (optional)"),
        motion=_("Low or high motion"),
        loop=_("End where it starts"),
        hd=_("HD (720p) where the server's accounts offer it"),
        batch=_("How many videos (default 4)"),
    )
    @app_commands.choices(motion=MOTIONS, batch=BATCHES)
    async def video(
        self,
        interaction: Interaction,
        image: discord.Attachment,
        prompt: app_commands.Range[str, 1, 2000],
        end_image: discord.Attachment | None = None,
        motion: app_commands.Choice[str] | None = None,
        loop: bool = False,
        hd: bool = False,
        batch: app_commands.Choice[int] | None = None,
    ) -> None:
        text = clean_prompt(prompt)
        prefs = await begin(interaction)
        limit = self.bot.settings.max_image_bytes
        first = await read_image(image, max_bytes=limit)
        last = await read_image(end_image, max_bytes=limit) if end_image is not None else None
        request = VideoRequest(
            prompt=text,
            image=first,
            end_image=last,
            motion=motion.value if motion else "low",
            loop=loop,
            hd=hd,
            batch=batch.value if batch else None,
        )
        extra = {"relay": True} if await self._through_relay(interaction) else None
        await submit_from_command(interaction, request, prefs=prefs, extra=extra)

    async def _through_relay(self, interaction: Interaction) -> bool:
        """Relays refuse U1-U4 on videos and Extend: the result then shows neither (render.action_buttons)."""
        chain = self.bot.keys.chain(interaction.guild_id)
        if not chain:
            return False
        try:
            return (await self.bot.capabilities.get(chain[0])).flavor == RELAY
        except BotError:
            return False


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Video(bot))
