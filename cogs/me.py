"""/mj me and /mj history: a member's own usage, quota left and recent tasks (private answers)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import discord
from discord import app_commands
from discord.app_commands import locale_str as _
from discord.ext import commands

from bot import render
from bot.errors import BotError
from bot.i18n import t
from bot.models import FINAL_STATUSES, SUCCESS, TaskRecord
from bot.policy import DAY, day_start, discord_time
from bot.responder import locale_of, reply
from cogs._shared import Interaction

if TYPE_CHECKING:
    from bot.bot import MJBot

HISTORY_SIZE = 10
#: Longest wait for the server's queue in /info (the answer is due within 3 s).
QUEUE_READ_SECONDS = 1.5


def jump_url(record: TaskRecord) -> str | None:
    if record.message_id is None:
        return None
    return f"https://discord.com/channels/{record.guild_id or '@me'}/{record.channel_id}/{record.message_id}"


def _status_icon(record: TaskRecord) -> str:
    if record.status == SUCCESS:
        return "✅"
    if record.status in FINAL_STATUSES:
        return "❌"
    return "⏳"


async def upstream_queue(bot: MJBot, guild_id: int, locale: str) -> str:
    """The server's own queue (all its users) for /info, where it shows one; "" otherwise.

    Only capabilities already probed are used, and the read is bounded, so /info still answers
    within Discord's 3 seconds."""
    chain = bot.keys.chain(guild_id)
    if not chain:
        return ""
    caps = bot.capabilities.known(chain[0])
    if caps is None:
        bot.capabilities.learn_soon(chain[0])  # probed in the background for the next /info
        return ""
    if not caps.queue_source:
        return ""
    try:
        status = await asyncio.wait_for(bot.capabilities.api(chain[0]).queue(caps), QUEUE_READ_SECONDS)
    except (BotError, KeyError, TimeoutError):
        return ""
    if status.capacity:
        return t(
            "info.upstream_queue_capacity",
            locale,
            running=status.running,
            capacity=status.capacity,
            queued=status.queued,
        )
    return t("info.upstream_queue_value", locale, running=status.running, queued=status.queued)


class Me(commands.Cog):
    mj = app_commands.Group(name=_("mj"), description=_("Your own usage and tasks"), guild_only=True)

    def __init__(self, bot: MJBot) -> None:
        self.bot = bot

    async def usage_lines(self, guild_id: int, user_id: int, locale: str) -> list[str]:
        """Today's count, quota left, running tasks and cooldown: shared by /mj me and /info."""
        now = time.time()
        settings = await self.bot.policy.rules(guild_id)  # the operator's default quota included
        usage = await self.bot.policy.usage(guild_id, user_id, now)
        lines = []
        if settings.daily_quota:
            left = max(0, settings.daily_quota - usage.today)
            lines.append(t("me.today", locale, count=usage.today, limit=settings.daily_quota))
            lines.append(t("me.left", locale, left=left, when=discord_time(day_start(now) + DAY)))
        else:
            lines.append(t("me.today_unlimited", locale, count=usage.today))
        if settings.user_concurrent:
            lines.append(t("me.running", locale, count=usage.running, limit=settings.user_concurrent))
        else:
            lines.append(t("me.running_unlimited", locale, count=usage.running))
        if settings.cooldown and usage.last_submit is not None and now - usage.last_submit < settings.cooldown:
            lines.append(t("me.cooldown", locale, when=discord_time(usage.last_submit + settings.cooldown)))
        return lines

    @mj.command(name=_("me"), description=_("Your usage today and what is left of your quota"))
    async def me(self, interaction: Interaction) -> None:
        locale = locale_of(interaction)
        assert interaction.guild_id is not None  # guild_only
        lines = await self.usage_lines(interaction.guild_id, interaction.user.id, locale)
        await reply(interaction, "\n".join([t("me.title", locale), *lines]))

    @app_commands.command(name=_("info"), description=_("Your queue, quota, speed mode and the API key's health"))
    @app_commands.guild_only()
    async def info(self, interaction: Interaction) -> None:
        """Like Midjourney's /info: what is running for you and what you have left."""
        locale = locale_of(interaction)
        assert interaction.guild_id is not None
        bot = self.bot
        running = [r for r in await bot.store.recent_tasks(interaction.user.id, 50) if not r.delivered]
        embed = discord.Embed(title=t("info.title", locale), color=0x5865F2)
        if running:
            queue = []
            for record in running[:10]:
                url = jump_url(record)
                state = render.status_line(record, locale)
                prompt = discord.utils.escape_markdown(render.truncate(" ".join(record.prompt.split()), 50))
                queue.append(f"{state} · {prompt}" + (f" · [{t('me.link_text', locale)}]({url})" if url else ""))
            embed.add_field(
                name=t("info.queue", locale, count=len(running)), value="\n".join(queue)[:1024], inline=False
            )
        else:
            embed.add_field(name=t("info.queue", locale, count=0), value=t("info.queue_empty", locale), inline=False)
        usage = await self.usage_lines(interaction.guild_id, interaction.user.id, locale)
        embed.add_field(name=t("info.usage", locale), value="\n".join(usage)[:1024], inline=False)
        prefs = await bot.store.get_prefs(interaction.user.id)
        settings = await bot.policy.settings(interaction.guild_id)
        mode = prefs.speed or settings.default_mode or bot.settings.api_mode or t("info.server_default", locale)
        embed.add_field(name=t("info.speed", locale), value=mode, inline=True)
        keys = [k for k in bot.keys.visible(interaction.guild_id) if k.enabled]
        if keys:
            healthy = sum(1 for k in keys if k.healthy)
            health = t("info.keys_health", locale, healthy=healthy, total=len(keys))
        else:
            health = t("info.env_key", locale)
        embed.add_field(name=t("info.key", locale), value=health, inline=True)
        queue = await upstream_queue(bot, interaction.guild_id, locale)
        if queue:
            embed.add_field(name=t("info.upstream_queue", locale), value=queue, inline=False)
        await interaction.response.send_message(embed=embed, ephemeral=True)

    @mj.command(name=_("history"), description=_("Your last 10 tasks, with links"))
    async def history(self, interaction: Interaction) -> None:
        locale = locale_of(interaction)
        records = await self.bot.store.recent_tasks(interaction.user.id, HISTORY_SIZE)
        if not records:
            await reply(interaction, t("me.history_empty", locale))
            return
        lines = [t("me.history_title", locale)]
        for record in records:
            url = jump_url(record)
            link = t("me.link", locale, url=url) if url else t("me.no_link", locale)
            prompt = render.truncate(" ".join((record.prompt or "").split()), 60)
            lines.append(
                t(
                    "me.history_line",
                    locale,
                    icon=_status_icon(record),
                    when=discord_time(record.created_at),
                    action=render.action_name(record.action, locale),
                    prompt=discord.utils.escape_markdown(prompt),
                    link=link,
                )
            )
        await reply(interaction, render.truncate("\n".join(lines), 2000))


async def setup(bot: MJBot) -> None:
    await bot.add_cog(Me(bot))
