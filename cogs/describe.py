"""/describe: four prompts Midjourney would write for an image, each one a click from /imagine."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import discord
from discord import app_commands
from discord.app_commands import locale_str as _

from bot import render
from bot.errors import BotError, DownloadTooLarge, InputError, TransientError
from bot.images import SHRINK_FACTOR, check_upload
from bot.models import SubmitResult
from bot.policy import check_click
from bot.responder import report_error
from bot.upstream.client import MJClient, data_url
from cogs._shared import ItemsCog, begin, discard_thinking, read_image, submit_click, submit_from_command
from cogs.imagine import BOT_TYPES

if TYPE_CHECKING:
    from bot.bot import MJBot

    Interaction = discord.Interaction[MJBot]
else:
    Interaction = discord.Interaction

# A URL option may only point here: the bot never fetches arbitrary hosts for users.
DISCORD_IMAGE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})


def allowed_hosts(api_base: str) -> frozenset[str]:
    host = urlsplit(api_base).hostname
    return DISCORD_IMAGE_HOSTS | ({host.lower()} if host else set())


def check_image_url(url: str, hosts: frozenset[str]) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError("input.bad_url")
    if parts.hostname.lower() not in hosts:
        raise InputError("input.host_not_allowed", host=parts.hostname)
    return parts.geturl()


async def download_image(bot: MJBot, url: str) -> str:
    """A URL's image as a data URL: through the guarded fetcher (size-capped, public addresses only),
    then checked and shrunk like an upload."""
    max_bytes = bot.settings.max_image_bytes
    try:
        data = await bot.fetcher.fetch(url, max_bytes=max_bytes * SHRINK_FACTOR)
    except TransientError:
        raise InputError("input.download_failed") from None
    except DownloadTooLarge:
        raise InputError(
            "input.too_large",
            size_mb=f">{max_bytes * SHRINK_FACTOR / 1048576:.0f}",
            limit_mb=f"{max_bytes / 1048576:.0f}",
        ) from None
    checked = await check_upload(data, max_bytes=max_bytes)
    return data_url(checked.data, checked.mime)


class RedescribeButton(discord.ui.DynamicItem[discord.ui.Button[Any]], template=render.REDESCRIBE_TEMPLATE):
    """🔄 on a describe result: a new /describe of the same image (works on every server)."""

    def __init__(self, task_id: str) -> None:
        super().__init__(discord.ui.Button(custom_id=render.REDESCRIBE_ID.format(task=task_id)))
        self.task_id = task_id

    @classmethod
    async def from_custom_id(
        cls, interaction: Interaction, item: discord.ui.Button[Any], match: re.Match[str], /
    ) -> RedescribeButton:
        return cls(match["task"])

    async def callback(self, interaction: Interaction) -> None:  # type: ignore[override]
        bot = interaction.client
        try:
            parent = await bot.store.get_task(
                self.task_id, message_id=interaction.message.id if interaction.message else None
            )
            source = parent.result_url or parent.image_url if parent else None
            if parent is None or not source:
                raise InputError("click.unknown_task")
            await check_click(interaction, parent)

            async def describe_again(client: MJClient) -> SubmitResult:
                assert source is not None
                return await client.describe(await download_image(bot, source))

            await submit_click(interaction, parent, "redo", describe_again, action="DESCRIBE", prompt="/describe")
        except Exception as error:
            await report_error(interaction, error)


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
        try:
            if (image is None) == (url is None):
                raise InputError("input.one_image")
            checked_url = check_image_url(url, allowed_hosts(self.bot.settings.api_base)) if url else None
        except BotError as error:
            await report_error(interaction, error)
            return
        prefs = await begin(interaction)
        try:
            if image is not None:
                picture = await read_image(image, max_bytes=self.bot.settings.max_image_bytes)
            else:
                assert checked_url is not None
                picture = await download_image(self.bot, checked_url)
        except BotError as error:
            await discard_thinking(interaction)
            await report_error(interaction, error)
            return
        bot_type = model.value if model else "MID_JOURNEY"
        await submit_from_command(
            interaction,
            lambda client: client.describe(picture, bot_type=bot_type),
            prefs=prefs,
            action="DESCRIBE",
            prompt="/describe",
        )


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Describe(bot))
