"""The one guarded way out of the bot for downloads made for someone else.

Result pictures, /describe links, /show and the Vary (Region) editor's picture all come through
`Fetcher`. A link comes from an API server or a member, so nothing about it is trusted:

- it connects only to public addresses, checked on the socket actually connected (a resolver that
  answers a public address once and 127.0.0.1 the next is refused too), unless the URL's origin is
  exempt (AddressPolicy: the operator's host:port pairs, the .env upstream's exact origin);
- every redirect hop is checked again, at most MAX_REDIRECTS of them;
- the body is streamed with a byte cap and one deadline for the whole download;
- each upstream has its own download slots, so one slow image host does not hold back every guild.

aiohttp, not httpx (which the API client uses): at scale every finished task is one download, and the
same download costs about five times less CPU through aiohttp (bench/tracker.py). It sends no
credentials: an API key never travels anywhere but its own base URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from bot.errors import DownloadRefused, DownloadTooLarge, NotMedia, TransientError
from bot.images import Media, identify_media
from bot.net.addresses import AddressPolicy, AddressRefused, is_public, sockaddr_address

log = logging.getLogger(__name__)

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


#: What aiohttp hands a socket factory: (family, type, proto, canonical name, socket address).
AddrInfo = tuple[int | socket.AddressFamily, int | socket.SocketKind, int, str, tuple[Any, ...]]


def _guarded_socket(addr_info: AddrInfo) -> socket.socket:
    """aiohttp's socket factory: called with the exact address about to be connected."""
    family, type_, proto, _, sockaddr = addr_info
    assert isinstance(sockaddr, tuple)
    address = sockaddr_address(sockaddr)
    if not is_public(address):
        raise AddressRefused(str(address), str(address))
    return socket.socket(family=family, type=type_, proto=proto)


class GuardedResolver(AbstractResolver):
    """Refuses a name when any address it resolves to is not public (a name that answers both a
    public and a private address is not a safe place to connect). The connected socket is checked
    again by `_guarded_socket`; this check gives the clear error early."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            address = sockaddr_address((result["host"],))
            if not is_public(address):
                raise AddressRefused(host, str(address))
        return results

    async def close(self) -> None:
        await self._inner.close()


def _refusal(exc: BaseException) -> AddressRefused | None:
    """The AddressRefused behind an aiohttp connect error, if that is what stopped it."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, AddressRefused):
            return current
        os_error = getattr(current, "os_error", None)
        if isinstance(os_error, AddressRefused):
            return os_error
        current = current.__cause__ or current.__context__
    # aiohappyeyeballs joins several failed attempts into one OSError by their text.
    if "refused to connect to a non-public address" in str(exc):
        return AddressRefused("the link's host")
    return None


class Fetcher:
    """Downloads for someone else, without credentials, through AddressPolicy."""

    def __init__(
        self,
        policy: AddressPolicy | None = None,
        *,
        deadline: float = 60.0,
        max_connections: int = 32,
        slots_per_upstream: int = 8,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy or AddressPolicy()
        self._deadline = deadline
        self._max_connections = max(1, max_connections)
        self._slots_per_upstream = max(1, slots_per_upstream)
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._resolver = resolver
        self._guarded: aiohttp.ClientSession | None = None
        self._exempt: aiohttp.ClientSession | None = None

    def _session(self, exempt: bool) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop (aiohttp binds a session to its loop). No cookie
        # jar: one member's download must not carry what a host set during another's.
        timeout = aiohttp.ClientTimeout(total=None, connect=10.0)
        if exempt:
            if self._exempt is None or self._exempt.closed:
                connector = aiohttp.TCPConnector(limit=self._max_connections)
                self._exempt = aiohttp.ClientSession(
                    connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
                )
            return self._exempt
        if self._guarded is None or self._guarded.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                resolver=GuardedResolver(self._resolver),
                socket_factory=_guarded_socket,
                use_dns_cache=False,
            )
            self._guarded = aiohttp.ClientSession(
                connector=connector, timeout=timeout, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self._guarded

    async def aclose(self) -> None:
        for session in (self._guarded, self._exempt):
            if session is not None:
                await session.close()

    @contextlib.asynccontextmanager
    async def slot(self, upstream: str) -> AsyncIterator[None]:
        """One of `upstream`'s download slots. Callers that also hold a shared slot take this one
        first, so tasks waiting on a slow upstream hold nothing the others need."""
        semaphore = self._slots.setdefault(upstream, asyncio.Semaphore(self._slots_per_upstream))
        async with semaphore:
            yield

    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """The body at `url`. Raises DownloadRefused (address, scheme, redirects: never retried),
        DownloadTooLarge (over `max_bytes`), TransientError (network, HTTP errors, deadline)."""
        try:
            async with asyncio.timeout(self._deadline):
                return await self._follow(url, max_bytes)
        except TimeoutError:
            raise TransientError(f"the download took longer than {self._deadline:g} s") from None

    async def fetch_media(self, url: str, *, max_bytes: int) -> Media:
        """`fetch`, then the bytes must be a picture (or an allowed video): NotMedia otherwise.
        Decoding runs in a thread, off the event loop."""
        data = await self.fetch(url, max_bytes=max_bytes)
        media = await asyncio.to_thread(identify_media, data)
        if media is None:
            raise NotMedia("the download is not an image")
        return media

    async def _follow(self, url: str, max_bytes: int) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            try:
                parts = urlsplit(url)
                parts.port  # noqa: B018 (a port that is not a number raises ValueError)
            except ValueError:
                raise DownloadRefused("not a valid link", key="download.bad_link") from None
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise DownloadRefused("only http(s) links are downloaded", key="download.bad_link")
            exempt = self.policy.exempt(url)
            try:
                self.policy.check_literal(url)
                async with self._session(exempt).get(url, allow_redirects=False) as response:
                    if response.status in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    if response.status >= 400:
                        raise TransientError(f"the download answered HTTP {response.status}")
                    if response.status != 200:
                        raise NotMedia(f"the download answered HTTP {response.status}")
                    return await _read_capped(response, max_bytes)
            except AddressRefused as exc:
                log.warning("Refused a download from %s: not a public address", exc.host)
                raise DownloadRefused("not a public address") from None
            except aiohttp.ClientError as exc:  # aiohttp.InvalidURL included
                refused = _refusal(exc)
                if refused is not None:
                    log.warning("Refused a download from %s: not a public address", refused.host)
                    raise DownloadRefused("not a public address") from None
                raise TransientError(f"the download failed: {type(exc).__name__}") from None
            except (OSError, ValueError) as exc:
                raise TransientError(f"the download failed: {type(exc).__name__}") from None
        raise DownloadRefused(f"more than {MAX_REDIRECTS} redirects", key="download.bad_link")


async def _read_capped(response: aiohttp.ClientResponse, max_bytes: int) -> bytes:
    if response.content_length is not None and response.content_length > max_bytes:
        raise DownloadTooLarge(max_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise DownloadTooLarge(max_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def result_fetcher(policy: AddressPolicy, download_concurrency: int) -> Fetcher:
    """The fetcher as MJBot builds it for the tracker: `download_concurrency` connections, and one
    upstream takes at most half of them, so another upstream's results always find slots."""
    return Fetcher(
        policy,
        max_connections=download_concurrency,
        slots_per_upstream=max(1, download_concurrency // 2),
    )
