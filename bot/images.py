"""Image bytes: checking what users upload, and fetching finished images to re-upload.

Downloads use their own keyless HTTP client: result links point at Discord's CDN or the relay's
image proxy, and an API key must never travel to any host but its own base URL.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import aiohttp
from PIL import Image, UnidentifiedImageError

from bot.errors import InputError, TransientError

log = logging.getLogger(__name__)

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


def sniff_image(data: bytes) -> str | None:
    """The image type from the bytes themselves (never trust a file name or a Content-Type)."""
    for signature, mime in _SIGNATURES:
        if data.startswith(signature):
            return mime
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True, slots=True)
class CheckedImage:
    data: bytes
    mime: str
    width: int
    height: int

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.mime, "png")


#: An upload up to this many times the size limit is shrunk to fit instead of refused.
SHRINK_FACTOR = 4
#: Refuse decompression bombs: more pixels than a 8K x 5K photo is not a reference image.
MAX_PIXELS = 40_000_000
_LONGEST_SIDE = 2048


def _too_large(size: int, max_bytes: int) -> InputError:
    return InputError("input.too_large", size_mb=f"{size / 1048576:.1f}", limit_mb=f"{max_bytes / 1048576:.0f}")


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


def check_image(data: bytes, *, max_bytes: int) -> CheckedImage:
    """Reject non-images and corrupt images; shrink moderately oversized ones, refuse the rest.

    Each case is a user-facing InputError, so nothing is submitted for a bad upload.
    """
    if len(data) > max_bytes * SHRINK_FACTOR:
        raise _too_large(len(data), max_bytes)
    mime = sniff_image(data)
    if mime is None:
        raise InputError("input.not_image")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise _too_large(len(data), max_bytes)
            image.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            width, height = image.size
            if len(data) > max_bytes:
                smaller = shrink(image, max_bytes)
                if smaller is None:
                    raise _too_large(len(data), max_bytes)
                log.info("Shrank an upload from %d to %d bytes", len(data), len(smaller))
                with Image.open(io.BytesIO(smaller)) as shrunk:
                    width, height = shrunk.size
                return CheckedImage(data=smaller, mime="image/jpeg", width=width, height=height)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InputError("input.corrupt_image") from None
    return CheckedImage(data=data, mime=mime, width=width, height=height)


class ImageFetcher:
    """Downloads result images with a size cap, without any credentials.

    aiohttp, not httpx (which the API client uses): at scale every finished task is one download,
    and the same download costs about five times less CPU through aiohttp than through httpx 0.28 /
    httpcore 1.0 (whose pool scans every connection on each request): bench/tracker.py at 10,000
    tasks was CPU-bound on it. discord.py already runs on aiohttp, so it adds nothing to install.
    """

    def __init__(self, *, timeout: float = 60.0, max_connections: int = 32) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=10.0)
        self._max_connections = max(1, max_connections)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (aiohttp binds a session to its loop).
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def fetch(self, url: str, *, max_bytes: int) -> bytes | None:
        """The bytes, or None when the image is larger than `max_bytes` (caller falls back to the link).

        Network failures raise TransientError so the tracker retries on its next cycle.
        """
        try:
            async with self._open().get(url) as response:
                if response.status >= 400:
                    raise TransientError(f"image download answered HTTP {response.status}")
                if response.content_length is not None and response.content_length > max_bytes:
                    return None
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.content.iter_chunked(64 * 1024):
                    size += len(chunk)
                    if size > max_bytes:
                        return None
                    chunks.append(chunk)
                return b"".join(chunks)
        except (TimeoutError, aiohttp.ClientError) as exc:  # aiohttp.InvalidURL included
            raise TransientError(f"image download failed: {type(exc).__name__}") from None
