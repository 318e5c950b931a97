"""Vary (Region): signed editor links, the mask, and the two-step submit.

A Discord button cannot open an image editor, so the click answers (privately) with a link to the
bot's own web page (bot/web/server.py). The link is the only credential the page has: an HMAC over task,
button, user, language and expiry, valid for LINK_TTL seconds and good for one submit.

The mask follows MJ_API_DETAILS.md §7.3: a PNG of the image's pixel size, fully opaque, white where
Midjourney may repaint and black where it must keep the picture.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import logging
import math
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw

from bot import render
from bot.errors import BotError, InputError
from bot.models import SUCCESS, Origin, TaskRecord
from bot.prompts import clean_prompt
from bot.requests import ActionRequest
from bot.tracking.posting import post_tracked
from bot.upstream.client import data_url

if TYPE_CHECKING:
    import discord

    from bot.jobs import Jobs

log = logging.getLogger(__name__)

LINK_TTL = 15 * 60
MAX_SHAPES = 200
MAX_POINTS = 20_000
#: Largest picture the editor draws a mask for (a 4x upscale is 4096 x 4096); checked on the header.
MAX_PIXELS = 4096 * 4096
#: What one selection may ink, in multiples of the picture's area: each brush point stamps a disc
#: of its size, so 20,000 points of a huge brush would cost tens of seconds of CPU per request.
MAX_INK = 8
#: How far off the picture a coordinate may be, in picture sizes.
MAX_OFF_PICTURE = 100
_TASK_ID = re.compile(r"[0-9A-Za-z_-]{1,40}")
_LOCALE = re.compile(r"[A-Za-z]{2}(-[A-Za-z]{2})?")


class LinkError(BotError):
    """The editor link is malformed, signed with another key, or expired. Never says which part
    of a signature was wrong."""

    def __init__(self, key: str) -> None:
        super().__init__("")
        self.key = key


@dataclass(frozen=True, slots=True)
class InpaintLink:
    """What a signed editor link grants: one Vary (Region) on `task_id`'s button `index` for `user_id`."""

    task_id: str
    index: int
    user_id: int
    locale: str
    expires: int

    def payload(self) -> str:
        return f"{self.task_id}:{self.index}:{self.user_id}:{self.locale}:{self.expires}"

    @classmethod
    def from_payload(cls, text: str) -> InpaintLink:
        parts = text.split(":")
        if len(parts) != 5:
            raise ValueError("wrong number of fields")
        task_id, index, user_id, locale, expires = parts
        if not _TASK_ID.fullmatch(task_id) or not _LOCALE.fullmatch(locale):
            raise ValueError("bad task id or locale")
        if not (index.isdigit() and user_id.isdigit() and expires.isdigit()):
            raise ValueError("bad number")
        return cls(task_id, int(index), int(user_id), locale, int(expires))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    """Strict: only the one spelling `_b64` produces (no padding, no stray or non-canonical
    characters), so one link cannot be written several ways, each claiming its own submit."""
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical spelling")
    return data


class LinkSigner:
    """Signs and checks editor links with a key that never leaves the bot (kept in the database)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the link key must be at least 16 bytes")
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, b"inpaint-link\0" + payload, hashlib.sha256).digest()

    def sign(self, link: InpaintLink) -> str:
        payload = link.payload().encode("ascii")
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def new_link(
        self, task_id: str, index: int, user_id: int, locale: str, *, now: float | None = None, ttl: int = LINK_TTL
    ) -> tuple[str, InpaintLink]:
        expires = int((time.time() if now is None else now) + ttl)
        link = InpaintLink(task_id, index, user_id, locale if _LOCALE.fullmatch(locale) else "en", expires)
        return self.sign(link), link

    def verify(self, token: str, *, now: float | None = None) -> InpaintLink:
        """The link a token grants; LinkError('web.link_invalid' / 'web.link_expired') otherwise."""
        head, dot, tail = token.partition(".")
        if not dot or len(token) > 512:
            raise LinkError("web.link_invalid")
        try:
            payload, mac = _unb64(head), _unb64(tail)
        except (binascii.Error, ValueError):
            raise LinkError("web.link_invalid") from None
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise LinkError("web.link_invalid")
        try:
            link = InpaintLink.from_payload(payload.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise LinkError("web.link_invalid") from None
        if (time.time() if now is None else now) >= link.expires:
            raise LinkError("web.link_expired")
        return link


def link_id(token: str) -> str:
    """A short, stable name for one link (its signature's bytes, not their spelling): the one-submit
    claim is keyed by it. Call it on a token `LinkSigner.verify` accepted."""
    try:
        mac = _unb64(token.rpartition(".")[2])
    except (binascii.Error, ValueError):
        raise LinkError("web.link_invalid") from None
    return _b64(mac[:16])


# ---- the mask ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rect:
    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True, slots=True)
class Stroke:
    size: float
    points: tuple[tuple[float, float], ...]


Shape = Rect | Stroke


def _number(value: Any, limit: float) -> float:
    """A coordinate or size within `limit` either way: finite, and so is any sum of two (a rect's
    x + w of 1e308 each would overflow when drawn)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) <= limit:
        raise InputError("web.bad_selection")
    return float(value)


def check_picture_size(width: int, height: int) -> None:
    """Refuse a picture too large to draw a mask for, before anything is decoded or drawn."""
    if width < 1 or height < 1 or width * height > MAX_PIXELS:
        raise InputError("web.image_too_large")


