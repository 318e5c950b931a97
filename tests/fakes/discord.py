"""A fake Discord (REST API + gateway) on 127.0.0.1 for end-to-end tests of discord.py bots.

The unmodified discord.py client talks to it over real HTTP and a real websocket; while the fake
runs only two URLs are re-pointed: ``discord.http.Route.BASE`` and
``discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY`` (both restored by :meth:`FakeDiscord.stop`).

Tests drive the bot the way Discord would (slash commands, button clicks, modal submits, user
messages, gateway drops) and read back everything a user would see (messages with every version,
interaction callbacks, modals, followups) plus a request log for protocol-level assertions.
Payloads follow Discord's documented shapes so that bugs which would break against the real API
(e.g. answering an interaction twice, empty messages, a followup before the initial response)
also fail here, with Discord's status codes and error bodies.

Usage::

    async with FakeDiscord(token="t") as fake:
        bot = MyBot(..., guild_ready_timeout=0.05)   # default 2 s delay before READY
        task = asyncio.create_task(bot.start("t"))
        await fake.wait_for(lambda: bot.is_ready() or task.done())
        handle = await fake.slash("ping", user=fake.member, channel=fake.channel)
        reply = await handle.response()              # InteractionCallback(type=4, message=...)
        click = await fake.click(reply.message, "my:button", user=fake.member)
        ...
        await bot.close()
        await task
        assert fake.unknown_routes == [] and fake.failed_requests == []
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import io
import itertools
import json
import math
import mimetypes
import re
import secrets
import socket
import time
import uuid
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import discord
import discord.gateway
import discord.http
import yarl
from aiohttp import WSMsgType, web

__all__ = [
    "ALL_PERMISSIONS",
    "ComponentRow",
    "FakeAttachment",
    "FakeChannel",
    "FakeDiscord",
    "FakeGuild",
    "FakeMember",
    "FakeMessage",
    "FakeModal",
    "FakeRole",
    "FakeUser",
    "GatewaySession",
    "InteractionCallback",
    "InteractionHandle",
    "MessageVersion",
    "ModalInput",
    "RecordedRequest",
    "flatten_components",
]

DISCORD_EPOCH_MS = 1_420_070_400_000
API_PREFIX = "/api/v10"

ALL_PERMISSIONS: int = discord.Permissions.all().value
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MANAGE_MESSAGES = 1 << 13
ATTACH_FILES = 1 << 15
READ_MESSAGE_HISTORY = 1 << 16

#: What a fresh guild's @everyone role typically allows.
DEFAULT_EVERYONE_PERMISSIONS: int = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    create_public_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    use_external_stickers=True,
    read_message_history=True,
    use_application_commands=True,
    create_instant_invite=True,
    change_nickname=True,
    connect=True,
    speak=True,
).value

#: A typical bot invite: messaging + moderation of its own output, nothing administrative.
DEFAULT_BOT_PERMISSIONS: int = discord.Permissions(
    view_channel=True,
    send_messages=True,
    send_messages_in_threads=True,
    embed_links=True,
    attach_files=True,
    add_reactions=True,
    use_external_emojis=True,
    read_message_history=True,
    manage_messages=True,
    use_application_commands=True,
).value

INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_GUILD_MESSAGE_REACTIONS = 1 << 10
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15

FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_EPHEMERAL = 1 << 6
FLAG_LOADING = 1 << 7
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024

# Component types that carry a user-settable value.
_SELECT_TYPES = {3, 5, 6, 7, 8}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False)


def _json_response(data: Any, status: int, headers: dict[str, str]) -> web.Response:
    # Exactly "application/json" (no charset): discord.py only parses JSON on an exact match.
    return web.Response(
        body=_dumps(data).encode(), status=status, headers={**headers, "Content-Type": "application/json"}
    )


def snowflake_time(snowflake: int) -> datetime:
    """When a snowflake was minted (handy to assert ordering)."""
    return datetime.fromtimestamp(((snowflake >> 22) + DISCORD_EPOCH_MS) / 1000, UTC)


class _Snowflakes:
    """Monotonic snowflakes with real timestamps, so discord.py's ``created_at`` makes sense."""

    def __init__(self) -> None:
        self._last = 0
        self._inc = itertools.count()

    def next(self) -> int:
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        value = (ms << 22) | (1 << 17) | (next(self._inc) & 0xFFF)
        self._last = max(value, self._last + 1)
        return self._last


