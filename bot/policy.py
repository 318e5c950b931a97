"""Per-guild rules checked before anything is submitted, so a refused request costs nothing.

Channels, NSFW-only, banned words, cooldown, concurrency and the daily quota are pure checks over a
GuildSettings and a Usage snapshot. `Policy` gathers those from the store (concurrency counts the
tasks table's unfinished rows, so limits hold across restarts) and reserves a slot while a submit is
in flight, so two submits at once cannot both slip under a limit.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from bot.access import GuildGate, Place, check_task_access
from bot.errors import NotAllowed

if TYPE_CHECKING:
    import discord

    from bot.models import TaskRecord
    from bot.storage.protocols import RuleStore

DAY = 86400
BUTTON_ACCESS = ("anyone", "owner")
SPEED_MODES = ("", "fast", "relax", "turbo")
MAX_WORDS = 200
MAX_WORD_LENGTH = 60
MAX_CHANNELS = 50
#: Seconds a process trusts its copy of a guild's settings (another bot process may change them).
SETTINGS_TTL = 5.0
#: Seconds after which a submit slot no longer counts: its process died between check and store.
SLOT_LIFETIME = 300.0
#: The guild id that DM submits hold their slots under (no real server has id 0).
DM_RULES = 0


@dataclass(frozen=True, slots=True)
class GuildSettings:
    """A guild's limits and rules; 0 means "no limit" for every number."""

    guild_id: int
    daily_quota: int = 0
    user_concurrent: int = 0
    guild_concurrent: int = 0
    cooldown: int = 0
    allowed_channels: tuple[int, ...] = ()
    button_access: str = "anyone"
    default_mode: str = ""
    banned_words: tuple[str, ...] = ()
    nsfw_only: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> GuildSettings:
        return cls(
            guild_id=int(row["guild_id"]),
            daily_quota=int(row["daily_quota"]),
            user_concurrent=int(row["user_concurrent"]),
            guild_concurrent=int(row["guild_concurrent"]),
            cooldown=int(row["cooldown"]),
            allowed_channels=tuple(int(c) for c in json.loads(row["allowed_channels"] or "[]")),
            button_access=row["button_access"] if row["button_access"] in BUTTON_ACCESS else "anyone",
            default_mode=row["default_mode"] if row["default_mode"] in SPEED_MODES else "",
            banned_words=tuple(str(w) for w in json.loads(row["banned_words"] or "[]")),
            nsfw_only=bool(row["nsfw_only"]),
        )

    def to_values(self) -> dict[str, Any]:
        values = asdict(self)
        del values["guild_id"]
        return values


@dataclass(frozen=True, slots=True)
class OwnerRules:
    """The operator's rules (.env), for where no server admin sets any: commands used in a DM with
    the bot (refused unless DM_COMMANDS, then capped per member per day), and the per-member daily
    cap of servers whose own quota is 0. 0 means "no cap"."""

    dm_commands: bool = False
    dm_daily_quota: int = 10
    default_daily_quota: int = 25

    def dm_settings(self) -> GuildSettings:
        return GuildSettings(DM_RULES, daily_quota=self.dm_daily_quota)

    def effective(self, settings: GuildSettings) -> GuildSettings:
        """The server's rules with the operator's default daily cap where it set none."""
        if settings.daily_quota or not self.default_daily_quota:
            return settings
        return replace(settings, daily_quota=self.default_daily_quota)


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """What the policy needs to know about a channel (threads inherit from their parent)."""

    nsfw: bool = False
    parent_id: int | None = None


@dataclass(frozen=True, slots=True)
class Usage:
    """One user's standing in one guild at a moment."""

    today: int = 0
    running: int = 0
    guild_running: int = 0
    last_submit: float | None = None


# ---- pure checks ---------------------------------------------------------------------------------


def day_start(now: float) -> float:
    """Quotas count per UTC day."""
    return now - (now % DAY)


def discord_time(timestamp: float, style: str = "R") -> str:
    """A Discord timestamp: every reader sees it in their own time zone and language."""
    return f"<t:{int(timestamp)}:{style}>"


def fold_text(text: str) -> str:
    """The form banned words are compared in: NFKC (fullwidth ｇｏｒｅ and ligatures become plain
    letters), format characters dropped (zero-width spaces and joiners, direction marks, soft
    hyphens, tag characters: invisible, so they could hide a word), case folded, spaces collapsed."""
    normal = unicodedata.normalize("NFKC", text)
    visible = "".join(char for char in normal if unicodedata.category(char) != "Cf")
    return " ".join(visible.casefold().split())


