"""Which place's rules and key apply, and who may act on a task from where.

One answer for every entry point (slash commands, buttons, modals, /show, cancel, delete, the web
editor), so a cog restructure cannot lose a check:

- A server must be approved by the bot's operator (ALLOWED_GUILDS, or `/mjadmin server approve`)
  before anyone there can use the bot; bot owners can always act, so they can approve it.
- A task made in a server is acted on only in that server, or by its owner in the DM it was
  delivered to ("results in my DMs"). A task made in DMs works only for its owner, in DMs.
- A task's follow-ups (U1, V2, remix...) use the task's own key. A key that was removed, or that
  belongs to another server, is never swapped for the bot's default key: the member is told.

Pure checks over small values; the cogs build a `Place` from the interaction and call them.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from bot.errors import NotAllowed
from bot.upstream.keys import key_id_of, split_mode

if TYPE_CHECKING:
    import discord

    from bot.config import Settings
    from bot.storage.protocols import ApprovalStore

#: Seconds a process trusts its copy of the stored approvals.
APPROVALS_TTL = 5.0


class KeyGone(NotAllowed):
    """The key a task was made with no longer exists (or is not this server's)."""

    def __init__(self) -> None:
        super().__init__("access.key_gone")


@dataclass(frozen=True, slots=True)
class Place:
    """Who acts, and where: a server channel, or a DM (guild_id None)."""

    user_id: int
    guild_id: int | None
    channel_id: int | None

    @classmethod
    def of(cls, interaction: discord.Interaction[Any]) -> Place:
        return cls(user_id=interaction.user.id, guild_id=interaction.guild_id, channel_id=interaction.channel_id)

    @property
    def in_dm(self) -> bool:
        return self.guild_id is None


class TaskLike(Protocol):
    """The task fields the checks read (a TaskRecord)."""

    @property
    def user_id(self) -> int: ...
    @property
    def guild_id(self) -> int | None: ...
    @property
    def channel_id(self) -> int: ...
    @property
    def in_dm(self) -> bool: ...


class KeyLike(Protocol):
    @property
    def guild_id(self) -> int | None: ...


class KeyLookup(Protocol):
    """What the key check needs from the KeyRing."""

    def for_upstream(self, upstream: str) -> KeyLike | None: ...


@dataclass(frozen=True, slots=True)
class Approval:
    """Which servers the operator's settings let in: ALLOWED_GUILDS (`*` = every server) and
    DEV_GUILD_ID. Servers a bot owner approved from Discord are stored (see GuildGate)."""

    listed: frozenset[int] = frozenset()
    everyone: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Approval:
        listed = set(settings.allowed_guilds)
        if settings.dev_guild_id:
            listed.add(settings.dev_guild_id)
        return cls(listed=frozenset(listed), everyone=settings.allow_every_guild)

    def allows(self, guild_id: int, approved: Collection[int] = ()) -> bool:
        return self.everyone or guild_id in self.listed or guild_id in approved


class GuildGate:
    """Whether a server may use the bot. Servers not approved are ignored rather than left: leaving
    cannot be undone without a new invite from that server, and a typo in ALLOWED_GUILDS would make
    the bot leave every server at once; ignoring spends nothing and an approval works at once."""

    def __init__(self, approval: Approval, store: ApprovalStore) -> None:
        self.approval = approval
        self._store = store
        self._approved: frozenset[int] = frozenset()
        self._read_at: float | None = None

    async def approved(self) -> frozenset[int]:
        """The stored approvals, reread every APPROVALS_TTL seconds (other processes approve too)."""
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= APPROVALS_TTL:
            self._approved = frozenset(await self._store.approved_guild_ids())
            self._read_at = now
        return self._approved

    async def allows(self, guild_id: int) -> bool:
        if self.approval.allows(guild_id):
            return True
        return guild_id in await self.approved()

    async def check(self, place: Place, *, is_owner: Callable[[], Awaitable[bool]]) -> None:
        """NotAllowed in a server that is not approved, except for bot owners (who approve it)."""
        if place.guild_id is None or await self.allows(place.guild_id):
            return
        if await is_owner():
            return
        raise NotAllowed("access.guild_not_approved")

    async def approve(self, guild_id: int, approved_by: int) -> None:
        await self._store.approve_guild(guild_id, approved_by)
        self._read_at = None

    async def revoke(self, guild_id: int) -> bool:
        """False when the server was not approved from Discord (it may still be in the settings)."""
        revoked = await self._store.revoke_guild(guild_id)
        self._read_at = None
        return revoked


def check_task_access(task: TaskLike, place: Place) -> None:
    """May `place` act on `task` at all (before per-server rules such as owner-only buttons)?

    Raises NotAllowed with a message that names no other server and shows nothing of the task."""
    if task.guild_id is None:
        # Made in DMs: the owner's own, with the bot's DM rules; never pulled into a server.
        if place.user_id != task.user_id:
            raise NotAllowed("access.not_yours")
        if not place.in_dm:
            raise NotAllowed("access.dm_task_in_server")
        return
    if place.guild_id == task.guild_id:
        return
    if task.in_dm and place.in_dm and place.user_id == task.user_id and place.channel_id == task.channel_id:
        # Made in the server, delivered to its owner's DMs: acting there keeps the server's rules.
        return
    raise NotAllowed("access.other_place")


def check_task_key(
    upstream: str, guild_id: int | None, keys: KeyLookup | None, known_upstreams: Collection[str]
) -> None:
    """A task's own key (`upstream`) may still be used for it, in `guild_id` (None: DMs): it exists,
    and belongs to that server or to every server. Raises KeyGone otherwise; never another key."""
    if key_id_of(upstream) is None:
        return  # the .env key (and its fast/relax variants): the operator's, always there
    key = keys.for_upstream(upstream) if keys is not None else None
    if key is None or split_mode(upstream)[0] not in known_upstreams:
        raise KeyGone()
    if key.guild_id is not None and key.guild_id != guild_id:
        raise KeyGone()
