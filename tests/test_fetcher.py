"""The guarded fetcher (issue 15 items 1 and 9): the real Fetcher against real HTTP servers on 127.0.0.1.

127.0.0.1 is itself a non-public address, so a server there is reachable only through the operator's
`host:port` exception; every test that expects a refusal also checks that no request arrived.
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from PIL import Image

from bot.errors import DownloadRefused, DownloadTooLarge, NotMedia, TransientError
from bot.images import MEDIA_CHECKS, Media, sniff_image
from bot.net.addresses import AddressPolicy, AddressRefused, Origin, is_public, literal_address, parse_host_port
from bot.net.fetcher import Fetcher, _guarded_socket
from tests.fakes.http import serve


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (32, 32), os.urandom(32 * 32 * 3)).save(buffer, "PNG")  # about 3 KB
    return buffer.getvalue()


@dataclass
class Server:
    """One aiohttp server on 127.0.0.1 with the routes a test needs; `seen` lists the paths asked."""

    base: str = ""
    port: int = 0
    seen: list[str] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)

    @property
    def pair(self) -> str:
        return f"127.0.0.1:{self.port}"


async def start_server(routes: dict[str, Callable[[web.Request], object]]) -> tuple[Server, web.AppRunner]:
    server = Server()

    @web.middleware
    async def record(request: web.Request, handler: Callable[[web.Request], object]) -> web.StreamResponse:
        server.seen.append(request.path)
        server.headers.append({k.lower(): v for k, v in request.headers.items()})
        return await handler(request)  # type: ignore[misc, no-any-return]

    app = web.Application(middlewares=[record])
    for path, handler in routes.items():
        app.router.add_get(path, handler)  # type: ignore[arg-type]
    runner, server.port = await serve(app)
    server.base = f"http://127.0.0.1:{server.port}"
    return server, runner


@pytest.fixture
async def target() -> AsyncIterator[Server]:
    """What an attacker wants reached: a service on the bot's own machine."""
    png = png_bytes()

    async def secret(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    server, runner = await start_server({"/secret.png": secret})
    yield server
    await runner.cleanup()


@pytest.fixture
async def images(target: Server) -> AsyncIterator[Server]:
    """An image host the operator allowed; it serves good pictures and every bad kind of answer."""
    png = png_bytes()

    async def sized(request: web.Request) -> web.Response:
        return web.Response(body=png, content_type="image/png")

    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(png), 100):
            await response.write(png[start : start + 100])
        await response.write_eof()
        return response

    async def slow(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(png[:8])
        for _ in range(600):  # a byte every 0.1 s: each read is quick, the whole is endless
            await asyncio.sleep(0.1)
            await response.write(b"\0")
        return response

    async def text(request: web.Request) -> web.Response:
        return web.Response(text='{"secret": "instance metadata"}', content_type="image/png")

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500)

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/sized.png")

    async def to_target(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{target.base}/secret.png")

    async def to_metadata(request: web.Request) -> web.Response:
        raise web.HTTPFound("http://169.254.169.254/latest/meta-data/iam.png")

    async def loop(request: web.Request) -> web.Response:
        raise web.HTTPFound("/loop.png")

    server, runner = await start_server(
        {
            "/sized.png": sized,
            "/chunked.png": chunked,
            "/slow.png": slow,
            "/text.png": text,
            "/broken.png": broken,
            "/moved.png": moved,
            "/to-target.png": to_target,
            "/to-metadata.png": to_metadata,
            "/loop.png": loop,
        }
    )
    yield server
    await runner.cleanup()


@pytest.fixture
async def fetcher(images: Server) -> AsyncIterator[Fetcher]:
    """The fetcher as the bot builds it, with the image host's host:port allowed (KEY_ALLOWED_HOSTS)."""
    fetcher = Fetcher(AddressPolicy(allowed_pairs=frozenset({images.pair})), deadline=5.0)
    yield fetcher
    await fetcher.aclose()


# ---- the address rule -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "0",
        "0.0.0.0",
        "[::ffff:127.0.0.1]",
        "[::1]",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.5",
        "169.254.169.254",
        "100.64.0.1",
        "[fd00::1]",
        "[fe80::1]",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "[ff02::1]",
        "[64:ff9b::7f00:1]",
        "[2002:7f00:1::]",
    ],
)
def test_every_spelling_of_a_non_public_address_is_refused(host: str) -> None:
    address = literal_address(host)
    assert address is not None and not is_public(address)