def normalize_words(words: Iterable[str]) -> tuple[str, ...]:
    """Folded (see fold_text), trimmed, unique, in the order given."""
    seen: dict[str, None] = {}
    for word in words:
        cleaned = fold_text(word)[:MAX_WORD_LENGTH]
        if cleaned:
            seen.setdefault(cleaned, None)
    return tuple(seen)[:MAX_WORDS]


def split_words(text: str) -> list[str]:
    """Admin input "a, b; c" -> ["a", "b", "c"]."""
    return [part for part in re.split(r"[,;\n]+", text) if part.strip()]


def _word_pattern(word: str) -> re.Pattern[str]:
    escaped = re.escape(word)
    if word.isascii():
        # Whole words only: banning "ass" must not refuse "class".
        return re.compile(rf"(?<!\w){escaped}(?!\w)", re.IGNORECASE)
    # Chinese/Japanese have no spaces between words: match inside text.
    return re.compile(escaped, re.IGNORECASE)


def banned_word_in(prompt: str, words: Iterable[str]) -> str | None:
    """The first banned word the prompt contains (word boundaries, any case), or None. Both sides
    are folded first, so lists saved before folding existed match the same way."""
    folded = fold_text(prompt)
    for word in words:
        target = fold_text(word)
        if target and _word_pattern(target).search(folded):
            return word
    return None


def check_channel(settings: GuildSettings, channel_id: int, info: ChannelInfo | None) -> None:
    """Allowed channels (a thread counts as its parent) and the NSFW-only rule; unknown channels fail closed."""
    if settings.allowed_channels:
        parent = info.parent_id if info is not None else None
        if channel_id not in settings.allowed_channels and parent not in settings.allowed_channels:
            channels = " ".join(f"<#{c}>" for c in settings.allowed_channels[:10])
            raise NotAllowed("policy.channel_not_allowed", channels=channels)
    if settings.nsfw_only and not (info is not None and info.nsfw):
        raise NotAllowed("policy.nsfw_only")


def check_prompt(settings: GuildSettings, prompt: str) -> None:
    word = banned_word_in(prompt, settings.banned_words)
    if word is not None:
        raise NotAllowed("policy.banned_word", word=word)


def check_limits(settings: GuildSettings, usage: Usage, now: float) -> None:
    """Cooldown, then concurrency, then the daily quota; each message says when it clears."""
    if settings.cooldown and usage.last_submit is not None and now - usage.last_submit < settings.cooldown:
        raise NotAllowed("policy.cooldown", when=discord_time(usage.last_submit + settings.cooldown))
    if settings.user_concurrent and usage.running >= settings.user_concurrent:
        raise NotAllowed("policy.user_busy", count=usage.running, limit=settings.user_concurrent)
    if settings.guild_concurrent and usage.guild_running >= settings.guild_concurrent:
        raise NotAllowed("policy.guild_busy", count=usage.guild_running, limit=settings.guild_concurrent)
    if settings.daily_quota and usage.today >= settings.daily_quota:
        raise NotAllowed("policy.quota", limit=settings.daily_quota, when=discord_time(day_start(now) + DAY))


def may_click(settings: GuildSettings, *, user_id: int, owner_id: int, manager: bool) -> bool:
    """Result buttons: anyone, or only the task's owner (server managers always may)."""
    return settings.button_access != "owner" or user_id == owner_id or manager


# ---- the policy service --------------------------------------------------------------------------


