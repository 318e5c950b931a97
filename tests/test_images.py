from __future__ import annotations

import io
import os
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from PIL import Image

from bot.errors import InputError, TransientError
from bot.images import SHRINK_FACTOR, ImageFetcher, check_image, sniff_image


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
)
def test_sniffs_real_formats(fmt: str, mime: str) -> None:
    assert sniff_image(encode(Image.new("RGB", (8, 8)), fmt)) == mime


def test_refuses_text_with_an_image_name() -> None:
    with pytest.raises(InputError) as caught:
        check_image(b"GIF? no, just text", max_bytes=1000)
    assert caught.value.key == "input.not_image"


def test_refuses_a_truncated_png() -> None:
    data = encode(Image.new("RGB", (64, 64), "red"), "PNG")
    with pytest.raises(InputError) as caught:
        check_image(data[: len(data) // 2], max_bytes=10**6)
    assert caught.value.key == "input.corrupt_image"


def test_shrinks_an_oversized_transparent_png_to_jpeg() -> None:
    noisy = Image.frombytes("RGBA", (600, 600), os.urandom(600 * 600 * 4))
    data = encode(noisy, "PNG")
    limit = len(data) // 3
    checked = check_image(data, max_bytes=limit)
    assert checked.mime == "image/jpeg" and len(checked.data) <= limit


def test_refuses_far_too_large_files_without_decoding() -> None:
    with pytest.raises(InputError) as caught:
        check_image(b"\x89PNG\r\n\x1a\n" + b"0" * (SHRINK_FACTOR * 1000 + 1), max_bytes=1000)
    assert caught.value.key == "input.too_large"


def test_refuses_decompression_bombs() -> None:
    bomb = encode(Image.new("1", (10000, 5000)), "PNG")  # tiny file, 50 million pixels
    with pytest.raises(InputError) as caught:
        check_image(bomb, max_bytes=10**6)
    assert caught.value.key == "input.too_large"


# ---- ImageFetcher: downloads from a real HTTP server on 127.0.0.1 ----------------------------------


@pytest.fixture
async def image_server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """Serves a PNG (declared length), the same without a length (chunked), a 500, a redirect."""
    png = encode(Image.frombytes("RGB", (32, 32), os.urandom(32 * 32 * 3)), "PNG")  # about 3 KB
    seen: list[web.Request] = []

    async def sized(request: web.Request) -> web.Response:
        seen.append(request)
        return web.Response(body=png, content_type="image/png")

    async def chunked(request: web.Request) -> web.StreamResponse:
        seen.append(request)
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(png), 100):
            await response.write(png[start : start + 100])
        await response.write_eof()
        return response

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/sized.png")

    app = web.Application()
    app.router.add_get("/sized.png", sized)
    app.router.add_get("/chunked.png", chunked)
    app.router.add_get("/broken.png", broken)
    app.router.add_get("/moved.png", moved)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_fetcher_downloads_follows_redirects_and_sends_no_credentials(
    image_server: tuple[str, list[web.Request]],
) -> None:
    base, seen = image_server
    fetcher = ImageFetcher()
    try:
        for path in ("/sized.png", "/chunked.png", "/moved.png"):
            data = await fetcher.fetch(base + path, max_bytes=10**6)
            assert data is not None and sniff_image(data) == "image/png"
    finally:
        await fetcher.aclose()
    assert all("Authorization" not in r.headers and "mj-api-secret" not in r.headers for r in seen)


@pytest.mark.parametrize("path", ["/sized.png", "/chunked.png"])
async def test_fetcher_gives_up_on_an_image_over_the_cap(
    image_server: tuple[str, list[web.Request]], path: str
) -> None:
    base, _ = image_server
    fetcher = ImageFetcher()
    try:
        assert await fetcher.fetch(base + path, max_bytes=1000) is None  # declared or counted while streaming
    finally:
        await fetcher.aclose()


async def test_fetcher_turns_failures_into_transient_errors(image_server: tuple[str, list[web.Request]]) -> None:
    base, _ = image_server
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    fetcher = ImageFetcher(timeout=5.0)
    try:
        for url in (base + "/broken.png", f"http://127.0.0.1:{closed}/x.png", "http://[not a url/x.png"):
            with pytest.raises(TransientError):
                await fetcher.fetch(url, max_bytes=10**6)
    finally:
        await fetcher.aclose()