@pytest.mark.parametrize("host", ["93.184.216.34", "1.1.1.1", "[2606:4700:4700::1111]"])
def test_public_addresses_pass(host: str) -> None:
    address = literal_address(host)
    assert address is not None and is_public(address)


def test_exceptions_cover_one_host_and_port_and_one_exact_origin() -> None:
    policy = AddressPolicy(allowed_pairs=frozenset({"127.0.0.1:9000"}))
    policy.trust("http://10.0.0.5:8080")
    assert policy.exempt("http://127.0.0.1:9000/x.png") and policy.exempt("https://127.0.0.1:9000/x.png")
    assert not policy.exempt("http://127.0.0.1:9001/x.png")  # same host, other port
    assert not policy.exempt("http://127.1:9000/x.png")  # another spelling is another host
    assert policy.exempt("http://10.0.0.5:8080/mj/image/1")
    assert not policy.exempt("https://10.0.0.5:8080/mj/image/1")  # other scheme
    assert not policy.exempt("http://10.0.0.5/mj/image/1")  # other port (80)
    assert Origin.of("http://[::1]:80/x") == Origin("http", "::1", 80)
    assert parse_host_port("127.0.0.1") is None and parse_host_port("[::1]:8080") == "[::1]:8080"


def test_the_socket_factory_refuses_the_address_it_is_asked_to_connect() -> None:
    with pytest.raises(AddressRefused):
        _guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80)))
    with pytest.raises(AddressRefused):
        _guarded_socket((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", 80, 0, 0)))
    _guarded_socket((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))).close()


# ---- downloads ---------------------------------------------------------------------------------------


async def test_downloads_from_an_allowed_host_follow_redirects_and_send_no_credentials(
    images: Server, fetcher: Fetcher
) -> None:
    for path in ("/sized.png", "/chunked.png", "/moved.png"):
        media = await fetcher.fetch_media(images.base + path, max_bytes=10**6)
        assert media.mime == "image/png" and media.width == 32 and sniff_image(media.data) == "image/png"
    assert images.headers and all(
        not {"authorization", "mj-api-secret", "cookie"} & set(headers) for headers in images.headers
    )


async def test_a_link_to_cloud_metadata_is_refused_before_connecting(fetcher: Fetcher) -> None:
    with pytest.raises(DownloadRefused):
        await fetcher.fetch("http://169.254.169.254/latest/meta-data/iam.png", max_bytes=10**6)


@pytest.mark.parametrize(
    "spelling", ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "0177.0.0.1", "0", "[::ffff:127.0.0.1]", "localhost"]
)
async def test_every_spelling_of_the_bots_own_machine_is_refused(
    spelling: str, target: Server, fetcher: Fetcher
) -> None:
    with pytest.raises(DownloadRefused):
        await fetcher.fetch(f"http://{spelling}:{target.port}/secret.png", max_bytes=10**6)
    assert target.seen == []


async def test_the_allowed_host_on_another_port_is_refused(images: Server, target: Server) -> None:
    fetcher = Fetcher(AddressPolicy(allowed_pairs=frozenset({images.pair})))
    fetcher.policy.trust(images.base)
    try:
        with pytest.raises(DownloadRefused):
            await fetcher.fetch(f"http://127.0.0.1:{target.port}/secret.png", max_bytes=10**6)
    finally:
        await fetcher.aclose()
    assert target.seen == []


@pytest.mark.parametrize("path", ["/to-target.png", "/to-metadata.png"])
async def test_every_redirect_hop_is_checked_again(path: str, images: Server, target: Server, fetcher: Fetcher) -> None:
    with pytest.raises(DownloadRefused):
        await fetcher.fetch(images.base + path, max_bytes=10**6)
    assert images.seen == [path] and target.seen == []


async def test_endless_redirects_are_refused(images: Server, fetcher: Fetcher) -> None:
    with pytest.raises(DownloadRefused) as caught:
        await fetcher.fetch(images.base + "/loop.png", max_bytes=10**6)
    assert caught.value.key == "download.bad_link"