class _HTTPError(Exception):
    """Raised by route handlers; rendered as Discord's JSON error body."""

    def __init__(self, status: int, message: str, code: int = 0, errors: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {message} (code {code})")
        self.status = status
        self.message = message
        self.code = code
        self.errors = errors

    def body(self) -> dict[str, Any]:
        data: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors:
            data["errors"] = self.errors
        return data


def _form_error(problems: dict[str, tuple[str, str]]) -> _HTTPError:
    """Build Discord's 50035 "Invalid Form Body" error from ``{"a.0.b": (code, message)}``."""
    errors: dict[str, Any] = {}
    for path, (code, message) in problems.items():
        node = errors
        for part in path.split("."):
            node = node.setdefault(part, {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
    return _HTTPError(400, "Invalid Form Body", 50035, errors)


def _unknown(kind: str) -> _HTTPError:
    codes = {
        "Account": 10001,
        "Application": 10002,
        "Channel": 10003,
        "Guild": 10004,
        "Member": 10007,
        "Message": 10008,
        "Role": 10011,
        "User": 10013,
        "Webhook": 10015,
        "interaction": 10062,
        "application command": 10063,
    }
    return _HTTPError(404, f"Unknown {kind}", codes[kind])


# --------------------------------------------------------------------------- world model


@dataclass(eq=False)
class FakeUser:
    """A Discord user account (``bot=True`` for the application's bot user)."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    avatar: str | None = None

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "username": self.username,
            "discriminator": "0",
            "global_name": self.global_name,
            "avatar": self.avatar,
            "public_flags": 0,
            "flags": 0,
            "banner": None,
            "accent_color": None,
            "avatar_decoration_data": None,
        }
        if self.bot:
            data["bot"] = True
        return data


@dataclass(eq=False)
class FakeRole:
    """A guild role; the role whose id equals the guild id is @everyone."""

    id: int
    guild_id: int
    name: str
    permissions: int = 0
    position: int = 0
    managed: bool = False
    bot_id: int | None = None
    color: int = 0
    hoist: bool = False
    mentionable: bool = False

    @property
    def mention(self) -> str:
        return f"<@&{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "name": self.name,
            "color": self.color,
            "colors": {"primary_color": self.color, "secondary_color": None, "tertiary_color": None},
            "hoist": self.hoist,
            "icon": None,
            "unicode_emoji": None,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": self.managed,
            "mentionable": self.mentionable,
            "flags": 0,
        }
        if self.bot_id is not None:
            data["tags"] = {"bot_id": str(self.bot_id)}
        return data


@dataclass(eq=False)
class FakeChannel:
    """A guild text channel (type 0) or a DM channel (type 1, ``guild_id`` None)."""

    id: int
    name: str
    guild_id: int | None
    type: int = 0
    position: int = 0
    topic: str | None = None
    parent_id: int | None = None
    nsfw: bool = False
    #: Discord-shaped overwrites: ``{"id": str, "type": 0 role | 1 member, "allow": str, "deny": str}``.
    overwrites: list[dict[str, Any]] = field(default_factory=list)
    recipients: list[FakeUser] = field(default_factory=list)
    last_message_id: int | None = None

    @property
    def mention(self) -> str:
        return f"<#{self.id}>"

    def to_payload(self) -> dict[str, Any]:
        if self.type == 1:
            return {
                "id": str(self.id),
                "type": 1,
                "last_message_id": str(self.last_message_id) if self.last_message_id else None,
                "recipients": [u.to_payload() for u in self.recipients],
                "flags": 0,
            }
        return {
            "id": str(self.id),
            "type": self.type,
            "guild_id": str(self.guild_id),
            "name": self.name,
            "position": self.position,
            "permission_overwrites": copy.deepcopy(self.overwrites),
            "topic": self.topic,
            "nsfw": self.nsfw,
            "last_message_id": str(self.last_message_id) if self.last_message_id else None,
            "rate_limit_per_user": 0,
            "parent_id": str(self.parent_id) if self.parent_id else None,
            "flags": 0,
        }


@dataclass(eq=False)
class FakeMember:
    """A user's membership in a guild (role ids exclude @everyone, as on Discord)."""

    user: FakeUser
    guild_id: int
    roles: list[int] = field(default_factory=list)
    nick: str | None = None
    joined_at: str = field(default_factory=_now_iso)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def mention(self) -> str:
        return self.user.mention

    def to_payload(self, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nick": self.nick,
            "avatar": None,
            "banner": None,
            "roles": [str(r) for r in self.roles],
            "joined_at": self.joined_at,
            "premium_since": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user.to_payload()
        return data


@dataclass(eq=False)
class FakeGuild:
    """A guild with its roles, channels and members."""

    id: int
    name: str
    owner_id: int
    locale: str = "en-US"
    roles: dict[int, FakeRole] = field(default_factory=dict)
    channels: dict[int, FakeChannel] = field(default_factory=dict)
    members: dict[int, FakeMember] = field(default_factory=dict)

    @property
    def everyone(self) -> FakeRole:
        return self.roles[self.id]

    def permissions_for(self, member: FakeMember, channel: FakeChannel | None = None) -> int:
        """Discord's permission algorithm: base (roles) then channel overwrites."""
        if member.id == self.owner_id:
            return ALL_PERMISSIONS
        perms = self.everyone.permissions
        for role_id in member.roles:
            role = self.roles.get(role_id)
            if role is not None:
                perms |= role.permissions
        if perms & ADMINISTRATOR:
            return ALL_PERMISSIONS
        if channel is None or not channel.overwrites:
            return perms
        by_id = {int(o["id"]): o for o in channel.overwrites}
        everyone = by_id.get(self.id)
        if everyone is not None:
            perms = (perms & ~int(everyone["deny"])) | int(everyone["allow"])
        allow = deny = 0
        for role_id in member.roles:
            ow = by_id.get(role_id)
            if ow is not None and ow.get("type", 0) == 0:
                allow |= int(ow["allow"])
                deny |= int(ow["deny"])
        perms = (perms & ~deny) | allow
        own = by_id.get(member.id)
        if own is not None and own.get("type", 1) == 1:
            perms = (perms & ~int(own["deny"])) | int(own["allow"])
        return perms


@dataclass(eq=False)
class FakeAttachment:
    """A stored file; ``url``/``proxy_url`` point back at the fake, which serves ``data``."""

    id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str | None
    url: str
    proxy_url: str
    description: str | None = None
    ephemeral: bool = False
    width: int | None = None
    height: int | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    def to_payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "filename": self.filename,
            "size": self.size,
            "url": self.url,
            "proxy_url": self.proxy_url,
            "content_type": self.content_type,
        }
        if self.description is not None:
            data["description"] = self.description
        if self.width is not None:
            data["width"] = self.width
            data["height"] = self.height
        if self.ephemeral:
            data["ephemeral"] = True
        return data


class ComponentRow(NamedTuple):
    """One interactive component flattened for assertions (equal to a plain 5-tuple)."""

    custom_id: str | None
    label: str | None
    emoji: str | None
    style: int | None
    disabled: bool


def walk_components(components: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Depth-first over every component (action rows, sections, containers, labels included)."""
    for comp in components:
        yield comp
        yield from walk_components(comp.get("components") or [])
        if isinstance(comp.get("accessory"), dict):
            yield from walk_components([comp["accessory"]])
        if isinstance(comp.get("component"), dict):
            yield from walk_components([comp["component"]])


def _emoji_text(emoji: dict[str, Any] | None) -> str | None:
    if not emoji:
        return None
    if emoji.get("id"):
        prefix = "a" if emoji.get("animated") else ""
        return f"<{prefix}:{emoji.get('name')}:{emoji['id']}>"
    return emoji.get("name")


def flatten_components(components: Iterable[dict[str, Any]]) -> list[ComponentRow]:
    """Buttons and selects as ``(custom_id, label, emoji, style, disabled)`` in display order."""
    rows: list[ComponentRow] = []
    for comp in walk_components(components):
        ctype = comp.get("type")
        if ctype == 2:
            rows.append(
                ComponentRow(
                    comp.get("custom_id"),
                    comp.get("label"),
                    _emoji_text(comp.get("emoji")),
                    comp.get("style"),
                    bool(comp.get("disabled", False)),
                )
            )
        elif ctype in _SELECT_TYPES:
            rows.append(
                ComponentRow(
                    comp.get("custom_id"), comp.get("placeholder"), None, None, bool(comp.get("disabled", False))
                )
            )
    return rows


@dataclass(frozen=True)
class MessageVersion:
    """One state of a message (creation or an edit), as a user saw it."""

    content: str
    embeds: list[dict[str, Any]]
    components: list[dict[str, Any]]
    attachments: list[FakeAttachment]
    flags: int
    edited_timestamp: str | None

    @property
    def buttons(self) -> list[ComponentRow]:
        return flatten_components(self.components)


@dataclass(eq=False)
class FakeMessage:
    """A message as stored by the fake; ``history`` holds every version (first = as created)."""

    id: int
    channel_id: int
    guild_id: int | None
    author: FakeUser
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[FakeAttachment] = field(default_factory=list)
    flags: int = 0
    type: int = 0
    tts: bool = False
    timestamp: str = field(default_factory=_now_iso)
    edited_timestamp: str | None = None
    message_reference: dict[str, Any] | None = None
    referenced: FakeMessage | None = field(default=None, repr=False)
    webhook_id: int | None = None
    application_id: int | None = None
    interaction_metadata: dict[str, Any] | None = None
    #: ``"channel"`` (bot REST), ``"interaction"`` (callback/@original), ``"followup"`` or ``"user"``.
    source: str = "channel"
    interaction_id: int | None = None
    #: For ephemeral messages: the only user who can see (and click) it.
    visible_to: int | None = None
    deleted: bool = False
    reactions: dict[str, set[int]] = field(default_factory=dict)
    mentions: list[FakeUser] = field(default_factory=list, repr=False)
    history: list[MessageVersion] = field(default_factory=list, repr=False)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & FLAG_EPHEMERAL)

    @property
    def loading(self) -> bool:
        """True while a deferred ("Bot is thinking...") response has not been filled in."""
        return bool(self.flags & FLAG_LOADING)

    @property
    def buttons(self) -> list[ComponentRow]:
        return flatten_components(self.components)

    @property
    def embed(self) -> dict[str, Any] | None:
        return self.embeds[0] if self.embeds else None

    def component(self, custom_id: str) -> dict[str, Any] | None:
        return next((c for c in walk_components(self.components) if c.get("custom_id") == custom_id), None)

    def attachment(self, filename: str) -> FakeAttachment:
        return next(a for a in self.attachments if a.filename == filename)

    @property
    def reply_to(self) -> int | None:
        """The message this public message shows as answering: its reply reference, or, for one
        created through a button's or form's interaction (response or followup), the message that
        held the component (`interaction_metadata.interacted_message_id`; Discord's clients draw
        both alike). None for ephemeral messages: only their clicker sees them."""
        if self.ephemeral:
            return None
        if self.message_reference is not None:
            return int(self.message_reference["message_id"])
        interacted = (self.interaction_metadata or {}).get("interacted_message_id")
        return int(interacted) if interacted is not None else None

    def text(self) -> str:
        """Everything readable: content, embed texts and components-v2 text displays."""
        parts = [self.content] if self.content else []
        for e in self.embeds:
            parts += [e.get("author", {}).get("name"), e.get("title"), e.get("description")]
            for f in e.get("fields", []):
                parts += [f.get("name"), f.get("value")]
            parts.append(e.get("footer", {}).get("text"))
        parts += [c.get("content") for c in walk_components(self.components) if c.get("type") == 10]
        return "\n".join(p for p in parts if p)

    def _snapshot(self) -> None:
        self.history.append(
            MessageVersion(
                self.content,
                copy.deepcopy(self.embeds),
                copy.deepcopy(self.components),
                list(self.attachments),
                self.flags,
                self.edited_timestamp,
            )
        )

    def to_payload(self, *, nested: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": self.author.to_payload(),
            "content": self.content,
            "timestamp": self.timestamp,
            "edited_timestamp": self.edited_timestamp,
            "tts": self.tts,
            "mention_everyone": False,
            "mentions": [u.to_payload() for u in self.mentions],
            "mention_roles": re.findall(r"<@&(\d+)>", self.content),
            "attachments": [a.to_payload() for a in self.attachments],
            "embeds": copy.deepcopy(self.embeds),
            "components": copy.deepcopy(self.components),
            "reactions": [
                {
                    "count": len(users),
                    "count_details": {"burst": 0, "normal": len(users)},
                    "me": False,
                    "me_burst": False,
                    "burst_colors": [],
                    "emoji": {"id": None, "name": emoji},
                }
                for emoji, users in self.reactions.items()
                if users
            ],
            "pinned": False,
            "type": self.type,
            "flags": self.flags,
        }
        if self.webhook_id is not None:
            data["webhook_id"] = str(self.webhook_id)
        if self.application_id is not None:
            data["application_id"] = str(self.application_id)
        if self.interaction_metadata is not None:
            data["interaction_metadata"] = copy.deepcopy(self.interaction_metadata)
        if self.message_reference is not None:
            data["message_reference"] = dict(self.message_reference)
            if not nested:
                data["referenced_message"] = (
                    self.referenced.to_payload(nested=True)
                    if self.referenced is not None and not self.referenced.deleted
                    else None
                )
        return data


@dataclass
class ModalInput:
    """One field of a modal the bot opened (text input, select, checkbox, upload...)."""

    type: int
    custom_id: str | None
    label: str | None
    style: int | None = None
    value: str | None = None
    placeholder: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    required: bool = True
    description: str | None = None
    options: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class FakeModal:
    """A modal shown to the user by an interaction callback of type 9."""

    custom_id: str
    title: str
    components: list[dict[str, Any]]
    inputs: list[ModalInput]
    interaction_id: int | None = None

    def input(self, key: str) -> ModalInput:
        """Find a field by custom_id or label."""
        for item in self.inputs:
            if key in (item.custom_id, item.label):
                return item
        raise KeyError(f"modal {self.custom_id!r} has no input {key!r}: {[i.label for i in self.inputs]}")

    @classmethod
    def from_payload(cls, data: dict[str, Any], interaction_id: int | None = None) -> FakeModal:
        inputs: list[ModalInput] = []

        def add(comp: dict[str, Any], label: str | None, description: str | None) -> None:
            if comp.get("type") == 10:
                return
            inputs.append(
                ModalInput(
                    type=comp.get("type", 0),
                    custom_id=comp.get("custom_id"),
                    label=label if label is not None else comp.get("label"),
                    style=comp.get("style"),
                    value=comp.get("value"),
                    placeholder=comp.get("placeholder"),
                    min_length=comp.get("min_length", comp.get("min_values")),
                    max_length=comp.get("max_length", comp.get("max_values")),
                    required=comp.get("required", True),
                    description=description,
                    options=list(comp.get("options") or []),
                )
            )

        for comp in data.get("components", []):
            if comp.get("type") == 1:
                for child in comp.get("components", []):
                    add(child, None, None)
            elif comp.get("type") == 18:
                add(comp["component"], comp.get("label"), comp.get("description"))
        return cls(
            custom_id=data.get("custom_id", ""),
            title=data.get("title", ""),
            components=data.get("components", []),
            inputs=inputs,
            interaction_id=interaction_id,
        )


@dataclass
class InteractionCallback:
    """What the bot answered to an interaction (POST /interactions/{id}/{token}/callback)."""

    interaction_id: int
    token: str = field(repr=False)
    type: int
    data: dict[str, Any]
    #: Seconds between INTERACTION_CREATE and the callback (Discord allows 3).
    latency: float
    files: list[FakeAttachment] = field(default_factory=list)
    message: FakeMessage | None = None
    modal: FakeModal | None = None


@dataclass
class RecordedRequest:
    """One REST request as received (Authorization header dropped)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(repr=False)
    json: Any = None
    files: list[tuple[str, str, int]] = field(default_factory=list)
    status: int = 0
    #: True when the answer came from ``rate_limit_next``/``fail_next``.
    injected: bool = False
    #: ``time.monotonic()`` when the request arrived.
    at: float = field(default_factory=time.monotonic)

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class _Upload:
    index: int
    filename: str
    data: bytes
    content_type: str | None


@dataclass
class _Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    json: Any
    files: list[_Upload]


@dataclass
class _Fault:
    match: str
    count: int
    status: int
    body: dict[str, Any]
    retry_after: float = 0.0
    global_: bool = False


@dataclass
class _RouteDef:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[[_Request], Awaitable[Any]]
    auth: bool


# --------------------------------------------------------------------------- gateway


class _Connection:
    """One websocket; serialises sends and owns the zlib-stream compressor."""

    def __init__(self, ws: web.WebSocketResponse, *, compress: bool, path: str) -> None:
        self.ws = ws
        self.path = path
        self._zlib = zlib.compressobj() if compress else None
        self._lock = asyncio.Lock()
        self.session: GatewaySession | None = None
        self.closed_by_server = False

    async def send(self, payload: dict[str, Any]) -> bool:
        text = _dumps(payload)
        async with self._lock:
            if self.ws.closed:
                return False
            try:
                if self._zlib is not None:
                    data = self._zlib.compress(text.encode()) + self._zlib.flush(zlib.Z_SYNC_FLUSH)
                    await self.ws.send_bytes(data)
                else:
                    await self.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return False
        return True

    async def close(self, code: int, message: str = "") -> None:
        self.closed_by_server = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(code=code, message=message.encode()), 2.0)


@dataclass(eq=False)
class GatewaySession:
    """A gateway session (survives reconnects via RESUME); events are buffered for replay."""

    session_id: str
    shard_id: int
    shard_count: int
    intents: int
    identify: dict[str, Any] = field(repr=False)
    seq: int = 0
    resumable: bool = True
    resumes: int = 0
    replayed: int = 0
    buffer: list[dict[str, Any]] = field(default_factory=list, repr=False)
    conn: _Connection | None = field(default=None, repr=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def shard(self) -> tuple[int, int]:
        return (self.shard_id, self.shard_count)

    @property
    def connected(self) -> bool:
        return self.conn is not None and not self.conn.ws.closed

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Dispatch payloads sent on this session (optionally only event ``name``)."""
        return [p for p in self.buffer if name is None or p["t"] == name]


# --------------------------------------------------------------------------- interactions


@dataclass(eq=False)
class InteractionHandle:
    """An interaction the fake delivered; follows its callback, @original message and followups."""

    fake: FakeDiscord = field(repr=False)
    id: int
    token: str = field(repr=False)
    type: int
    payload: dict[str, Any] = field(repr=False)
    user: FakeUser
    channel_id: int
    guild_id: int | None
    #: The message a component click / component-opened modal came from.
    message: FakeMessage | None = field(default=None, repr=False)
    created_at: float = 0.0
    callback: InteractionCallback | None = None
    #: The @original message (created by callback 4/5, or the component's message for 6/7).
    original: FakeMessage | None = field(default=None, repr=False)
    followups: list[FakeMessage] = field(default_factory=list, repr=False)

    @property
    def data(self) -> dict[str, Any]:
        return self.payload.get("data", {})

    @property
    def modal(self) -> FakeModal | None:
        return self.callback.modal if self.callback is not None else None

    async def response(self, timeout: float = 5.0) -> InteractionCallback:  # noqa: ASYNC109
        """Wait for the bot's interaction callback (type + data)."""
        return await self.fake.wait_for(lambda: self.callback, timeout=timeout, what=f"a callback to {self!r}")

    async def wait_original(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        *,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> FakeMessage:
        """Wait until @original exists, is no longer "thinking" and matches ``predicate``."""

        def check() -> FakeMessage | None:
            msg = self.original
            if msg is None or msg.loading or (predicate is not None and not predicate(msg)):
                return None
            return msg

        return await self.fake.wait_for(check, timeout=timeout, what=f"@original of {self!r}")

    async def wait_followups(self, count: int = 1, *, timeout: float = 5.0) -> list[FakeMessage]:  # noqa: ASYNC109
        await self.fake.wait_for(lambda: len(self.followups) >= count, timeout=timeout, what="followups")
        return list(self.followups)

    async def submit_modal(
        self, values: dict[str, Any], *, user: FakeUser | FakeMember | int | None = None, force: bool = False
    ) -> InteractionHandle:
        """Fill in and submit the modal this interaction's callback opened."""
        modal = self.modal
        if modal is None:
            raise ValueError(f"{self!r} did not answer with a modal (callback: {self.callback!r})")
        return await self.fake.submit_modal(
            modal.custom_id,
            values,
            user=user if user is not None else self.user,
            channel=self.channel_id,
            message=self.message,
            force=force,
        )


# --------------------------------------------------------------------------- the fake


class FakeDiscord:
    """Discord's REST API and gateway for one bot application, in-process on 127.0.0.1.

    Default world: guild ``guild`` owned by ``owner``; ``admin`` has a role with Manage Server,
    ``member`` has only @everyone; text channels ``channel`` (#general) and ``channel2`` (#random).
    """

    def __init__(
        self,
        *,
        token: str = "fake-bot-token",
        bot_id: int | None = None,
        application_id: int | None = None,
        bot_name: str = "FakeBot",
        guild_id: int | None = None,
        guild_name: str = "Fake Guild",
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        bot_permissions: int = DEFAULT_BOT_PERMISSIONS,
        application_flags: int = 0,
        heartbeat_interval: float = 41.25,
        recommended_shards: int = 1,
        gateway_compression: bool = True,
        interaction_timeout: float | None = 3.0,
        strict: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.host = host
        self._requested_port = port
        self.port = 0
        self.application_flags = application_flags
        self.heartbeat_interval = heartbeat_interval
        self.recommended_shards = recommended_shards
        self.gateway_compression = gateway_compression
        #: Seconds the bot has to answer an interaction (Discord: 3); None disables the check.
        self.interaction_timeout = interaction_timeout
        #: Validate payloads like Discord does (lengths, empty messages, duplicate custom_ids...).
        self.strict = strict
        self.bot_permissions = bot_permissions
        #: When False, heartbeats are not acknowledged (zombie connection tests).
        self.ack_heartbeats = True

        self._ids = _Snowflakes()
        self.bot_user = FakeUser(bot_id or self._ids.next(), bot_name, bot=True)
        self.application_id = application_id or self.bot_user.id

        # recorded state
        self.messages: dict[int, FakeMessage] = {}
        self.attachments: dict[int, FakeAttachment] = {}
        #: Every synced application command (guild commands carry ``guild_id``).
        self.commands: list[dict[str, Any]] = []
        self.interactions: dict[int, InteractionHandle] = {}
        self._by_token: dict[str, InteractionHandle] = {}
        self.interaction_callbacks: list[InteractionCallback] = []
        self.followups: list[FakeMessage] = []
        self.modals: list[FakeModal] = []
        self.requests: list[RecordedRequest] = []
        self.unknown_routes: list[str] = []
        self.sessions: list[GatewaySession] = []
        #: ``(path, query)`` of every gateway websocket opened (``/gateway`` or ``/gateway-resume``).
        self.gateway_connections: list[tuple[str, dict[str, str]]] = []
        #: Non-dispatch gateway payloads received from the bot (op 2 tokens redacted).
        self.gateway_received: list[dict[str, Any]] = []
        self.presence_updates: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.rate_limits_sent = 0
        self.failures_sent = 0
        #: An interaction token's life (Discord: 15 minutes); after it, webhook routes answer 401 (50027).
        self.interaction_token_seconds = 900.0

        self._faults: list[_Fault] = []
        self._channel_limit: tuple[int, float] | None = None
        self._channel_buckets: dict[str, list[float]] = {}
        self._routes: list[_RouteDef] = []
        self._connections: set[_Connection] = set()
        self._background: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._saved_urls: tuple[str, yarl.URL] | None = None

        # world
        self.users: dict[int, FakeUser] = {self.bot_user.id: self.bot_user}
        self.guilds: dict[int, FakeGuild] = {}
        self.channels: dict[int, FakeChannel] = {}
        owner_user = self.add_user("owner", global_name="Guild Owner")
        self.guild = self.add_guild(
            guild_name, owner=owner_user, id=guild_id, everyone_permissions=everyone_permissions
        )
        self.owner = self.guild.members[owner_user.id]
        self.admin = self.add_member("admin", roles=[self.add_role("Admin", MANAGE_GUILD)], global_name="Admin")
        self.member = self.add_member("member", global_name="Plain Member")
        self.channel = self.add_channel("general")
        self.channel2 = self.add_channel("random")

        self._build_routes()

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> None:
        """Bind the server and point discord.py's REST base and gateway URL at it."""
        if self._runner is not None:
            return
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_get("/gateway", self._gateway_handler)
        app.router.add_get("/gateway-resume", self._gateway_handler)
        app.router.add_get("/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_get("/media/attachments/{channel_id}/{attachment_id}/{filename}", self._serve_attachment)
        app.router.add_route("*", "/{tail:.*}", self._api_handler)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        self.port = sock.getsockname()[1]
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner
        self._saved_urls = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = self.api_base
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway_url)

    async def stop(self) -> None:
        """Close gateway sockets, stop the server and restore discord.py's URLs."""
        if self._runner is None:
            return
        for conn in list(self._connections):
            await conn.close(1001, "fake discord stopping")
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        await self._runner.cleanup()
        self._runner = None
        if self._saved_urls is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved_urls
            self._saved_urls = None

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ world helpers

    def new_id(self) -> int:
        return self._ids.next()

    @staticmethod
    def snowflake_for_shard(shard_id: int, shard_count: int, *, base: int | None = None) -> int:
        """A guild id that Discord routes to ``shard_id`` ((id >> 22) % shard_count)."""
        value = base if base is not None else (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        while (value >> 22) % shard_count != shard_id:
            value += 1 << 22
        return value

    @staticmethod
    def shard_for(guild_id: int, shard_count: int) -> int:
        return (guild_id >> 22) % shard_count

    def add_user(
        self, username: str, *, id: int | None = None, global_name: str | None = None, bot: bool = False
    ) -> FakeUser:
        user = FakeUser(id or self.new_id(), username, global_name=global_name, bot=bot)
        self.users[user.id] = user
        return user

    def add_guild(
        self,
        name: str,
        *,
        owner: FakeUser | None = None,
        id: int | None = None,
        everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS,
        locale: str = "en-US",
    ) -> FakeGuild:
        """Create a guild the bot is in (with @everyone, a managed bot role and the bot member)."""
        owner = owner or self.add_user(f"owner-{len(self.guilds)}")
        guild = FakeGuild(id or self.new_id(), name, owner.id, locale=locale)
        guild.roles[guild.id] = FakeRole(guild.id, guild.id, "@everyone", everyone_permissions)
        bot_role = FakeRole(
            self.new_id(),
            guild.id,
            self.bot_user.username,
            self.bot_permissions,
            1,
            managed=True,
            bot_id=self.bot_user.id,
        )
        guild.roles[bot_role.id] = bot_role
        guild.members[owner.id] = FakeMember(owner, guild.id)
        guild.members[self.bot_user.id] = FakeMember(self.bot_user, guild.id, [bot_role.id])
        self.guilds[guild.id] = guild
        if self.running:
            for sess in self._sessions_for(guild.id):
                # A join, as Discord sends it: no "unavailable" key (discord.py's on_guild_join).
                payload = self._guild_create_payload(guild, sess)
                del payload["unavailable"]
                self._spawn(self._send_dispatch(sess, "GUILD_CREATE", payload))
        return guild

    def add_role(self, name: str, permissions: int = 0, *, guild: FakeGuild | None = None) -> FakeRole:
        guild = guild or self.guild
        role = FakeRole(self.new_id(), guild.id, name, permissions, position=len(guild.roles))
        guild.roles[role.id] = role
        self._background_dispatch("GUILD_ROLE_CREATE", {"guild_id": str(guild.id), "role": role.to_payload()}, guild.id)
        return role

    def add_member(
        self,
        user: FakeUser | str,
        *,
        guild: FakeGuild | None = None,
        roles: Sequence[FakeRole | int] = (),
        permissions: int | None = None,
        nick: str | None = None,
        global_name: str | None = None,
    ) -> FakeMember:
        """Add a user (created from a name if needed) to a guild; ``permissions`` adds a dedicated role."""
        guild = guild or self.guild
        if isinstance(user, str):
            user = self.add_user(user, global_name=global_name)
        role_ids = [r.id if isinstance(r, FakeRole) else int(r) for r in roles]
        if permissions is not None:
            role_ids.append(self.add_role(f"{user.username}-perms", permissions, guild=guild).id)
        member = FakeMember(user, guild.id, role_ids, nick=nick)
        guild.members[user.id] = member
        data = {"guild_id": str(guild.id), **member.to_payload()}
        self._background_dispatch("GUILD_MEMBER_ADD", data, guild.id, intent=INTENT_GUILD_MEMBERS)
        return member

    def add_channel(
        self,
        name: str,
        *,
        guild: FakeGuild | None = None,
        type: int = 0,
        topic: str | None = None,
        overwrites: Sequence[dict[str, Any]] = (),
    ) -> FakeChannel:
        guild = guild or self.guild
        channel = FakeChannel(
            self.new_id(),
            name,
            guild.id,
            type=type,
            position=len(guild.channels),
            topic=topic,
            overwrites=list(overwrites),
        )
        guild.channels[channel.id] = channel
        self.channels[channel.id] = channel
        self._background_dispatch("CHANNEL_CREATE", channel.to_payload(), guild.id)
        return channel

    def dm_channel(self, user: FakeUser | FakeMember | int) -> FakeChannel:
        """The DM channel between the bot and ``user`` (created on first use)."""
        target = self._user(user)
        for channel in self.channels.values():
            if channel.type == 1 and channel.recipients and channel.recipients[0].id == target.id:
                return channel
        channel = FakeChannel(self.new_id(), "", None, type=1, recipients=[target])
        self.channels[channel.id] = channel
        return channel

    def permissions_of(self, user: FakeUser | FakeMember | int, channel: FakeChannel | int | None = None) -> int:
        target = self._user(user)
        chan = self._channel(channel) if channel is not None else None
        guild = self.guilds[chan.guild_id] if chan is not None and chan.guild_id else self.guild
        if chan is not None and chan.guild_id is None:
            return discord.Permissions.text().value
        return guild.permissions_for(self._member(guild, target), chan)

    def _user(self, user: FakeUser | FakeMember | int) -> FakeUser:
        if isinstance(user, FakeMember):
            return user.user
        if isinstance(user, FakeUser):
            return user
        return self.users[int(user)]

    def _member(self, guild: FakeGuild, user: FakeUser) -> FakeMember:
        try:
            return guild.members[user.id]
        except KeyError:
            raise ValueError(f"{user.username} is not a member of guild {guild.name}") from None

    def _channel(self, channel: FakeChannel | int) -> FakeChannel:
        if isinstance(channel, FakeChannel):
            return channel
        return self.channels[int(channel)]

    def _message(self, message: FakeMessage | int) -> FakeMessage:
        return self.messages[message if isinstance(message, int) else message.id]

    # ------------------------------------------------------------------ recording helpers

    def channel_messages(self, channel: FakeChannel | int, *, include_deleted: bool = False) -> list[FakeMessage]:
        """Messages in a channel, oldest first (ephemeral ones included: the user saw them)."""
        cid = channel.id if isinstance(channel, FakeChannel) else int(channel)
        return sorted(
            (m for m in self.messages.values() if m.channel_id == cid and (include_deleted or not m.deleted)),
            key=lambda m: m.id,
        )

    def bot_messages(self) -> list[FakeMessage]:
        return sorted((m for m in self.messages.values() if m.author is self.bot_user), key=lambda m: m.id)

    @property
    def failed_requests(self) -> list[RecordedRequest]:
        """Requests Discord would have rejected (4xx/5xx) that were not injected faults."""
        return [r for r in self.requests if r.status >= 400 and not r.injected]

    def command(self, name: str, *, guild: FakeGuild | int | None = None, type: int = 1) -> dict[str, Any] | None:
        gid = None if guild is None else (guild.id if isinstance(guild, FakeGuild) else int(guild))
        for cmd in self.commands:
            if cmd["name"] == name and cmd.get("type", 1) == type and _opt_int(cmd.get("guild_id")) == gid:
                return cmd
        return None

    def _notify(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 10.0,  # noqa: ASYNC109
        *,
        what: str | None = None,
    ) -> Any:
        """Wait until ``predicate()`` is truthy and return its value.

        Re-evaluated on every change the fake records (and every 50 ms, so predicates may also
        look at the bot's own state).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            result = predicate()
            if result:
                return result
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.05))

    async def wait_for_message(
        self,
        predicate: Callable[[FakeMessage], bool] | None = None,
        *,
        channel: FakeChannel | int | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> FakeMessage:
        """The newest non-deleted message (in ``channel``) matching ``predicate``."""

        def check() -> FakeMessage | None:
            pool = (
                self.channel_messages(channel)
                if channel is not None
                else sorted(self.messages.values(), key=lambda m: m.id)
            )
            for msg in reversed(pool):
                if not msg.deleted and (predicate is None or predicate(msg)):
                    return msg
            return None

        return await self.wait_for(check, timeout, what="a matching message")

    # ------------------------------------------------------------------ fault knobs

    def rate_limit_next(
        self, route_substring: str, count: int = 1, retry_after: float = 0.2, global_: bool = False
    ) -> None:
        """Answer the next ``count`` requests whose ``"METHOD /path"`` contains the substring with 429."""
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": global_}
        if not global_:
            body["code"] = 0
        self._faults.append(_Fault(route_substring, count, 429, body, retry_after, global_))

    def fail_next(
        self, route_substring: str, status: int = 500, count: int = 1, body: dict[str, Any] | None = None
    ) -> None:
        """Answer the next ``count`` matching requests with ``status`` (discord.py retries 500/502/504)."""
        reason = {500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable", 403: "Forbidden"}
        body = body or {"message": f"{status}: {reason.get(status, 'Error')}", "code": 0}
        self._faults.append(_Fault(route_substring, count, status, body))

    def limit_channel_writes(self, limit: int = 5, window: float = 5.0) -> None:
        """Enforce Discord's per-channel buckets on message writes: ``limit`` POSTs (and separately
        PATCHes, DELETEs) per ``window`` seconds per channel, announced in X-RateLimit headers; one
        more is answered 429 (counted in ``rate_limits_sent``, not marked injected)."""
        self._channel_limit = (limit, window)
        self._channel_buckets.clear()

    def _channel_bucket(self, method: str, path: str, headers: dict[str, str]) -> _Fault | None:
        """Count a message write against its channel's bucket: a 429 fault when it is empty."""
        match = re.fullmatch(r"/channels/(\d+)/messages(/\d+)?", path)
        if self._channel_limit is None or match is None or method not in ("POST", "PATCH", "DELETE"):
            return None
        limit, window = self._channel_limit
        key = f"{method} {match.group(1)}"
        now = time.time()
        bucket = self._channel_buckets.get(key)
        if bucket is None or now >= bucket[0]:
            bucket = self._channel_buckets[key] = [now + window, float(limit)]
        reset_after = max(0.0, bucket[0] - now)
        headers.update(
            {
                "X-RateLimit-Limit": str(limit),
                "X-RateLimit-Reset": f"{bucket[0]:.3f}",
                "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": hashlib.sha1(f"{method} channel-messages".encode()).hexdigest()[:16],
            }
        )
        if bucket[1] <= 0:
            headers["X-RateLimit-Remaining"] = "0"
            body = {"message": "You are being rate limited.", "retry_after": reset_after, "global": False, "code": 0}
            return _Fault(key, 0, 429, body, reset_after)
        bucket[1] -= 1
        headers["X-RateLimit-Remaining"] = str(int(bucket[1]))
        return None

    def _take_fault(self, route: str) -> _Fault | None:
        for fault in self._faults:
            if fault.count > 0 and fault.match in route:
                fault.count -= 1
                return fault
        return None

    # ------------------------------------------------------------------ gateway

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _background_dispatch(
        self, event: str, data: dict[str, Any], guild_id: int, *, intent: int = INTENT_GUILDS
    ) -> None:
        """World changes made after start reach connected sessions like on Discord."""
        if self.running and self.sessions:
            self._spawn(self.dispatch(event, data, guild_id=guild_id, intent=intent))

    def _sessions_for(self, guild_id: int | None) -> list[GatewaySession]:
        """Live (or resumable) sessions that receive events of ``guild_id`` (None: shard 0)."""
        out = []
        for sess in self.sessions:
            if not sess.resumable:
                continue
            shard = 0 if guild_id is None else self.shard_for(guild_id, sess.shard_count)
            if shard == sess.shard_id:
                out.append(sess)
        return out

    @property
    def active_sessions(self) -> list[GatewaySession]:
        return [s for s in self.sessions if s.resumable]

    @property
    def identifies(self) -> list[dict[str, Any]]:
        """IDENTIFY payloads received (token redacted), e.g. to check ``shard``/``intents``."""
        return [p["d"] for p in self.gateway_received if p.get("op") == 2]

    @property
    def resume_count(self) -> int:
        return sum(s.resumes for s in self.sessions)

    async def dispatch(
        self,
        event_name: str,
        data: dict[str, Any],
        *,
        guild_id: int | None = None,
        shard_id: int | None = None,
        intent: int | None = None,
        transform: Callable[[GatewaySession, dict[str, Any]], dict[str, Any]] | None = None,
    ) -> int:
        """Send a DISPATCH event; returns how many sessions got it (buffered if disconnected).

        Routed like Discord: guild events (``guild_id`` or ``data["guild_id"]``) go to shard
        ``(guild_id >> 22) % shard_count``, others to shard 0. ``intent`` drops the event for
        sessions that did not identify with it.
        """
        if guild_id is None and data.get("guild_id") is not None:
            guild_id = int(data["guild_id"])
        sent = 0
        for sess in self._sessions_for(guild_id):
            if shard_id is not None and sess.shard_id != shard_id:
                continue
            if intent is not None and not sess.intents & intent:
                continue
            payload = transform(sess, data) if transform is not None else data
            await self._send_dispatch(sess, event_name, payload)
            sent += 1
        self._notify()
        return sent

    async def drop_gateway(self, *, code: int = 4000, shard_id: int | None = None) -> int:
        """Close live gateway sockets without ending the sessions, so the bot RESUMEs."""
        dropped = 0
        for sess in self.sessions:
            if sess.conn is None or (shard_id is not None and sess.shard_id != shard_id):
                continue
            async with sess.lock:
                conn, sess.conn = sess.conn, None
            if conn is not None:
                await conn.close(code, "fake discord dropped the connection")
                dropped += 1
        self._notify()
        return dropped

    async def send_reconnect(self, *, shard_id: int | None = None) -> None:
        """Opcode 7 RECONNECT: the bot should reconnect and resume."""
        for sess in self.sessions:
            if sess.conn is not None and (shard_id is None or sess.shard_id == shard_id):
                await sess.conn.send({"op": 7, "d": None, "s": None, "t": None})

    async def invalidate_session(self, *, resumable: bool = False, shard_id: int | None = None) -> None:
        """Opcode 9 INVALID_SESSION: with ``resumable=False`` the bot must IDENTIFY again."""
        for sess in self.sessions:
            if sess.conn is not None and (shard_id is None or sess.shard_id == shard_id):
                if not resumable:
                    sess.resumable = False
                await sess.conn.send({"op": 9, "d": resumable, "s": None, "t": None})

    async def _send_dispatch(self, sess: GatewaySession, event: str, data: dict[str, Any]) -> None:
        async with sess.lock:
            await self._send_dispatch_locked(sess, event, data)

    async def _send_dispatch_locked(self, sess: GatewaySession, event: str, data: dict[str, Any]) -> None:
        sess.seq += 1
        payload = {"op": 0, "t": event, "s": sess.seq, "d": copy.deepcopy(data)}
        sess.buffer.append(payload)
        if sess.conn is not None:
            await sess.conn.send(payload)

    async def _gateway_handler(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, compress=False, max_msg_size=0, timeout=2.0)
        await ws.prepare(request)
        self.gateway_connections.append((request.path, dict(request.query)))
        compress = self.gateway_compression and request.query.get("compress") == "zlib-stream"
        conn = _Connection(ws, compress=compress, path=request.path)
        self._connections.add(conn)
        self._notify()
        try:
            if request.query.get("v", "10") != "10":
                await conn.close(4012, "Invalid API version")
                return ws
            if request.query.get("encoding", "json") != "json":
                await conn.close(4002, "Decode error")
                return ws
            hello = {"heartbeat_interval": int(self.heartbeat_interval * 1000), "_trace": ["fake-gateway"]}
            await conn.send({"op": 10, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    try:
                        payload = json.loads(msg.data)
                    except ValueError:
                        await conn.close(4002, "Decode error")
                        break
                    await self._on_gateway_payload(conn, payload)
                elif msg.type is WSMsgType.BINARY:
                    await conn.close(4002, "Decode error")
                    break
        finally:
            self._connections.discard(conn)
            sess = conn.session
            if sess is not None and sess.conn is conn:
                sess.conn = None
                # A clean close by the client (1000/1001) ends the session, as on Discord.
                if not conn.closed_by_server and ws.close_code in (1000, 1001):
                    sess.resumable = False
            self._notify()
        return ws

    async def _on_gateway_payload(self, conn: _Connection, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        data = payload.get("d")
        if op == 1:
            self.heartbeats += 1
            if self.ack_heartbeats:
                await conn.send({"op": 11, "d": None, "s": None, "t": None})
            return
        recorded = copy.deepcopy(payload)
        if isinstance(recorded.get("d"), dict) and "token" in recorded["d"]:
            recorded["d"]["token"] = "<redacted>"
        self.gateway_received.append(recorded)
        self._notify()
        if op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})
        elif conn.session is None:
            await conn.close(4003, "Not authenticated.")
        elif op == 3:
            self.presence_updates.append(data)
        elif op == 8:
            await self._request_members(conn.session, data or {})
        elif op in (4, 31):
            pass  # voice state / soundboard: accepted, nothing to simulate
        else:
            await conn.close(4001, "Unknown opcode.")

    async def _identify(self, conn: _Connection, data: dict[str, Any]) -> None:
        if conn.session is not None:
            await conn.close(4005, "Already authenticated.")
            return
        if data.get("token") != self.token:
            await conn.close(4004, "Authentication failed.")
            return
        shard = data.get("shard") or [0, 1]
        shard_id, shard_count = int(shard[0]), int(shard[1])
        if shard_count < 1 or not 0 <= shard_id < shard_count:
            await conn.close(4010, "Invalid shard.")
            return
        redacted = {k: v for k, v in data.items() if k != "token"}
        sess = GatewaySession(uuid.uuid4().hex, shard_id, shard_count, int(data.get("intents", 0)), redacted)
        guilds = [g for g in self.guilds.values() if self.shard_for(g.id, shard_count) == shard_id]
        async with sess.lock:
            sess.conn = conn
            conn.session = sess
            self.sessions.append(sess)
            ready: dict[str, Any] = {
                "v": 10,
                "user": {**self.bot_user.to_payload(), "verified": True, "mfa_enabled": False, "email": None},
                "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                "session_id": sess.session_id,
                "session_type": "normal",
                "resume_gateway_url": f"ws://{self.host}:{self.port}/gateway-resume",
                "application": {"id": str(self.application_id), "flags": self.application_flags},
                "private_channels": [],
                "relationships": [],
                "presences": [],
                "guild_join_requests": [],
                "geo_ordered_rtc_regions": [],
                "user_settings": {},
                "auth": {},
                "_trace": ["fake-gateway"],
            }
            if "shard" in data:
                ready["shard"] = [shard_id, shard_count]
            await self._send_dispatch_locked(sess, "READY", ready)
            for guild in guilds:
                await self._send_dispatch_locked(sess, "GUILD_CREATE", self._guild_create_payload(guild, sess))
        self._notify()

    async def _resume(self, conn: _Connection, data: dict[str, Any]) -> None:
        sess = next((s for s in self.sessions if s.session_id == data.get("session_id")), None)
        if sess is None or not sess.resumable or data.get("token") != self.token:
            await conn.send({"op": 9, "d": False, "s": None, "t": None})
            return
        async with sess.lock:
            old, sess.conn = sess.conn, conn
            conn.session = sess
            if old is not None and old is not conn:
                old.session = None
                await old.close(4000, "session resumed elsewhere")
            last = data.get("seq") or 0
            for payload in sess.buffer:
                if payload["s"] > last:
                    sess.replayed += 1
                    await conn.send(payload)
            sess.resumes += 1
            await self._send_dispatch_locked(sess, "RESUMED", {"_trace": ["fake-gateway"]})
        self._notify()

    async def _request_members(self, sess: GatewaySession, data: dict[str, Any]) -> None:
        guild = self.guilds.get(int(data.get("guild_id") or 0))
        if guild is None:
            return
        members = list(guild.members.values())
        if data.get("user_ids"):
            ids = {int(i) for i in data["user_ids"]}
            members = [m for m in members if m.id in ids]
        elif data.get("query"):
            query = str(data["query"]).lower()
            members = [m for m in members if m.user.username.lower().startswith(query)]
        if data.get("limit"):
            members = members[: int(data["limit"])]
        chunk: dict[str, Any] = {
            "guild_id": str(guild.id),
            "members": [m.to_payload() for m in members],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        if data.get("presences"):
            chunk["presences"] = []
        await self._send_dispatch(sess, "GUILD_MEMBERS_CHUNK", chunk)

    def _guild_payload(self, guild: FakeGuild) -> dict[str, Any]:
        text_channels = [c for c in guild.channels.values() if c.type == 0]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "discovery_splash": None,
            "owner_id": str(guild.owner_id),
            "afk_channel_id": None,
            "afk_timeout": 300,
            "widget_enabled": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "roles": [r.to_payload() for r in guild.roles.values()],
            "emojis": [],
            "features": [],
            "mfa_level": 0,
            "application_id": None,
            "system_channel_id": str(text_channels[0].id) if text_channels else None,
            "system_channel_flags": 0,
            "rules_channel_id": None,
            "max_presences": None,
            "max_members": 500000,
            "vanity_url_code": None,
            "description": None,
            "banner": None,
            "premium_tier": 0,
            "premium_subscription_count": 0,
            "preferred_locale": guild.locale,
            "public_updates_channel_id": None,
            "max_video_channel_users": 25,
            "max_stage_video_channel_users": 50,
            "nsfw_level": 0,
            "stickers": [],
            "premium_progress_bar_enabled": False,
            "safety_alerts_channel_id": None,
            "incidents_data": None,
        }

    def _guild_create_payload(self, guild: FakeGuild, sess: GatewaySession) -> dict[str, Any]:
        # Without the GUILD_MEMBERS intent Discord only sends the bot's own member.
        if sess.intents & INTENT_GUILD_MEMBERS:
            members = list(guild.members.values())
        else:
            members = [guild.members[self.bot_user.id]]
        return {
            **self._guild_payload(guild),
            "joined_at": guild.members[self.bot_user.id].joined_at,
            "large": len(guild.members) > 250,
            "unavailable": False,
            "member_count": len(guild.members),
            "voice_states": [],
            "members": [m.to_payload() for m in members],
            "channels": [c.to_payload() for c in guild.channels.values()],
            "threads": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    # ------------------------------------------------------------------ REST plumbing

    def _route(
        self, method: str, template: str, handler: Callable[[_Request], Awaitable[Any]], *, auth: bool = True
    ) -> None:
        def group(m: re.Match[str]) -> str:
            name = m.group(1)
            if name == "message":
                return rf"(?P<{name}>\d+|@original)"
            if name.endswith("_id"):
                return rf"(?P<{name}>\d+)"
            return rf"(?P<{name}>[^/]+)"

        pattern = re.compile("^" + re.sub(r"\{(\w+)\}", group, template) + "$")
        self._routes.append(_RouteDef(method, pattern, handler, auth))

    def _build_routes(self) -> None:
        r = self._route
        r("GET", "/gateway", self._r_gateway, auth=False)
        r("GET", "/gateway/bot", self._r_gateway_bot)
        r("GET", "/users/@me", self._r_me)
        r("POST", "/users/@me/channels", self._r_create_dm)
        r("GET", "/users/{user_id}", self._r_user)
        r("GET", "/oauth2/applications/@me", self._r_application)
        r("GET", "/applications/@me", self._r_application)
        for prefix in ("/applications/{application_id}", "/applications/{application_id}/guilds/{guild_id}"):
            r("GET", prefix + "/commands", self._r_get_commands)
            r("PUT", prefix + "/commands", self._r_put_commands)
            r("POST", prefix + "/commands", self._r_post_command)
            r("GET", prefix + "/commands/{command_id}", self._r_get_command)
            r("PATCH", prefix + "/commands/{command_id}", self._r_patch_command)
            r("DELETE", prefix + "/commands/{command_id}", self._r_delete_command)
        r("GET", "/applications/{application_id}/guilds/{guild_id}/commands/permissions", self._r_command_perms)
        r("GET", "/channels/{channel_id}", self._r_get_channel)
        r("GET", "/channels/{channel_id}/messages", self._r_list_messages)
        r("POST", "/channels/{channel_id}/messages", self._r_create_message)
        r("POST", "/channels/{channel_id}/messages/bulk-delete", self._r_bulk_delete)
        r("GET", "/channels/{channel_id}/messages/{message_id}", self._r_get_message)
        r("PATCH", "/channels/{channel_id}/messages/{message_id}", self._r_edit_message)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}", self._r_delete_message)
        r("PUT", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._r_add_reaction)
        r("DELETE", "/channels/{channel_id}/messages/{message_id}/reactions/{emoji}/@me", self._r_remove_reaction)
        r("POST", "/channels/{channel_id}/typing", self._r_typing)
        r("GET", "/guilds/{guild_id}", self._r_get_guild)
        r("GET", "/guilds/{guild_id}/channels", self._r_guild_channels)
        r("GET", "/guilds/{guild_id}/roles", self._r_guild_roles)
        r("GET", "/guilds/{guild_id}/members", self._r_guild_members)
        r("GET", "/guilds/{guild_id}/members/{user_id}", self._r_guild_member)
        r("POST", "/interactions/{interaction_id}/{token}/callback", self._r_interaction_callback, auth=False)
        r("POST", "/webhooks/{application_id}/{token}", self._r_followup, auth=False)
        r("GET", "/webhooks/{application_id}/{token}/messages/{message}", self._r_webhook_get, auth=False)
        r("PATCH", "/webhooks/{application_id}/{token}/messages/{message}", self._r_webhook_edit, auth=False)
        r("DELETE", "/webhooks/{application_id}/{token}/messages/{message}", self._r_webhook_delete, auth=False)

    def _ratelimit_headers(self, method: str, path: str) -> dict[str, str]:
        # Plenty of remaining budget and a short window: discord.py never sleeps on these.
        template = re.sub(r"/\d{5,}", "/:id", path)
        bucket = hashlib.sha1(f"{method} {template}".encode()).hexdigest()[:16]
        return {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "49",
            "X-RateLimit-Reset": f"{time.time() + 1:.3f}",
            "X-RateLimit-Reset-After": "1.000",
            "X-RateLimit-Bucket": bucket,
        }

    async def _read_body(self, request: web.Request) -> tuple[Any, list[_Upload]]:
        ctype = request.content_type
        if ctype.startswith("multipart/"):
            payload: Any = None
            files: list[_Upload] = []
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                name = getattr(part, "name", None) or ""
                raw = await part.read()  # type: ignore[union-attr]
                if name == "payload_json":
                    payload = json.loads(bytes(raw).decode())
                elif getattr(part, "filename", None) is not None or name.startswith("files"):
                    m = re.fullmatch(r"files\[(\d+)\]", name)
                    index = int(m.group(1)) if m else len(files)
                    part_type = part.headers.get("Content-Type")  # type: ignore[union-attr]
                    files.append(_Upload(index, part.filename or name, bytes(raw), part_type))  # type: ignore[union-attr]
                else:
                    payload = payload or {}
                    payload[name] = bytes(raw).decode()
            return payload, files
        raw_body = await request.read()
        if not raw_body:
            return None, []
        return json.loads(raw_body), []

    async def _api_handler(self, request: web.Request) -> web.StreamResponse:
        method = request.method
        full_path = request.path
        rel = full_path[len(API_PREFIX) :] if full_path.startswith(API_PREFIX + "/") else None
        headers = {k: v for k, v in request.headers.items() if k.lower() != "authorization"}
        record = RecordedRequest(method, rel if rel is not None else full_path, dict(request.query), headers)
        self.requests.append(record)
        rl_headers = self._ratelimit_headers(method, rel or full_path)
        try:
            try:
                body, files = await self._read_body(request)
            except (ValueError, UnicodeDecodeError) as exc:
                raise _HTTPError(400, "400: Bad Request", 50109) from exc
            record.json = body
            record.files = [(f"files[{f.index}]", f.filename, len(f.data)) for f in files]
            route_def, params = self._match(method, rel) if rel is not None else (None, {})
            if route_def is None:
                self.unknown_routes.append(record.route)
                raise _HTTPError(404, "404: Not Found", 0)
            if route_def.auth and request.headers.get("Authorization") != f"Bot {self.token}":
                raise _HTTPError(401, "401: Unauthorized", 0)
            fault = self._take_fault(record.route)
            record.injected = fault is not None
            fault = fault or self._channel_bucket(method, rel or "", rl_headers)
            if fault is not None:
                response = self._fault_response(fault, rl_headers)
            else:
                result = await route_def.handler(_Request(method, rel or "", params, dict(request.query), body, files))
                if result is None:
                    response = web.Response(status=204, headers=rl_headers)
                else:
                    response = _json_response(result, 200, rl_headers)
        except _HTTPError as exc:
            response = _json_response(exc.body(), exc.status, rl_headers)
        record.status = response.status
        self._notify()
        return response

    def _match(self, method: str, path: str) -> tuple[_RouteDef | None, dict[str, str]]:
        for route_def in self._routes:
            if route_def.method == method and (m := route_def.pattern.match(path)):
                return route_def, m.groupdict()
        return None, {}

    def _fault_response(self, fault: _Fault, rl_headers: dict[str, str]) -> web.Response:
        headers = dict(rl_headers)
        if fault.status == 429:
            self.rate_limits_sent += 1
            # discord.py treats a 429 without "Via" as a Cloudflare ban and raises instead of retrying.
            headers.update(
                {
                    "Via": "1.1 google",
                    "Retry-After": str(max(1, math.ceil(fault.retry_after))),
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset-After": f"{fault.retry_after:.3f}",
                    "X-RateLimit-Reset": f"{time.time() + fault.retry_after:.3f}",
                    "X-RateLimit-Scope": "global" if fault.global_ else "user",
                }
            )
            if fault.global_:
                headers["X-RateLimit-Global"] = "true"
        else:
            self.failures_sent += 1
        return _json_response(fault.body, fault.status, headers)

    async def _serve_attachment(self, request: web.Request) -> web.StreamResponse:
        attachment = self.attachments.get(int(request.match_info["attachment_id"]))
        if attachment is None or attachment.filename != request.match_info["filename"]:
            self.unknown_routes.append(f"GET {request.path}")
            return web.Response(status=404, text="404: Not Found")
        return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")

    def _new_attachment(
        self,
        channel_id: int,
        filename: str,
        data: bytes,
        content_type: str | None = None,
        *,
        description: str | None = None,
        ephemeral: bool = False,
    ) -> FakeAttachment:
        guessed = mimetypes.guess_type(filename)[0]
        if content_type in (None, "application/octet-stream") and guessed:
            content_type = guessed
        aid = self.new_id()
        path = f"attachments/{channel_id}/{aid}/{filename}"
        width = height = None
        if content_type and content_type.startswith("image/"):
            with contextlib.suppress(Exception):
                from PIL import Image  # optional: real Discord reports image dimensions

                with Image.open(io.BytesIO(data)) as img:
                    width, height = img.size
        attachment = FakeAttachment(
            aid,
            filename,
            data,
            content_type,
            url=f"{self.base_url}/{path}?ex=0&is=0&hm=fake",
            proxy_url=f"{self.base_url}/media/{path}",
            description=description,
            ephemeral=ephemeral,
            width=width,
            height=height,
        )
        self.attachments[aid] = attachment
        return attachment

    def upload(
        self, filename: str, data: bytes, content_type: str | None = None, *, channel: FakeChannel | int | None = None
    ) -> FakeAttachment:
        """Store a file as if a user uploaded it (served back at its ``url``)."""
        chan = self._channel(channel) if channel is not None else self.channel
        return self._new_attachment(chan.id, filename, data, content_type, ephemeral=True)

    # ------------------------------------------------------------------ messages

    def _component_problems(self, components: list[dict[str, Any]], *, v2: bool) -> dict[str, tuple[str, str]]:
        problems: dict[str, tuple[str, str]] = {}
        if not v2 and len(components) > 5:
            problems["components"] = ("BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
        if v2 and sum(1 for _ in walk_components(components)) > 40:
            problems["components"] = ("BASE_TYPE_MAX_LENGTH", "Must be 40 or fewer in length.")
        seen: set[str] = set()

        def visit(comps: list[dict[str, Any]], prefix: str, top: bool) -> None:
            for i, comp in enumerate(comps):
                path = f"{prefix}.{i}"
                ctype = comp.get("type")
                if top and not v2 and ctype != 1:
                    problems[f"{path}.type"] = ("UNION_TYPE_CHOICES", 'Value of field "type" must be one of (1,).')
                if ctype == 1:
                    children = comp.get("components") or []
                    if not 1 <= len(children) <= 5:
                        problems[f"{path}.components"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
                    if len(children) > 1 and any(c.get("type") in _SELECT_TYPES for c in children):
                        problems[f"{path}.components"] = (
                            "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                            "The specified component exceeds the maximum width",
                        )
                elif ctype == 2:
                    style = comp.get("style")
                    if style == 5 and not comp.get("url"):
                        problems[f"{path}.url"] = ("BASE_TYPE_REQUIRED", "This field is required")
                    elif style not in (5, 6) and not comp.get("custom_id"):
                        problems[f"{path}.custom_id"] = ("BASE_TYPE_REQUIRED", "This field is required")
                    if len(comp.get("label") or "") > 80:
                        problems[f"{path}.label"] = ("BASE_TYPE_MAX_LENGTH", "Must be 80 or fewer in length.")
                    if not comp.get("label") and not comp.get("emoji") and style != 6:
                        problems[f"{path}.label"] = ("BUTTON_LABEL_OR_EMOJI_REQUIRED", "A label or emoji is required")
                elif ctype in _SELECT_TYPES:
                    if not comp.get("custom_id"):
                        problems[f"{path}.custom_id"] = ("BASE_TYPE_REQUIRED", "This field is required")
                    if ctype == 3 and not 1 <= len(comp.get("options") or []) <= 25:
                        problems[f"{path}.options"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 25 in length.")
                custom_id = comp.get("custom_id")
                if custom_id is not None:
                    if len(custom_id) > 100:
                        problems[f"{path}.custom_id"] = ("BASE_TYPE_MAX_LENGTH", "Must be 100 or fewer in length.")
                    if custom_id in seen:
                        problems[f"{path}.custom_id"] = (
                            "COMPONENT_CUSTOM_ID_DUPLICATED",
                            "Component custom id cannot be duplicated",
                        )
                    seen.add(custom_id)
                visit(comp.get("components") or [], f"{path}.components", False)
                if isinstance(comp.get("accessory"), dict):
                    visit([comp["accessory"]], f"{path}.accessory", False)

        visit(components, "components", True)
        return problems

    def _validate_message(self, data: dict[str, Any], *, flags: int) -> None:
        if not self.strict:
            return
        problems: dict[str, tuple[str, str]] = {}
        content = data.get("content") or ""
        if len(content) > 2000:
            problems["content"] = ("BASE_TYPE_MAX_LENGTH", "Must be 2000 or fewer in length.")
        embeds = data.get("embeds") or []
        if len(embeds) > 10:
            problems["embeds"] = ("BASE_TYPE_MAX_LENGTH", "Must be 10 or fewer in length.")
        total = 0
        for i, embed in enumerate(embeds):
            texts = {
                "title": (embed.get("title"), 256),
                "description": (embed.get("description"), 4096),
                "footer.text": ((embed.get("footer") or {}).get("text"), 2048),
                "author.name": ((embed.get("author") or {}).get("name"), 256),
            }
            fields = embed.get("fields") or []
            if len(fields) > 25:
                problems[f"embeds.{i}.fields"] = ("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            for j, fld in enumerate(fields):
                texts[f"fields.{j}.name"] = (fld.get("name"), 256)
                texts[f"fields.{j}.value"] = (fld.get("value"), 1024)
                for key in ("name", "value"):
                    if not str(fld.get(key) or "").strip():
                        problems[f"embeds.{i}.fields.{j}.{key}"] = ("BASE_TYPE_REQUIRED", "This field is required")
            for key, (value, limit) in texts.items():
                total += len(value or "")
                if value is not None and len(value) > limit:
                    problems[f"embeds.{i}.{key}"] = ("BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
        if total > 6000:
            problems["embeds"] = ("MAX_EMBED_SIZE_EXCEEDED", "Embed size exceeds maximum size of 6000")
        v2 = bool(flags & FLAG_COMPONENTS_V2)
        problems.update(self._component_problems(data.get("components") or [], v2=v2))
        if v2 and (content or embeds):
            problems["content" if content else "embeds"] = (
                "MESSAGE_CANNOT_USE_LEGACY_FIELDS_WITH_COMPONENTS_V2",
                "The 'content' and 'embeds' fields cannot be used when using MessageFlags.IS_COMPONENTS_V2",
            )
        if problems:
            raise _form_error(problems)

    @staticmethod
    def _assign_component_ids(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Discord numbers every component that has no ``id`` (depth-first, starting at 1)."""
        comps = copy.deepcopy(components)
        used = {c["id"] for c in walk_components(comps) if isinstance(c.get("id"), int)}
        counter = itertools.count(1)
        for comp in walk_components(comps):
            if comp.get("id") is None:
                n = next(counter)
                while n in used:
                    n = next(counter)
                comp["id"] = n
                used.add(n)
        return comps

    @staticmethod
    def _normalize_embeds(embeds: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        return [{"type": "rich", **e} for e in copy.deepcopy(embeds or [])]

    def _mentions(self, content: str) -> list[FakeUser]:
        ids = dict.fromkeys(int(m) for m in re.findall(r"<@!?(\d+)>", content))
        return [self.users[i] for i in ids if i in self.users]

    def _resolve_attachments(
        self,
        channel_id: int,
        existing: list[FakeAttachment],
        spec: list[dict[str, Any]] | None,
        files: list[_Upload],
        *,
        ephemeral: bool,
    ) -> list[FakeAttachment]:
        """Discord's ``attachments`` semantics: keep listed existing ids, add new files by index."""
        if sum(len(u.data) for u in files) > ATTACHMENT_SIZE_LIMIT:
            raise _HTTPError(413, "Request entity too large", 40005)
        uploads = {u.index: u for u in files}
        if spec is None:
            new = [
                self._new_attachment(channel_id, u.filename, u.data, u.content_type, ephemeral=ephemeral) for u in files
            ]
            return [*existing, *new]
        keep = {a.id: a for a in existing}
        result: list[FakeAttachment] = []
        used: set[int] = set()
        for i, item in enumerate(spec):
            try:
                aid = int(item["id"])
            except (KeyError, TypeError, ValueError):
                raise _form_error({f"attachments.{i}.id": ("BASE_TYPE_REQUIRED", "This field is required")}) from None
            if aid in keep:
                result.append(keep[aid])
            elif aid in uploads and aid not in used:
                upload = uploads[aid]
                used.add(aid)
                result.append(
                    self._new_attachment(
                        channel_id,
                        item.get("filename") or upload.filename,
                        upload.data,
                        upload.content_type,
                        description=item.get("description"),
                        ephemeral=ephemeral,
                    )
                )
            else:
                raise _form_error({f"attachments.{i}.id": ("ATTACHMENT_NOT_FOUND", "Unknown attachment")})
        for index, upload in sorted(uploads.items()):
            if index not in used:
                result.append(
                    self._new_attachment(
                        channel_id, upload.filename, upload.data, upload.content_type, ephemeral=ephemeral
                    )
                )
        return result

    @staticmethod
    def _check_not_empty(
        content: str, embeds: list[Any], attachments: list[Any], components: list[Any], data: dict[str, Any]
    ) -> None:
        if not (content or embeds or attachments or components or data.get("sticker_ids") or data.get("poll")):
            raise _HTTPError(400, "Cannot send an empty message", 50006)

    def _create_message(
        self,
        channel: FakeChannel,
        data: dict[str, Any],
        files: list[_Upload],
        *,
        author: FakeUser,
        source: str,
        interaction: InteractionHandle | None = None,
        allow_ephemeral: bool = False,
        loading: bool = False,
        mtype: int = 0,
    ) -> FakeMessage:
        allowed = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
        if allow_ephemeral:
            allowed |= FLAG_EPHEMERAL
        flags = int(data.get("flags") or 0) & allowed
        if loading:
            flags = (flags & FLAG_EPHEMERAL) | FLAG_LOADING
        else:
            self._validate_message(data, flags=flags)
        ephemeral = bool(flags & FLAG_EPHEMERAL)
        content = "" if loading else str(data.get("content") or "")
        embeds = [] if loading else self._normalize_embeds(data.get("embeds"))
        components = [] if loading else self._assign_component_ids(data.get("components") or [])
        attachments = self._resolve_attachments(channel.id, [], data.get("attachments"), files, ephemeral=ephemeral)
        if not loading:
            self._check_not_empty(content, embeds, attachments, components, data)
        reference = referenced = None
        ref = data.get("message_reference")
        if ref and not loading:
            target = self.messages.get(int(ref.get("message_id") or 0))
            if (
                target is None
                or target.deleted
                or target.ephemeral
                or target.channel_id != int(ref.get("channel_id") or channel.id)
            ):
                if ref.get("fail_if_not_exists", True):
                    raise _form_error({"message_reference": ("REPLIES_UNKNOWN_MESSAGE", "Unknown message")})
            else:
                referenced = target
                reference = {
                    "type": ref.get("type", 0),
                    "channel_id": str(target.channel_id),
                    "message_id": str(target.id),
                }
                if target.guild_id is not None:
                    reference["guild_id"] = str(target.guild_id)
                if mtype == 0:
                    mtype = 19
        msg = FakeMessage(
            id=self.new_id(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author=author,
            content=content,
            embeds=embeds,
            components=components,
            attachments=attachments,
            flags=flags,
            type=mtype,
            tts=bool(data.get("tts", False)),
            message_reference=reference,
            referenced=referenced,
            source=source,
            mentions=self._mentions(content),
        )
        if interaction is not None:
            msg.webhook_id = self.application_id
            msg.application_id = self.application_id
            msg.interaction_id = interaction.id
            if ephemeral:
                msg.visible_to = interaction.user.id
            if source in ("interaction", "followup"):
                # Discord puts interaction metadata on followups too (with the original response's id).
                metadata: dict[str, Any] = {
                    "id": str(interaction.id),
                    "type": interaction.type,
                    "user": interaction.user.to_payload(),
                    "authorizing_integration_owners": self._integration_owners(interaction.guild_id, interaction.user),
                }
                if interaction.type == 2:
                    metadata["name"] = interaction.data.get("name")
                    metadata["command_type"] = interaction.data.get("type", 1)
                if interaction.message is not None:
                    metadata["interacted_message_id"] = str(interaction.message.id)
                if source == "followup" and interaction.original is not None:
                    metadata["original_response_message_id"] = str(interaction.original.id)
                msg.interaction_metadata = metadata
        msg._snapshot()
        self.messages[msg.id] = msg
        if not ephemeral:
            channel.last_message_id = msg.id
        return msg

    def _edit_message(self, msg: FakeMessage, data: dict[str, Any], files: list[_Upload]) -> FakeMessage:
        content = msg.content if "content" not in data else str(data["content"] or "")
        embeds = msg.embeds if "embeds" not in data else self._normalize_embeds(data["embeds"])
        components = msg.components
        if "components" in data:
            components = self._assign_component_ids(data["components"] or [])
        flags = msg.flags & ~FLAG_LOADING
        if data.get("flags") is not None:
            settable = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
            flags = (flags & ~FLAG_SUPPRESS_EMBEDS) | (int(data["flags"]) & settable)
        check = {"content": content, "embeds": embeds, "components": data.get("components") or []}
        self._validate_message(check, flags=flags)
        attachments = msg.attachments
        if "attachments" in data or files:
            attachments = self._resolve_attachments(
                msg.channel_id, msg.attachments, data.get("attachments"), files, ephemeral=msg.ephemeral
            )
        self._check_not_empty(content, embeds, attachments, components, {})
        if not msg.loading:
            msg.edited_timestamp = _now_iso()
        msg.content, msg.embeds, msg.components = content, embeds, components
        msg.attachments, msg.flags = attachments, flags
        msg.mentions = self._mentions(content)
        msg._snapshot()
        return msg

    def _message_event_payload(self, msg: FakeMessage) -> dict[str, Any]:
        data = msg.to_payload()
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
            member = self.guilds[msg.guild_id].members.get(msg.author.id)
            if member is not None:
                data["member"] = member.to_payload(with_user=False)
        return data

    async def _echo(self, event: str, msg: FakeMessage) -> None:
        """Gateway MESSAGE_* events for a stored message (ephemeral ones are never dispatched)."""
        if msg.ephemeral:
            return
        intent = INTENT_GUILD_MESSAGES if msg.guild_id is not None else INTENT_DIRECT_MESSAGES
        if event == "MESSAGE_DELETE":
            data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
            await self.dispatch(event, data, guild_id=msg.guild_id, intent=intent)
            return

        def strip_content(sess: GatewaySession, payload: dict[str, Any]) -> dict[str, Any]:
            # Without MESSAGE_CONTENT, other users' guild messages arrive without their content.
            privileged = sess.intents & INTENT_MESSAGE_CONTENT
            exempt = msg.author is self.bot_user or msg.guild_id is None or self.bot_user in msg.mentions
            if privileged or exempt:
                return payload
            return {**payload, "content": "", "embeds": [], "attachments": [], "components": []}

        await self.dispatch(
            event, self._message_event_payload(msg), guild_id=msg.guild_id, intent=intent, transform=strip_content
        )

    @staticmethod
    def _integration_owners(guild_id: int | None, user: FakeUser) -> dict[str, str]:
        # Guild install: "0" -> guild id; in DMs the bot (guild-installed) is authorised via user "1".
        return {"0": str(guild_id)} if guild_id is not None else {"1": str(user.id)}

    # ------------------------------------------------------------------ REST routes: meta

    async def _r_gateway(self, req: _Request) -> Any:
        return {"url": self.gateway_url}

    async def _r_gateway_bot(self, req: _Request) -> Any:
        return {
            "url": self.gateway_url,
            "shards": self.recommended_shards,
            "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1},
        }

    async def _r_me(self, req: _Request) -> Any:
        return {**self.bot_user.to_payload(), "verified": True, "mfa_enabled": False, "email": None, "locale": "en-US"}

    async def _r_user(self, req: _Request) -> Any:
        user = self.users.get(int(req.params["user_id"]))
        if user is None:
            raise _unknown("User")
        return user.to_payload()

    async def _r_create_dm(self, req: _Request) -> Any:
        user = self.users.get(int((req.json or {}).get("recipient_id") or 0))
        if user is None:
            raise _unknown("User")
        return self.dm_channel(user).to_payload()

    async def _r_application(self, req: _Request) -> Any:
        return {
            "id": str(self.application_id),
            "name": self.bot_user.username,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "verify_key": "0" * 64,
            "team": None,
            "owner": self.owner.user.to_payload(),
            "bot": self.bot_user.to_payload(),
            "flags": self.application_flags,
            "rpc_origins": [],
            "redirect_uris": [],
            "tags": [],
            "interactions_endpoint_url": None,
            "role_connections_verification_url": None,
            "approximate_guild_count": len(self.guilds),
            "approximate_user_install_count": 0,
            "integration_types_config": {"0": {}},
            "hook": True,
            "is_monetized": False,
        }

    # ------------------------------------------------------------------ REST routes: commands

    def _command_scope(self, req: _Request) -> int | None:
        if int(req.params["application_id"]) != self.application_id:
            raise _HTTPError(403, "Missing Access", 50001)
        if "guild_id" not in req.params:
            return None
        guild_id = int(req.params["guild_id"])
        if guild_id not in self.guilds:
            raise _unknown("Guild")
        return guild_id

    def _command_problems(self, cmd: dict[str, Any], prefix: str) -> dict[str, tuple[str, str]]:
        problems: dict[str, tuple[str, str]] = {}
        name_re = re.compile(r"^[-_'\w]{1,32}$")
        ctype = int(cmd.get("type", 1))
        name = str(cmd.get("name") or "")
        if ctype == 1 and (not name_re.match(name) or name != name.lower()):
            problems[f"{prefix}name"] = ("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if ctype == 1 and not 1 <= len(cmd.get("description") or "") <= 100:
            problems[f"{prefix}description"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")

        def check_options(options: list[dict[str, Any]], path: str) -> None:
            if len(options) > 25:
                problems[path] = ("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
            seen_optional = False
            names: set[str] = set()
            for i, opt in enumerate(options):
                oname = str(opt.get("name") or "")
                if not name_re.match(oname) or oname != oname.lower():
                    problems[f"{path}.{i}.name"] = ("APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
                if oname in names:
                    problems[f"{path}.{i}.name"] = (
                        "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                        "Option names must be unique",
                    )
                names.add(oname)
                if not 1 <= len(opt.get("description") or "") <= 100:
                    problems[f"{path}.{i}.description"] = (
                        "BASE_TYPE_BAD_LENGTH",
                        "Must be between 1 and 100 in length.",
                    )
                if len(opt.get("choices") or []) > 25:
                    problems[f"{path}.{i}.choices"] = ("BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
                if opt.get("type") in (1, 2):
                    check_options(opt.get("options") or [], f"{path}.{i}.options")
                elif opt.get("required"):
                    if seen_optional:
                        problems[f"{path}.{i}.required"] = (
                            "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                            "Required options must be placed before non-required options",
                        )
                else:
                    seen_optional = True

        check_options(cmd.get("options") or [], f"{prefix}options")
        return problems

    def _store_command(self, cmd: dict[str, Any], scope: int | None, existing: dict[str, Any] | None) -> dict[str, Any]:
        perms = cmd.get("default_member_permissions")
        out: dict[str, Any] = {
            "id": existing["id"] if existing else str(self.new_id()),
            "application_id": str(self.application_id),
            "version": str(self.new_id()),
            "type": int(cmd.get("type", 1)),
            "name": cmd.get("name"),
            "name_localizations": cmd.get("name_localizations"),
            "description": cmd.get("description", ""),
            "description_localizations": cmd.get("description_localizations"),
            # Discord answers with a string even when the int form was sent.
            "default_member_permissions": None if perms is None else str(perms),
            "nsfw": bool(cmd.get("nsfw", False)),
            "integration_types": cmd.get("integration_types") or [0],
            "contexts": cmd.get("contexts"),
        }
        if cmd.get("options"):
            out["options"] = copy.deepcopy(cmd["options"])
        if scope is not None:
            out["guild_id"] = str(scope)
        else:
            out["dm_permission"] = cmd.get("dm_permission", True)
        return out

    def _scoped_commands(self, scope: int | None) -> list[dict[str, Any]]:
        return [c for c in self.commands if _opt_int(c.get("guild_id")) == scope]

    async def _r_get_commands(self, req: _Request) -> Any:
        return self._scoped_commands(self._command_scope(req))

    async def _r_put_commands(self, req: _Request) -> Any:
        scope = self._command_scope(req)
        payload = req.json or []
        if not isinstance(payload, list):
            raise _form_error({"_errors": ("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType")})
        problems: dict[str, tuple[str, str]] = {}
        seen: set[tuple[str, int]] = set()
        for i, cmd in enumerate(payload):
            if self.strict:
                problems.update(self._command_problems(cmd, f"{i}."))
            key = (str(cmd.get("name")), int(cmd.get("type", 1)))
            if key in seen:
                problems[f"{i}.name"] = (
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    f"Application command names must be unique: {key[0]}",
                )
            seen.add(key)
        if problems:
            raise _form_error(problems)
        old = {(c["name"], c["type"]): c for c in self._scoped_commands(scope)}
        new = [self._store_command(cmd, scope, old.get((cmd.get("name"), int(cmd.get("type", 1))))) for cmd in payload]
        self.commands = [c for c in self.commands if _opt_int(c.get("guild_id")) != scope] + new
        return new

    async def _r_post_command(self, req: _Request) -> Any:
        scope = self._command_scope(req)
        cmd = req.json or {}
        if self.strict and (problems := self._command_problems(cmd, "")):
            raise _form_error(problems)
        existing = next(
            (
                c
                for c in self._scoped_commands(scope)
                if c["name"] == cmd.get("name") and c["type"] == int(cmd.get("type", 1))
            ),
            None,
        )
        stored = self._store_command(cmd, scope, existing)
        self.commands = [c for c in self.commands if c is not existing] + [stored]
        return stored

    def _find_command(self, req: _Request) -> dict[str, Any]:
        scope = self._command_scope(req)
        for cmd in self._scoped_commands(scope):
            if cmd["id"] == req.params["command_id"]:
                return cmd
        raise _unknown("application command")

    async def _r_get_command(self, req: _Request) -> Any:
        return self._find_command(req)

    async def _r_patch_command(self, req: _Request) -> Any:
        cmd = self._find_command(req)
        merged = {**cmd, **(req.json or {})}
        if self.strict and (problems := self._command_problems(merged, "")):
            raise _form_error(problems)
        cmd.update(self._store_command(merged, _opt_int(cmd.get("guild_id")), cmd))
        return cmd

    async def _r_delete_command(self, req: _Request) -> Any:
        cmd = self._find_command(req)
        self.commands = [c for c in self.commands if c is not cmd]
        return None

    async def _r_command_perms(self, req: _Request) -> Any:
        self._command_scope(req)
        return []

    # ------------------------------------------------------------------ REST routes: channels & messages

    def _req_channel(self, req: _Request, needed: int = 0) -> FakeChannel:
        channel = self.channels.get(int(req.params["channel_id"]))
        if channel is None:
            raise _unknown("Channel")
        if channel.guild_id is not None:
            guild = self.guilds[channel.guild_id]
            have = guild.permissions_for(guild.members[self.bot_user.id], channel)
            if not have & VIEW_CHANNEL:
                raise _HTTPError(403, "Missing Access", 50001)
            if have & needed != needed:
                raise _HTTPError(403, "Missing Permissions", 50013)
        return channel

    def _req_message(self, channel: FakeChannel, message_id: int) -> FakeMessage:
        msg = self.messages.get(message_id)
        # Ephemeral messages only exist for their user: the bot token cannot see them.
        if msg is None or msg.deleted or msg.ephemeral or msg.channel_id != channel.id:
            raise _unknown("Message")
        return msg

    async def _r_get_channel(self, req: _Request) -> Any:
        return self._req_channel(req).to_payload()

    async def _r_list_messages(self, req: _Request) -> Any:
        channel = self._req_channel(req, READ_MESSAGE_HISTORY)
        limit = int(req.query.get("limit", 50))
        if not 1 <= limit <= 100:
            raise _form_error({"limit": ("NUMBER_TYPE_MAX", "int value should be between 1 and 100.")})
        visible = [m for m in self.channel_messages(channel) if not m.ephemeral]
        if "before" in req.query:
            picked = [m for m in visible if m.id < int(req.query["before"])][-limit:]
        elif "after" in req.query:
            picked = [m for m in visible if m.id > int(req.query["after"])][:limit]
        elif "around" in req.query:
            around = int(req.query["around"])
            older = [m for m in visible if m.id <= around][-(limit // 2 + limit % 2) :]
            newer = [m for m in visible if m.id > around][: limit // 2]
            picked = older + newer
        else:
            picked = visible[-limit:]
        return [m.to_payload() for m in reversed(picked)]

    async def _r_create_message(self, req: _Request) -> Any:
        needed = SEND_MESSAGES | (ATTACH_FILES if req.files else 0)
        channel = self._req_channel(req, needed)
        msg = self._create_message(channel, req.json or {}, req.files, author=self.bot_user, source="channel")
        await self._echo("MESSAGE_CREATE", msg)
        return msg.to_payload()

    async def _r_get_message(self, req: _Request) -> Any:
        channel = self._req_channel(req, READ_MESSAGE_HISTORY)
        return self._req_message(channel, int(req.params["message_id"])).to_payload()

    async def _r_edit_message(self, req: _Request) -> Any:
        channel = self._req_channel(req)
        msg = self._req_message(channel, int(req.params["message_id"]))
        if msg.author is not self.bot_user:
            raise _HTTPError(403, "Cannot edit a message authored by another user", 50005)
        self._edit_message(msg, req.json or {}, req.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return msg.to_payload()

    async def _r_delete_message(self, req: _Request) -> Any:
        channel = self._req_channel(req)
        msg = self._req_message(channel, int(req.params["message_id"]))
        if msg.author is not self.bot_user:
            self._req_channel(req, MANAGE_MESSAGES)
        msg.deleted = True
        await self._echo("MESSAGE_DELETE", msg)
        return None

    async def _r_bulk_delete(self, req: _Request) -> Any:
        channel = self._req_channel(req, MANAGE_MESSAGES)
        ids = [int(i) for i in (req.json or {}).get("messages", [])]
        if not 2 <= len(ids) <= 100:
            raise _form_error({"messages": ("BASE_TYPE_BAD_LENGTH", "Must be between 2 and 100 in length.")})
        for mid in ids:
            self._req_message(channel, mid).deleted = True
        data: dict[str, Any] = {"ids": [str(i) for i in ids], "channel_id": str(channel.id)}
        if channel.guild_id is not None:
            data["guild_id"] = str(channel.guild_id)
        await self.dispatch("MESSAGE_DELETE_BULK", data, guild_id=channel.guild_id, intent=INTENT_GUILD_MESSAGES)
        return None

    def _reaction_event(self, msg: FakeMessage, emoji: str) -> dict[str, Any]:
        name, _, emoji_id = emoji.partition(":")
        data: dict[str, Any] = {
            "user_id": str(self.bot_user.id),
            "channel_id": str(msg.channel_id),
            "message_id": str(msg.id),
            "emoji": {"id": emoji_id or None, "name": name},
            "burst": False,
            "type": 0,
        }
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
        return data

    async def _r_add_reaction(self, req: _Request) -> Any:
        channel = self._req_channel(req, READ_MESSAGE_HISTORY)
        msg = self._req_message(channel, int(req.params["message_id"]))
        emoji = req.params["emoji"]
        msg.reactions.setdefault(emoji, set()).add(self.bot_user.id)
        event = {**self._reaction_event(msg, emoji), "message_author_id": str(msg.author.id)}
        await self.dispatch("MESSAGE_REACTION_ADD", event, guild_id=msg.guild_id, intent=INTENT_GUILD_MESSAGE_REACTIONS)
        return None

    async def _r_remove_reaction(self, req: _Request) -> Any:
        channel = self._req_channel(req)
        msg = self._req_message(channel, int(req.params["message_id"]))
        emoji = req.params["emoji"]
        msg.reactions.get(emoji, set()).discard(self.bot_user.id)
        await self.dispatch(
            "MESSAGE_REACTION_REMOVE",
            self._reaction_event(msg, emoji),
            guild_id=msg.guild_id,
            intent=INTENT_GUILD_MESSAGE_REACTIONS,
        )
        return None

    async def _r_typing(self, req: _Request) -> Any:
        self._req_channel(req, SEND_MESSAGES)
        return None

    # ------------------------------------------------------------------ REST routes: guilds

    def _req_guild(self, req: _Request) -> FakeGuild:
        guild = self.guilds.get(int(req.params["guild_id"]))
        if guild is None:
            raise _unknown("Guild")
        return guild

    async def _r_get_guild(self, req: _Request) -> Any:
        guild = self._req_guild(req)
        data = self._guild_payload(guild)
        if req.query.get("with_counts") in ("true", "1", "True"):
            data["approximate_member_count"] = len(guild.members)
            data["approximate_presence_count"] = 0
        return data

    async def _r_guild_channels(self, req: _Request) -> Any:
        return [c.to_payload() for c in self._req_guild(req).channels.values()]

    async def _r_guild_roles(self, req: _Request) -> Any:
        return [r.to_payload() for r in self._req_guild(req).roles.values()]

    async def _r_guild_members(self, req: _Request) -> Any:
        guild = self._req_guild(req)
        after = int(req.query.get("after", 0))
        limit = int(req.query.get("limit", 1))
        members = sorted((m for m in guild.members.values() if m.id > after), key=lambda m: m.id)
        return [m.to_payload() for m in members[:limit]]

    async def _r_guild_member(self, req: _Request) -> Any:
        member = self._req_guild(req).members.get(int(req.params["user_id"]))
        if member is None:
            raise _unknown("Member")
        return member.to_payload()

    # ------------------------------------------------------------------ REST routes: interactions & webhooks

    def _modal_from_callback(self, data: dict[str, Any], interaction_id: int) -> FakeModal:
        if self.strict:
            problems: dict[str, tuple[str, str]] = {}
            if not 1 <= len(data.get("custom_id") or "") <= 100:
                problems["data.custom_id"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
            if not 1 <= len(data.get("title") or "") <= 45:
                problems["data.title"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.")
            comps = data.get("components") or []
            if not 1 <= len(comps) <= 5:
                problems["data.components"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 5 in length.")
            seen: set[str] = set()
            for i, comp in enumerate(comps):
                path = f"data.components.{i}"
                if comp.get("type") not in (1, 10, 18):
                    problems[f"{path}.type"] = (
                        "UNION_TYPE_CHOICES",
                        'Value of field "type" must be one of (1, 10, 18).',
                    )
                if comp.get("type") == 18 and not 1 <= len(comp.get("label") or "") <= 45:
                    problems[f"{path}.label"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.")
                inner = comp.get("components") or ([comp["component"]] if comp.get("component") else [])
                for j, child in enumerate(inner):
                    cpath = f"{path}.components.{j}" if comp.get("type") == 1 else f"{path}.component"
                    if (
                        comp.get("type") == 1
                        and child.get("type") == 4
                        and not 1 <= len(child.get("label") or "") <= 45
                    ):
                        problems[f"{cpath}.label"] = ("BASE_TYPE_BAD_LENGTH", "Must be between 1 and 45 in length.")
                    if child.get("type") == 4 and (child.get("max_length") or 0) > 4000:
                        problems[f"{cpath}.max_length"] = (
                            "NUMBER_TYPE_MAX",
                            "int value should be less than or equal to 4000.",
                        )
                    cid = child.get("custom_id")
                    if not cid or len(cid) > 100:
                        problems[f"{cpath}.custom_id"] = (
                            "BASE_TYPE_BAD_LENGTH",
                            "Must be between 1 and 100 in length.",
                        )
                    elif cid in seen:
                        problems[f"{cpath}.custom_id"] = (
                            "COMPONENT_CUSTOM_ID_DUPLICATED",
                            "Component custom id cannot be duplicated",
                        )
                    seen.add(cid or "")
            if problems:
                raise _form_error(problems)
        data = {**data, "components": self._assign_component_ids(data.get("components") or [])}
        return FakeModal.from_payload(data, interaction_id)

    async def _r_interaction_callback(self, req: _Request) -> Any:
        handle = self.interactions.get(int(req.params["interaction_id"]))
        if handle is None or handle.token != req.params["token"]:
            raise _unknown("interaction")
        latency = asyncio.get_running_loop().time() - handle.created_at
        if self.interaction_timeout is not None and latency > self.interaction_timeout:
            raise _unknown("interaction")  # what Discord answers after the 3 s window
        if handle.callback is not None:
            raise _HTTPError(400, "Interaction has already been acknowledged.", 40060)
        body = req.json or {}
        ctype = int(body.get("type", 0))
        data = body.get("data") or {}
        channel = self.channels[handle.channel_id]
        from_component = handle.message is not None and handle.type in (3, 5)
        valid = {1: handle.type == 1, 4: handle.type in (2, 3, 5), 5: handle.type in (2, 3, 5)}
        valid.update({6: from_component, 7: from_component, 8: handle.type == 4, 9: handle.type in (2, 3)})
        if not valid.get(ctype, False):
            raise _form_error(
                {
                    "type": (
                        "INTERACTION_CALLBACK_TYPE_INVALID",
                        f"Invalid callback type {ctype} for interaction type {handle.type}",
                    )
                }
            )
        msg: FakeMessage | None = None
        modal: FakeModal | None = None
        new_files: list[FakeAttachment] = []
        if ctype == 4:
            mtype = 20 if handle.type == 2 else 0
            msg = self._create_message(
                channel,
                data,
                req.files,
                author=self.bot_user,
                source="interaction",
                interaction=handle,
                allow_ephemeral=True,
                mtype=mtype,
            )
            new_files = list(msg.attachments)
            handle.original = msg
        elif ctype == 5:
            msg = self._create_message(
                channel,
                data,
                [],
                author=self.bot_user,
                source="interaction",
                interaction=handle,
                allow_ephemeral=True,
                loading=True,
                mtype=20 if handle.type == 2 else 0,
            )
            handle.original = msg
        elif ctype in (6, 7):
            assert handle.message is not None
            handle.original = handle.message
            if ctype == 7:
                before = {a.id for a in handle.message.attachments}
                msg = self._edit_message(handle.message, data, req.files)
                new_files = [a for a in msg.attachments if a.id not in before]
        elif ctype == 9:
            modal = self._modal_from_callback(data, handle.id)
            self.modals.append(modal)
        callback = InteractionCallback(
            handle.id, handle.token, ctype, copy.deepcopy(data), latency, new_files, msg, modal
        )
        handle.callback = callback
        self.interaction_callbacks.append(callback)
        if msg is not None:
            await self._echo("MESSAGE_UPDATE" if ctype == 7 else "MESSAGE_CREATE", msg)
        if req.query.get("with_response") not in ("1", "true", "True"):
            return None
        info: dict[str, Any] = {
            "id": str(handle.id),
            "type": handle.type,
            "response_message_loading": ctype == 5,
            "response_message_ephemeral": bool(msg is not None and msg.ephemeral),
        }
        resource: dict[str, Any] = {"type": ctype}
        if msg is not None:
            info["response_message_id"] = str(msg.id)
            resource["message"] = msg.to_payload()
        return {"interaction": info, "resource": resource}

    def _webhook_interaction(self, req: _Request) -> InteractionHandle:
        handle = self._by_token.get(req.params["token"])
        if int(req.params["application_id"]) != self.application_id or handle is None:
            raise _unknown("Webhook")
        if asyncio.get_running_loop().time() - handle.created_at >= self.interaction_token_seconds:
            raise _HTTPError(401, "Invalid Webhook Token", 50027)
        return handle

    def _webhook_message(self, handle: InteractionHandle, ref: str) -> FakeMessage:
        if ref == "@original":
            msg = handle.original
            if msg is None:
                raise _unknown("Webhook" if handle.callback is None else "Message")
        else:
            msg = self.messages.get(int(ref))
            if msg is None or (msg is not handle.original and msg not in handle.followups):
                raise _unknown("Message")
        if msg.deleted:
            raise _unknown("Message")
        return msg

    async def _r_followup(self, req: _Request) -> Any:
        handle = self._webhook_interaction(req)
        if handle.callback is None or handle.callback.type not in (4, 5, 6, 7):
            raise _unknown("Webhook")  # followups need an acknowledged interaction
        data = req.json or {}
        original = handle.original
        if original is not None and original.loading and not original.deleted and handle.callback.type == 5:
            # Discord: the first followup after a "thinking" defer fills in the loading message
            # (once that message is deleted, a followup is a new message again).
            msg = self._edit_message(original, {k: v for k, v in data.items() if k != "flags"}, req.files)
            await self._echo("MESSAGE_UPDATE", msg)
        else:
            channel = self.channels[handle.channel_id]
            msg = self._create_message(
                channel,
                data,
                req.files,
                author=self.bot_user,
                source="followup",
                interaction=handle,
                allow_ephemeral=True,
            )
            await self._echo("MESSAGE_CREATE", msg)
        handle.followups.append(msg)
        self.followups.append(msg)
        return msg.to_payload() if req.query.get("wait") in ("1", "true", "True") else None

    async def _r_webhook_get(self, req: _Request) -> Any:
        handle = self._webhook_interaction(req)
        return self._webhook_message(handle, req.params["message"]).to_payload()

    async def _r_webhook_edit(self, req: _Request) -> Any:
        handle = self._webhook_interaction(req)
        msg = self._webhook_message(handle, req.params["message"])
        self._edit_message(msg, req.json or {}, req.files)
        await self._echo("MESSAGE_UPDATE", msg)
        return msg.to_payload()

    async def _r_webhook_delete(self, req: _Request) -> Any:
        handle = self._webhook_interaction(req)
        msg = self._webhook_message(handle, req.params["message"])
        msg.deleted = True
        await self._echo("MESSAGE_DELETE", msg)
        return None

    # ------------------------------------------------------------------ user actions: interactions

    async def _send_interaction(
        self,
        itype: int,
        data: dict[str, Any],
        *,
        user: FakeUser | FakeMember | int,
        channel: FakeChannel | int,
        message: FakeMessage | None = None,
        locale: str = "en-US",
        guild_locale: str | None = None,
        deliver: bool = True,
    ) -> InteractionHandle:
        target = self._user(user)
        chan = self._channel(channel)
        iid = self.new_id()
        token = "aW50ZXJhY3Rpb246" + secrets.token_urlsafe(96)
        payload: dict[str, Any] = {
            "id": str(iid),
            "application_id": str(self.application_id),
            "type": itype,
            "data": data,
            "token": token,
            "version": 1,
            "locale": locale,
            "entitlements": [],
            "authorizing_integration_owners": self._integration_owners(chan.guild_id, target),
            "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
            "channel_id": str(chan.id),
        }
        if chan.guild_id is not None:
            guild = self.guilds[chan.guild_id]
            perms = guild.permissions_for(self._member(guild, target), chan)
            payload.update(
                {
                    "guild_id": str(guild.id),
                    "guild": {"id": str(guild.id), "locale": guild_locale or guild.locale, "features": []},
                    "guild_locale": guild_locale or guild.locale,
                    "member": {**guild.members[target.id].to_payload(), "permissions": str(perms)},
                    "app_permissions": str(guild.permissions_for(guild.members[self.bot_user.id], chan)),
                    "channel": {**chan.to_payload(), "permissions": str(perms)},
                    "context": 0,
                }
            )
        else:
            text_perms = str(discord.Permissions.text().value)
            payload.update(
                {
                    "user": target.to_payload(),
                    "app_permissions": text_perms,
                    "channel": {**chan.to_payload(), "permissions": text_perms},
                    "context": 1,
                }
            )
        if message is not None:
            payload["message"] = message.to_payload()
        handle = InteractionHandle(
            self,
            iid,
            token,
            itype,
            payload,
            target,
            chan.id,
            chan.guild_id,
            message=message,
            created_at=asyncio.get_running_loop().time(),
        )
        self.interactions[iid] = handle
        self._by_token[token] = handle
        if not deliver:
            return handle
        if not await self.dispatch("INTERACTION_CREATE", payload, guild_id=chan.guild_id):
            raise RuntimeError("no gateway session receives this interaction: is the bot connected?")
        return handle

    def _lookup_command(self, name: str, guild_id: int | None, ctype: int = 1) -> dict[str, Any] | None:
        if guild_id is not None and (cmd := self.command(name, guild=guild_id, type=ctype)) is not None:
            return cmd
        return self.command(name, type=ctype)

    def _check_command_permissions(self, cmd: dict[str, Any], user: FakeUser, chan: FakeChannel) -> None:
        required = cmd.get("default_member_permissions")
        if required is None or chan.guild_id is None:
            return
        guild = self.guilds[chan.guild_id]
        have = guild.permissions_for(self._member(guild, user))
        need = int(required)
        if have & ADMINISTRATOR or (need and have & need == need):
            return
        raise PermissionError(
            f"{user.username} cannot see /{cmd['name']} (default_member_permissions={need}); "
            "pass force=True to send anyway"
        )

    def _as_attachment(self, value: Any, chan: FakeChannel) -> FakeAttachment:
        if isinstance(value, FakeAttachment):
            return value
        filename, data, *rest = value
        return self._new_attachment(chan.id, filename, bytes(data), rest[0] if rest else None, ephemeral=True)

    @staticmethod
    def _infer_option_type(value: Any) -> int:
        if isinstance(value, bool):
            return 5
        if isinstance(value, int):
            return 4
        if isinstance(value, float):
            return 10
        if isinstance(value, str):
            return 3
        if isinstance(value, FakeUser | FakeMember):
            return 6
        if isinstance(value, FakeChannel):
            return 7
        if isinstance(value, FakeRole):
            return 8
        if isinstance(value, FakeAttachment | tuple):
            return 11
        raise TypeError(f"cannot infer an option type for {value!r}")

    def _resolve_entity(self, value: Any, chan: FakeChannel, resolved: dict[str, dict[str, Any]]) -> str:
        """Snowflake string for a user/member/role/channel value, filling ``resolved`` like Discord."""
        guild = self.guilds.get(chan.guild_id) if chan.guild_id is not None else None
        if isinstance(value, int) and not isinstance(value, bool):
            value = (
                self.users.get(value)
                or self.channels.get(value)
                or (guild.roles.get(value) if guild else None)
                or value
            )
        if isinstance(value, FakeMember | FakeUser):
            user = self._user(value)
            resolved.setdefault("users", {})[str(user.id)] = user.to_payload()
            if guild is not None and user.id in guild.members:
                member = guild.members[user.id]
                perms = guild.permissions_for(member, chan)
                resolved.setdefault("members", {})[str(user.id)] = {
                    **member.to_payload(with_user=False),
                    "permissions": str(perms),
                }
            return str(user.id)
        if isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.to_payload()
            return str(value.id)
        if isinstance(value, FakeChannel):
            data = {k: v for k, v in value.to_payload().items() if k in ("id", "type", "name", "parent_id", "guild_id")}
            if guild is not None:
                perms = guild.permissions_for(guild.members[self.bot_user.id], value)
                data["permissions"] = str(perms)
            resolved.setdefault("channels", {})[str(value.id)] = data
            return str(value.id)
        return str(value)

    def _option(
        self, name: str, otype: int, value: Any, chan: FakeChannel, resolved: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        if otype == 3:
            out: Any = str(value)
        elif otype == 4:
            out = int(value)
        elif otype == 5:
            out = bool(value)
        elif otype == 10:
            out = float(value)
        elif otype == 11:
            attachment = self._as_attachment(value, chan)
            resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.to_payload()
            out = str(attachment.id)
        elif otype in (6, 7, 8, 9):
            out = self._resolve_entity(value, chan, resolved)
        else:
            raise ValueError(f"option type {otype} is not an input option")
        return {"name": name, "type": otype, "value": out}

    def _command_data(
        self,
        name: str,
        chan: FakeChannel,
        user: FakeUser,
        options: dict[str, Any] | list[dict[str, Any]] | None,
        subcommand: str | None,
        attachments: Sequence[Any],
        *,
        allow_unsynced: bool,
        force: bool,
        focused: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        cmd = self._lookup_command(name, chan.guild_id)
        if cmd is None and not allow_unsynced:
            synced = sorted({c["name"] for c in self.commands})
            raise ValueError(f"/{name} was never synced (synced: {synced}); sync the tree or pass allow_unsynced=True")
        if cmd is not None and not force:
            self._check_command_permissions(cmd, user, chan)
        defs: list[dict[str, Any]] | None = (cmd.get("options") or []) if cmd is not None else None
        wrappers: list[tuple[int, str]] = []
        parts = subcommand.split() if subcommand else []
        for i, part in enumerate(parts):
            if defs is None:
                wrappers.append((1 if i == len(parts) - 1 else 2, part))
                continue
            found = next((o for o in defs if o.get("name") == part and o.get("type") in (1, 2)), None)
            if found is None:
                raise ValueError(f"/{name} has no subcommand {part!r}")
            wrappers.append((found["type"], part))
            defs = found.get("options") or []
        if defs and not parts and any(o.get("type") in (1, 2) for o in defs):
            raise ValueError(f"/{name} needs a subcommand: {[o['name'] for o in defs]}")
        resolved: dict[str, dict[str, Any]] = {}
        if isinstance(options, list):
            built = copy.deepcopy(options)
        else:
            values = dict(options or {})
            if attachments:
                free = [d["name"] for d in defs or [] if d.get("type") == 11 and d["name"] not in values]
                if len(free) < len(attachments):
                    raise ValueError(f"/{name} has no attachment option left for {len(attachments)} file(s)")
                values.update(zip(free, attachments, strict=False))
            built = []
            for opt_name, value in values.items():
                spec = next((d for d in defs or [] if d.get("name") == opt_name), None)
                if defs is not None and spec is None:
                    raise ValueError(f"/{name} has no option {opt_name!r}: {[d.get('name') for d in defs]}")
                otype = spec["type"] if spec is not None else self._infer_option_type(value)
                choices = [c["value"] for c in (spec or {}).get("choices") or []]
                if choices and value not in choices and not force:
                    raise ValueError(f"{value!r} is not a choice of {opt_name!r}: {choices}")
                built.append(self._option(opt_name, otype, value, chan, resolved))
            if focused is not None:
                spec = next((d for d in defs or [] if d.get("name") == focused[0]), None)
                otype = spec["type"] if spec is not None else 3
                built.append({"name": focused[0], "type": otype, "value": focused[1], "focused": True})
            elif defs is not None and not force:
                missing = [d["name"] for d in defs if d.get("required") and d["name"] not in values]
                if missing:
                    raise ValueError(f"/{name} is missing required option(s) {missing}")
        for wtype, wname in reversed(wrappers):
            built = [{"type": wtype, "name": wname, "options": built}]
        data: dict[str, Any] = {"id": cmd["id"] if cmd is not None else str(self.new_id()), "name": name, "type": 1}
        if cmd is not None and cmd.get("guild_id"):
            data["guild_id"] = cmd["guild_id"]
        if built:
            data["options"] = built
        if resolved:
            data["resolved"] = resolved
        return data

    async def open_interaction(
        self, *, user: FakeUser | FakeMember | int, channel: FakeChannel | int, name: str = "imagine"
    ) -> InteractionHandle:
        """A slash-command interaction that is not delivered through the gateway: for tests of code
        that only speaks REST (the tracker), which answer it themselves through its callback route.
        Age it with ``handle.created_at -= seconds`` (its token expires after
        ``interaction_token_seconds``)."""
        data = {"id": str(self.new_id()), "name": name, "type": 1, "options": []}
        return await self._send_interaction(2, data, user=user, channel=channel, deliver=False)

    async def slash(
        self,
        name: str,
        *,
        user: FakeUser | FakeMember | int,
        channel: FakeChannel | int,
        options: dict[str, Any] | list[dict[str, Any]] | None = None,
        subcommand: str | None = None,
        attachments: Sequence[tuple[str, bytes, str] | tuple[str, bytes] | FakeAttachment] = (),
        locale: str = "en-US",
        guild_locale: str | None = "en-US",
        allow_unsynced: bool = False,
        force: bool = False,
    ) -> InteractionHandle:
        """Invoke a slash command as ``user`` (type 2 APPLICATION_COMMAND).

        Option types come from the synced definition (or are inferred from Python values);
        attachment values are ``(filename, bytes[, content_type])`` and land in
        ``resolved.attachments``; ``attachments=`` fills the command's attachment options in order.
        ``subcommand`` is ``"sub"`` or ``"group sub"``. Like Discord's client this refuses unknown or
        missing required options, invalid choices and commands hidden by ``default_member_permissions``
        (``force=True`` skips those checks).
        """
        chan = self._channel(channel)
        target = self._user(user)
        data = self._command_data(
            name, chan, target, options, subcommand, attachments, allow_unsynced=allow_unsynced, force=force
        )
        return await self._send_interaction(
            2, data, user=target, channel=chan, locale=locale, guild_locale=guild_locale
        )

    async def autocomplete(
        self,
        name: str,
        focused: str,
        value: str,
        *,
        user: FakeUser | FakeMember | int,
        channel: FakeChannel | int,
        options: dict[str, Any] | None = None,
        subcommand: str | None = None,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Type 4 APPLICATION_COMMAND_AUTOCOMPLETE while typing ``value`` into option ``focused``."""
        chan = self._channel(channel)
        target = self._user(user)
        data = self._command_data(
            name, chan, target, options, subcommand, (), allow_unsynced=False, force=True, focused=(focused, value)
        )
        return await self._send_interaction(4, data, user=target, channel=chan, locale=locale)

    async def click(
        self,
        message: FakeMessage | int,
        custom_id: str,
        *,
        user: FakeUser | FakeMember | int,
        values: Sequence[Any] | None = None,
        force: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Click a button (or pick ``values`` in a select) on a recorded message (type 3).

        Refuses, like Discord's client, disabled or missing components, deleted messages and
        other users' ephemeral messages (``force=True`` skips those checks).
        """
        msg = self._message(message)
        target = self._user(user)
        comp = msg.component(custom_id)
        if not force:
            if msg.deleted:
                raise ValueError(f"message {msg.id} was deleted")
            if msg.visible_to is not None and msg.visible_to != target.id:
                raise ValueError(f"message {msg.id} is ephemeral and not visible to {target.username}")
            if comp is None:
                raise ValueError(f"no component {custom_id!r} on message {msg.id}: {msg.buttons}")
            if comp.get("disabled"):
                raise ValueError(f"component {custom_id!r} on message {msg.id} is disabled")
        comp = comp or {"type": 2}
        ctype = comp.get("type", 2)
        data: dict[str, Any] = {"custom_id": custom_id, "component_type": ctype}
        if comp.get("id") is not None:
            data["id"] = comp["id"]
        if ctype in _SELECT_TYPES:
            chan = self._channel(msg.channel_id)
            resolved: dict[str, dict[str, Any]] = {}
            chosen = list(values or [])
            if ctype == 3:
                allowed = [o["value"] for o in comp.get("options") or []]
                if not force and any(v not in allowed for v in chosen):
                    raise ValueError(f"{chosen} not all in the select's options {allowed}")
                data["values"] = [str(v) for v in chosen]
            else:
                data["values"] = [self._resolve_entity(v, chan, resolved) for v in chosen]
                data["resolved"] = resolved
        return await self._send_interaction(3, data, user=target, channel=msg.channel_id, message=msg, locale=locale)

    async def select(
        self, message: FakeMessage | int, custom_id: str, values: Sequence[Any], *, user: FakeUser | FakeMember | int
    ) -> InteractionHandle:
        """Pick ``values`` in a select menu (sugar for :meth:`click`)."""
        return await self.click(message, custom_id, user=user, values=values)

    def _modal_submission(
        self, modal: FakeModal | None, values: dict[str, Any], chan: FakeChannel, force: bool
    ) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
        if modal is None:
            rows = [
                {"type": 1, "components": [{"type": 4, "custom_id": k, "value": str(v)}]} for k, v in values.items()
            ]
            return rows, {}
        remaining = dict(values)
        resolved: dict[str, dict[str, Any]] = {}

        def submit(comp: dict[str, Any], label: str | None) -> dict[str, Any]:
            ctype = comp.get("type")
            out: dict[str, Any] = {"type": ctype, "id": comp.get("id"), "custom_id": comp.get("custom_id")}
            key = next((k for k in (comp.get("custom_id"), label) if k is not None and k in remaining), None)
            given = key is not None
            value = remaining.pop(key) if key is not None else None
            what = label or comp.get("custom_id")
            required = comp.get("required", True)
            if ctype == 4:
                text = str(value) if given else str(comp.get("value") or "")
                if not force:
                    if required and not text:
                        raise ValueError(f"modal field {what!r} is required")
                    if comp.get("max_length") is not None and len(text) > comp["max_length"]:
                        raise ValueError(f"modal field {what!r} allows {comp['max_length']} characters")
                    if text and comp.get("min_length") is not None and len(text) < comp["min_length"]:
                        raise ValueError(f"modal field {what!r} needs {comp['min_length']} characters")
                out["value"] = text
            elif ctype in _SELECT_TYPES or ctype == 22:
                chosen = [] if value is None else [value] if isinstance(value, str | int) else list(value)
                if not force and required and comp.get("min_values", 1) and not chosen:
                    raise ValueError(f"modal field {what!r} is required")
                if ctype in (3, 22):
                    out["values"] = [str(v) for v in chosen]
                else:
                    out["values"] = [self._resolve_entity(v, chan, resolved) for v in chosen]
            elif ctype == 19:
                files = [self._as_attachment(v, chan) for v in (value or [])]
                if not force and required and not files:
                    raise ValueError(f"modal field {what!r} is required")
                for attachment in files:
                    resolved.setdefault("attachments", {})[str(attachment.id)] = attachment.to_payload()
                out["values"] = [str(a.id) for a in files]
            elif ctype == 21:
                if not force and required and value is None:
                    raise ValueError(f"modal field {what!r} is required")
                out["value"] = value
            elif ctype == 23:
                out["value"] = bool(value)
            return out

        rows: list[dict[str, Any]] = []
        for comp in modal.components:
            ctype = comp.get("type")
            if ctype == 1:
                children = [submit(c, c.get("label")) for c in comp.get("components") or []]
                rows.append({"type": 1, "id": comp.get("id"), "components": children})
            elif ctype == 18:
                rows.append(
                    {"type": 18, "id": comp.get("id"), "component": submit(comp["component"], comp.get("label"))}
                )
            elif ctype == 10:
                rows.append({"type": 10, "id": comp.get("id")})
        if remaining and not force:
            raise ValueError(
                f"modal {modal.custom_id!r} has no field(s) {sorted(remaining)}: {[i.label for i in modal.inputs]}"
            )
        return rows, resolved

    async def submit_modal(
        self,
        custom_id: str,
        values: dict[str, Any],
        *,
        user: FakeUser | FakeMember | int,
        channel: FakeChannel | int,
        message: FakeMessage | int | None = None,
        force: bool = False,
        locale: str = "en-US",
    ) -> InteractionHandle:
        """Submit a modal (type 5 MODAL_SUBMIT); ``values`` are keyed by input custom_id or label.

        The submission mirrors the layout of the modal the bot opened (action rows or labels);
        required/min/max checks apply like in Discord's client (``force=True`` skips them).
        ``message`` is the message whose component opened the modal, if any.
        """
        chan = self._channel(channel)
        modal = next((m for m in reversed(self.modals) if m.custom_id == custom_id), None)
        if modal is None and not force:
            raise ValueError(f"the bot never opened modal {custom_id!r} (opened: {[m.custom_id for m in self.modals]})")
        components, resolved = self._modal_submission(modal, values, chan, force)
        data: dict[str, Any] = {"custom_id": custom_id, "components": components}
        if resolved:
            data["resolved"] = resolved
        msg = self._message(message) if message is not None else None
        return await self._send_interaction(5, data, user=user, channel=chan, message=msg, locale=locale)

    # ------------------------------------------------------------------ user actions: messages

    async def user_message(
        self,
        content: str = "",
        *,
        user: FakeUser | FakeMember | int,
        channel: FakeChannel | int,
        attachments: Sequence[tuple[str, bytes, str] | tuple[str, bytes]] = (),
        reply_to: FakeMessage | int | None = None,
    ) -> FakeMessage:
        """A user posts a message (MESSAGE_CREATE; content stripped without MESSAGE_CONTENT intent)."""
        chan = self._channel(channel)
        author = self._user(user)
        if chan.guild_id is not None:
            self._member(self.guilds[chan.guild_id], author)
        uploads = [_Upload(i, a[0], bytes(a[1]), a[2] if len(a) > 2 else None) for i, a in enumerate(attachments)]
        data: dict[str, Any] = {"content": content}
        if reply_to is not None:
            target = self._message(reply_to)
            data["message_reference"] = {"message_id": str(target.id), "channel_id": str(target.channel_id)}
        msg = self._create_message(chan, data, uploads, author=author, source="user")
        await self._echo("MESSAGE_CREATE", msg)
        self._notify()
        return msg

    async def delete_message(self, channel: FakeChannel | int, message: FakeMessage | int) -> None:
        """A user (moderator) deletes a message: recorded as deleted, MESSAGE_DELETE dispatched."""
        msg = self._message(message)
        chan = self._channel(channel)
        if msg.channel_id != chan.id:
            raise ValueError(f"message {msg.id} is not in channel {chan.id}")
        msg.deleted = True
        await self._echo("MESSAGE_DELETE", msg)
        self._notify()


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)