class Policy:
    """Guild settings (cached) and the pre-submit check. A command used in a DM (guild None) follows
    the operator's DM rules: refused, or capped per member per day; never "no rules"."""

    def __init__(
        self,
        store: RuleStore,
        channel_info: Callable[[int], ChannelInfo | None] | None = None,
        owner_rules: OwnerRules | None = None,
    ) -> None:
        self._store = store
        self._channel_info = channel_info or (lambda _channel_id: None)
        self.owner_rules = owner_rules or OwnerRules()
        self._cache: dict[int, tuple[float, GuildSettings]] = {}
        self._lock = asyncio.Lock()

    async def settings(self, guild_id: int) -> GuildSettings:
        """What the server's admins set (0 = not set). Cached for SETTINGS_TTL seconds: another bot
        process may change them."""
        cached = self._cache.get(guild_id)
        if cached is not None and time.monotonic() - cached[0] < SETTINGS_TTL:
            return cached[1]
        row = await self._store.guild_settings_row(guild_id)
        settings = GuildSettings.from_row(row) if row else GuildSettings(guild_id)
        self._cache[guild_id] = (time.monotonic(), settings)
        return settings

    async def rules(self, guild_id: int | None) -> GuildSettings:
        """What applies to a submit: the server's settings with the operator's defaults filled in,
        or the DM rules (NotAllowed when DMs are off)."""
        if guild_id is None:
            if not self.owner_rules.dm_commands:
                raise NotAllowed("policy.dm_off")
            return self.owner_rules.dm_settings()
        return self.owner_rules.effective(await self.settings(guild_id))

    async def update(self, guild_id: int, **changes: Any) -> GuildSettings:
        settings = replace(await self.settings(guild_id), **changes)
        await self._store.save_guild_settings(guild_id, settings.to_values())
        self._cache[guild_id] = (time.monotonic(), settings)
        return settings

    async def usage(self, guild_id: int | None, user_id: int, now: float | None = None, *, own_slot: int = 0) -> Usage:
        """Counted from the database: stored tasks, plus submits on their way in any process (their
        slots; `own_slot` is the caller's own, not counted). Guild None counts tasks made in DMs."""
        now = time.time() if now is None else now
        store = self._store
        slot_guild = DM_RULES if guild_id is None else guild_id
        user_pending, guild_pending, pending_since = await store.submit_slot_usage(
            slot_guild, user_id, since=now - SLOT_LIFETIME, exclude=own_slot
        )
        last = await store.last_task_time(guild_id, user_id)
        if pending_since is not None:
            last = max(last or 0.0, pending_since)
        return Usage(
            today=await store.count_guild_tasks(guild_id, user_id=user_id, since=day_start(now)) + user_pending,
            running=await store.count_guild_tasks(guild_id, user_id=user_id, running=True) + user_pending,
            guild_running=await store.count_guild_tasks(guild_id, running=True) + guild_pending,
            last_submit=last,
        )

    @asynccontextmanager
    async def admit(
        self, *, guild_id: int | None, user_id: int, channel_id: int, prompt: str, check_place: bool = True
    ) -> AsyncIterator[GuildSettings]:
        """Check every rule, then hold a slot until the submit is stored (or refused).

        `guild_id` is where the command was used (a DM: None), whatever channel the result goes to;
        `channel_id` likewise. `check_place` False skips the channel rules, for a click on a result
        that was delivered to the member's DMs (the command itself was checked where it was used).

        The slot is a database row taken before counting, so two processes admitting at once each
        see the other's submit: at worst both refuse, never both pass a limit. Within one process
        the lock keeps admissions in turn, so there the first one passes."""
        async with self._lock:
            settings = await self.rules(guild_id)
            if guild_id is not None and check_place:
                check_channel(settings, channel_id, self._channel_info(channel_id))
            check_prompt(settings, prompt)
            slot = await self._store.add_submit_slot(DM_RULES if guild_id is None else guild_id, user_id)
            try:
                now = time.time()
                check_limits(settings, await self.usage(guild_id, user_id, now, own_slot=slot), now)
            except BaseException:
                await self._store.drop_submit_slot(slot)
                raise
        try:
            yield settings
        finally:
            await self._store.drop_submit_slot(slot)

    async def check_prompt(self, guild_id: int | None, prompt: str) -> None:
        """For prompts that reach the API without a new submit (the modal step of a task)."""
        check_prompt(await self.rules(guild_id), prompt)


async def check_click(interaction: discord.Interaction[Any], record: TaskRecord) -> None:
    """The one check every result button runs before doing anything (NotAllowed if refused): the
    task is acted on only where it belongs (bot/access.py), in an approved server, then by whom its
    server allows."""
    place = Place.of(interaction)
    check_task_access(record, place)
    await check_approved(interaction)
    policy: Policy | None = getattr(interaction.client, "policy", None)
    if policy is None or record.guild_id is None or interaction.guild_id is None:
        return  # a DM: check_task_access let only the task's owner through
    settings = await policy.settings(record.guild_id)
    manager = interaction.permissions.manage_guild
    if not may_click(settings, user_id=interaction.user.id, owner_id=record.user_id, manager=manager):
        raise NotAllowed("policy.owner_only")


async def check_approved(interaction: discord.Interaction[Any]) -> None:
    """NotAllowed in a server the operator has not approved (bot owners excepted): what the command
    tree checks for slash commands, for buttons and modals."""
    gate: GuildGate | None = getattr(interaction.client, "gate", None)
    if gate is None:
        return
    client = interaction.client
    await gate.check(Place.of(interaction), is_owner=lambda: client.is_bot_owner(interaction.user))


def channel_info_from(client: discord.Client) -> Callable[[int], ChannelInfo | None]:
    """Channel facts from the gateway cache (no API call on the submit path)."""

    def lookup(channel_id: int) -> ChannelInfo | None:
        channel = client.get_channel(channel_id)
        if channel is None:
            return None
        is_nsfw = getattr(channel, "is_nsfw", None)
        return ChannelInfo(
            nsfw=bool(is_nsfw()) if callable(is_nsfw) else False,
            parent_id=getattr(channel, "parent_id", None),
        )

    return lookup