def parse_shapes(raw: Any, width: int, height: int) -> list[Shape]:
    """The browser's selection (image pixel coordinates) as shapes; refuses anything malformed, or
    more than `MAX_POINTS` points or `MAX_INK` times the picture's area to draw."""
    if not isinstance(raw, list) or not raw or len(raw) > MAX_SHAPES:
        raise InputError("web.empty_selection" if raw == [] else "web.bad_selection")
    shapes: list[Shape] = []
    points_total = 0
    ink = 0.0
    largest = max(width, height)
    # A drag may end off the picture (it is clamped when drawn), but not pictures away from it.
    limit = MAX_OFF_PICTURE * largest
    for item in raw:
        if not isinstance(item, dict):
            raise InputError("web.bad_selection")
        kind = item.get("type")
        if kind == "rect":
            x, y = _number(item.get("x"), limit), _number(item.get("y"), limit)
            w, h = _number(item.get("w"), limit), _number(item.get("h"), limit)
            shapes.append(Rect(min(x, x + w), min(y, y + h), max(x, x + w), max(y, y + h)))
        elif kind == "brush":
            size = _number(item.get("size"), limit)
            points = item.get("points")
            if not 1 <= size <= largest or not isinstance(points, list) or not points:
                raise InputError("web.bad_selection")
            points_total += len(points)
            if points_total > MAX_POINTS:
                raise InputError("web.bad_selection")
            pairs = []
            for point in points:
                if not isinstance(point, list | tuple) or len(point) != 2:
                    raise InputError("web.bad_selection")
                pairs.append((_number(point[0], limit), _number(point[1], limit)))
            shapes.append(Stroke(size, tuple(pairs)))
            ink += len(pairs) * size * size
        else:
            raise InputError("web.bad_selection")
        if ink > MAX_INK * width * height:
            raise InputError("web.selection_too_large")
    return shapes


def build_mask(width: int, height: int, shapes: list[Shape]) -> bytes:
    """The mask PNG: `width` x `height`, RGB (opaque), only pure black (keep) and white (repaint).

    Raises InputError when nothing of the selection lands on the image.
    """
    if width < 1 or height < 1:
        raise ValueError("empty image")
    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for shape in shapes:
        if isinstance(shape, Rect):
            # Pixel i covers [i, i+1): a pixel is repainted when the rectangle covers any of it.
            x0, y0 = max(0, math.floor(shape.x0)), max(0, math.floor(shape.y0))
            x1, y1 = min(width, math.ceil(shape.x1)), min(height, math.ceil(shape.y1))
            if x1 > x0 and y1 > y0:
                draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
        else:
            radius = shape.size / 2
            for x, y in shape.points:  # round caps and joints
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=255)
            if len(shape.points) > 1:
                draw.line(list(shape.points), fill=255, width=max(1, round(shape.size)))
    mask = mask.point(lambda value: 255 if value >= 128 else 0)
    if mask.getbbox() is None:
        raise InputError("web.empty_selection")
    out = io.BytesIO()
    mask.convert("RGB").save(out, format="PNG", optimize=True)
    return out.getvalue()


# ---- the two-step submit ---------------------------------------------------------------------------


def check_parent(parent: TaskRecord | None, index: int) -> TaskRecord:
    """The finished task whose button `index` is a Vary (Region), or the user-facing reason why not."""
    if parent is None:
        raise InputError("click.unknown_task")
    if parent.status != SUCCESS:
        raise InputError("click.not_finished")
    button = parent.button(index)
    if button is None or not render.is_inpaint(button):
        raise InputError("click.unknown_button")
    return parent


async def claim_link(jobs: Jobs, parent: TaskRecord, link: InpaintLink, link_key: str) -> str:
    """Take the link's one submit before any work is done for it (reading the picture, drawing the
    mask), so replaying one link costs the host nothing. The claim's name, for `release_link`."""
    claim = f"region:{link_key}"
    if not await jobs.store.claim_click(parent.key, claim, link.user_id, window=LINK_TTL + 60):
        raise InputError("web.already_submitted")
    return claim


async def release_link(jobs: Jobs, parent: TaskRecord, claim: str) -> None:
    """Nothing was charged (a bad selection, a refused submit): the link may be used again."""
    await jobs.store.release_click(parent.key, claim)


async def submit_region(
    client: discord.Client,
    jobs: Jobs,
    *,
    link: InpaintLink,
    parent: TaskRecord,
    prompt: str,
    mask_png: bytes,
) -> tuple[TaskRecord, discord.Message | None]:
    """/submit/action with the Inpaint customId, then /submit/modal with prompt + mask, then the new
    task's message as a reply to the parent. The caller holds the link's claim (`claim_link`) and
    releases it when this raises a BotError (nothing was charged)."""
    button = parent.button(link.index)
    assert button is not None  # check_parent ran
    text = clean_prompt(prompt)
    record, result = await jobs.submit(
        ActionRequest(task_id=parent.id, custom_id=button.custom_id),
        # The parent's server's rules; a result shown in its owner's DMs has no channel rule there.
        Origin(
            user_id=link.user_id,
            channel_id=parent.channel_id,
            guild_id=parent.guild_id,
            locale=link.locale,
            in_dm=parent.in_dm,
        ),
        action=render.action_for_button(button),
        prompt=text,
        parent=parent,
    )
    if result.needs_modal:
        record, _ = await jobs.submit_modal(record, text, mask_base64=data_url(mask_png, "image/png"))
    else:
        log.warning("Task %s: the server ran Vary (Region) without asking for the mask", record.id)
    log.info("Vary (Region) on %s submitted as task %s", parent.id, record.id)
    return await post_tracked(client, jobs, record)
