"""Checks on what members hand the bot: attached images and image links.

Discord-facing only in that it reads `discord.Attachment`s; the checks themselves (the image's
bytes, not its name; the link's host) are here so every command and button applies the same ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import discord
from discord import app_commands

from bot.errors import DownloadTooLarge, InputError, TransientError
from bot.images import SHRINK_FACTOR, check_upload
from bot.net.fetcher import Fetcher
from bot.upstream.client import data_url

# A URL option may only point here: the bot never fetches arbitrary hosts for users.
DISCORD_IMAGE_HOSTS = frozenset({"cdn.discordapp.com", "media.discordapp.net"})


_NUMBERS = (discord.AppCommandOptionType.integer, discord.AppCommandOptionType.number)


def check_options(interaction: discord.Interaction[Any]) -> None:
    """Refuse option values Discord's own client cannot send but a modified client can: a missing
    required option, a value outside its choices, text or a number outside its range. discord.py
    leaves these to Discord; a command may then rely on what it declared."""
    command = interaction.command
    if (
        not isinstance(command, app_commands.Command)
        or interaction.type is not discord.InteractionType.application_command
    ):
        return
    namespace = interaction.namespace
    for param in command.parameters:
        name = param.display_name
        value = getattr(namespace, name, None)
        if value is None:
            if param.required:
                raise InputError("input.option_missing", name=name)
            continue
        if param.choices and value not in {choice.value for choice in param.choices}:
            raise InputError("input.option_choice", name=name, value=str(value)[:100])
        low, high = param.min_value, param.max_value
        if low is None and high is None:
            continue
        if param.type is discord.AppCommandOptionType.string and isinstance(value, str):
            if not (low or 0) <= len(value) <= (high if high is not None else len(value)):
                raise InputError("input.option_length", name=name, min=low or 0, max=high if high is not None else "∞")
        elif param.type in _NUMBERS and isinstance(value, int | float):
            if (low is not None and value < low) or (high is not None and value > high):
                raise InputError(
                    "input.option_range",
                    name=name,
                    min=low if low is not None else "-∞",
                    max=high if high is not None else "∞",
                )


async def read_image(attachment: discord.Attachment, *, max_bytes: int) -> str:
    """A user's attachment as a data URL, after checking its bytes (not its name); a moderately
    oversized image is shrunk to fit."""
    if attachment.size > max_bytes * SHRINK_FACTOR:
        raise InputError(
            "input.too_large", size_mb=f"{attachment.size / 1048576:.1f}", limit_mb=f"{max_bytes / 1048576:.0f}"
        )
    try:
        data = await attachment.read()
    except discord.HTTPException:
        raise InputError("input.download_failed") from None
    checked = await check_upload(data, max_bytes=max_bytes)
    return data_url(checked.data, checked.mime)


async def read_images(attachments: Sequence[discord.Attachment | None], *, max_bytes: int, max_total: int) -> list[str]:
    """Several attachments as data URLs; also caps the request body the API will receive."""
    images = [await read_image(a, max_bytes=max_bytes) for a in attachments if a is not None]
    total = sum(len(i) * 3 // 4 for i in images)  # decoded size of the base64 payloads
    if total > max_total:
        raise InputError(
            "input.total_too_large", size_mb=f"{total / 1048576:.1f}", limit_mb=f"{max_total / 1048576:.0f}"
        )
    return images


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


async def download_image(fetcher: Fetcher, url: str, *, max_bytes: int) -> str:
    """A URL's image as a data URL: through the guarded fetcher (size-capped, public addresses only),
    then checked and shrunk like an upload."""
    try:
        data = await fetcher.fetch(url, max_bytes=max_bytes * SHRINK_FACTOR)
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
