"""Image bytes: checking what members upload, and recognising the results the bot may post.

Downloads themselves go through bot.net.fetcher (the one guarded way out of the bot).
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from bot.errors import InputError

log = logging.getLogger(__name__)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp", "video/mp4": "mp4"}


def sniff_image(data: bytes) -> str | None:
    """The image type from the bytes themselves (never trust a file name or a Content-Type)."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True, slots=True)
class Media:
    """Bytes the bot has looked inside: a picture Pillow decoded, or an MP4 video (width and height
    0: its frames are not decoded), with the type its bytes declare."""

    data: bytes
    mime: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.mime, "png")

    @property
    def is_video(self) -> bool:
        return self.mime.startswith("video/")


#: An upload up to this many times the size limit is shrunk to fit instead of refused.
SHRINK_FACTOR = 4
#: An upload with more pixels than this is shrunk (a 48-megapixel phone photo is a fine reference
#: image once it is 2048 pixels wide), even when its file is small.
MAX_PIXELS = 40_000_000
#: More pixels than this are refused before decoding (decompression bombs). JPEGs decode at 1/2 to
#: 1/8 scale when shrunk (Pillow's draft mode), so they may be larger than other formats.
MAX_DECODE_PIXELS = 64_000_000
MAX_JPEG_PIXELS = 150_000_000
#: A result from an image service with more pixels than this is not posted (Midjourney's largest
#: upscales are 16 megapixels).
MAX_RESULT_PIXELS = 64_000_000
_LONGEST_SIDE = 2048


def _too_large(size: int, max_bytes: int) -> InputError:
    return InputError("input.too_large", size_mb=f"{size / 1048576:.1f}", limit_mb=f"{max_bytes / 1048576:.0f}")


def _too_many_pixels(pixels: int, limit: int) -> InputError:
    return InputError("input.too_many_pixels", megapixels=f"{pixels / 1e6:.0f}", limit_mp=f"{limit / 1e6:.0f}")


def shrink(image: Image.Image, max_bytes: int) -> bytes | None:
    """Re-encode as JPEG, scaling down until it fits; None if even a small version does not."""
    if image.mode not in ("RGB", "L"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, "white")
        background.paste(rgba, mask=rgba.getchannel("A"))
        image = background
    scale = min(1.0, _LONGEST_SIDE / max(image.size))
    while True:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resized = image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)
        for quality in (90, 80, 70):
            buffer = io.BytesIO()
            resized.save(buffer, "JPEG", quality=quality, optimize=True)
            if buffer.tell() <= max_bytes:
                return buffer.getvalue()
        scale *= 0.75
        if max(size) < 256:
            return None


def check_image(data: bytes, *, max_bytes: int) -> Media:
    """Reject non-images and corrupt images; shrink images too large in bytes or in pixels; refuse
    the rest, naming the real reason (bytes or pixels).

    Each case is a user-facing InputError, so nothing is submitted for a bad upload. CPU-bound:
    call it through `check_upload` from the event loop.
    """
    if len(data) > max_bytes * SHRINK_FACTOR:
        raise _too_large(len(data), max_bytes)
    mime = sniff_image(data)
    if mime is None:
        raise InputError("input.not_image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            pixels = image.width * image.height
            limit = MAX_JPEG_PIXELS if mime == "image/jpeg" else MAX_DECODE_PIXELS
            if pixels > limit:
                raise _too_many_pixels(pixels, limit)
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            if len(data) <= max_bytes and pixels <= MAX_PIXELS:
                image.load()
                return Media(data=data, mime=mime, width=image.width, height=image.height)
            # JPEG: decode at the smallest scale that still gives the longest side we keep.
            image.draft("RGB", (_LONGEST_SIDE, _LONGEST_SIDE))
            image.load()
            smaller = shrink(image, max_bytes)
        if smaller is None:
            raise _too_large(len(data), max_bytes)
        log.info("Shrank an upload from %d bytes, %d pixels to %d bytes", len(data), pixels, len(smaller))
        with Image.open(io.BytesIO(smaller)) as shrunk:
            return Media(data=smaller, mime="image/jpeg", width=shrunk.width, height=shrunk.height)
    except InputError:
        raise
    except Exception:
        raise InputError("input.corrupt_image") from None


async def check_upload(data: bytes, *, max_bytes: int) -> Media:
    """check_image off the event loop: decoding a member's 28 MiB photo must not pause every guild."""
    return await asyncio.to_thread(check_image, data, max_bytes=max_bytes)


# ---- results: what the bot may post ---------------------------------------------------------------


def _pillow_image(data: bytes) -> Media | None:
    """A picture Pillow decodes, within MAX_RESULT_PIXELS."""
    mime = sniff_image(data)
    if mime is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            if width * height > MAX_RESULT_PIXELS:
                return None
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (256, 256))  # JPEG: a cheap decode at 1/8 scale still proves the stream
            image.load()
    except Exception:
        return None
    return Media(data=data, mime=mime, width=width, height=height)


MediaCheck = Callable[[bytes], "Media | None"]


def _mp4_video(data: bytes) -> Media | None:
    """An MP4 (Midjourney's video results), by its first box: `ftyp` with an ISO/MP4 brand."""
    if len(data) < 16 or data[4:8] != b"ftyp" or data[8:12] not in _MP4_BRANDS:
        return None
    box = int.from_bytes(data[:4], "big")
    if not 16 <= box <= min(len(data), 4096):
        return None
    return Media(data=data, mime="video/mp4", width=0, height=0)


_MP4_BRANDS = frozenset({b"isom", b"iso2", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"avc1", b"M4V ", b"dash"})

#: How a downloaded result is recognised, first match wins. Each check looks at the bytes alone
#: (never a Content-Type or a file name); another allowed type is one more check here.
MEDIA_CHECKS: list[MediaCheck] = [_pillow_image, _mp4_video]


def identify_media(data: bytes) -> Media | None:
    """The Media these bytes are, or None when no check recognises them (CPU-bound: use a thread)."""
    for check in MEDIA_CHECKS:
        media = check(data)
        if media is not None:
            return media
    return None