class RebindingResolver(AbstractResolver):
    """DNS that answers a public address the first time (when someone checks the name) and the
    bot's own machine afterwards (when the bot connects)."""

    def __init__(self) -> None:
        self.answers = 0

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.answers += 1
        address = "93.184.216.34" if self.answers == 1 else "127.0.0.1"
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0, "flags": 0}]

    async def close(self) -> None:
        pass


async def test_a_name_that_rebinds_to_the_bots_own_machine_is_refused_when_connecting(target: Server) -> None:
    resolver = RebindingResolver()
    first = await resolver.resolve("images.example", target.port)
    assert is_public(literal_address(first[0]["host"]))  # type: ignore[arg-type]  # what a check at add time saw
    fetcher = Fetcher(resolver=resolver)
    try:
        with pytest.raises(DownloadRefused):
            await fetcher.fetch(f"http://images.example:{target.port}/secret.png", max_bytes=10**6)
    finally:
        await fetcher.aclose()
    assert resolver.answers == 2 and target.seen == []


@pytest.mark.parametrize("path", ["/sized.png", "/chunked.png"])
async def test_a_body_over_the_cap_is_refused_declared_or_streamed(path: str, images: Server, fetcher: Fetcher) -> None:
    with pytest.raises(DownloadTooLarge):
        await fetcher.fetch(images.base + path, max_bytes=1000)


async def test_a_body_that_never_ends_hits_the_total_deadline(images: Server) -> None:
    fetcher = Fetcher(AddressPolicy(allowed_pairs=frozenset({images.pair})), deadline=0.5)
    try:
        with pytest.raises(TransientError):
            await fetcher.fetch(images.base + "/slow.png", max_bytes=10**6)
    finally:
        await fetcher.aclose()


async def test_bytes_that_are_not_an_image_are_not_media(images: Server, fetcher: Fetcher) -> None:
    with pytest.raises(NotMedia):
        await fetcher.fetch_media(images.base + "/text.png", max_bytes=10**6)


async def test_a_media_check_added_to_the_list_recognises_new_kinds(images: Server, fetcher: Fetcher) -> None:
    """The extension point for videos: a check appended to MEDIA_CHECKS is consulted."""

    def json_as_media(data: bytes) -> Media | None:
        return Media(data=data, mime="application/json", width=0, height=0) if data.startswith(b"{") else None

    MEDIA_CHECKS.append(json_as_media)
    try:
        media = await fetcher.fetch_media(images.base + "/text.png", max_bytes=10**6)
    finally:
        MEDIA_CHECKS.remove(json_as_media)
    assert media.mime == "application/json"


async def test_network_failures_are_transient(images: Server, fetcher: Fetcher) -> None:
    with socket.socket() as probe:  # a port nobody listens on, allowed so that the connect is tried
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    fetcher.policy.allowed_pairs = fetcher.policy.allowed_pairs | {f"127.0.0.1:{closed}"}
    for url in (images.base + "/broken.png", f"http://127.0.0.1:{closed}/x.png"):
        with pytest.raises(TransientError):
            await fetcher.fetch(url, max_bytes=10**6)
    for url in ("file:///etc/passwd", "http://[not a url/x.png", "http://images.example:99999/x.png", "http:///x"):
        with pytest.raises(DownloadRefused) as caught:
            await fetcher.fetch(url, max_bytes=10**6)
        assert caught.value.key == "download.bad_link"


async def test_one_slow_upstream_does_not_take_every_download_slot(images: Server) -> None:
    fetcher = Fetcher(AddressPolicy(allowed_pairs=frozenset({images.pair})), slots_per_upstream=2)
    release = asyncio.Event()
    holding = 0

    async def hold(upstream: str) -> None:
        nonlocal holding
        async with fetcher.slot(upstream):
            holding += 1
            await release.wait()

    slow = [asyncio.create_task(hold("key:1")) for _ in range(5)]
    try:
        await asyncio.sleep(0.05)
        assert holding == 2  # the slow upstream waits on its own slots
        async with asyncio.timeout(5):
            async with fetcher.slot("default"):
                media = await fetcher.fetch_media(images.base + "/sized.png", max_bytes=10**6)
        assert media.mime == "image/png"
    finally:
        release.set()
        await asyncio.gather(*slow)
        await fetcher.aclose()
