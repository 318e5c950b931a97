"""The API client's side of the one address rule: an httpx transport that resolves a host itself,
refuses it when any of its addresses is not public, and connects to the very address it checked (so
a name that answers differently the second time cannot slip through).

Used for API servers the operator did not configure: keys guild admins add. The .env upstream and the
operator's KEY_ALLOWED_HOSTS pairs use httpx's plain transport.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

from bot.net.addresses import AddressRefused, IPAddress, is_public, resolve


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, with the address check between resolving and connecting."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        addresses = await _resolve(host, port, timeout)
        for address in addresses:
            if not is_public(address):
                raise AddressRefused(host, str(address))
        error: Exception | None = None
        for address in addresses:
            try:
                # TLS still checks the certificate against `host`: httpcore passes the URL's host as SNI.
                return await self._inner.connect_tcp(str(address), port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                error = exc
        raise error or httpcore.ConnectError(f"{host} has no address")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise AddressRefused(path)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


async def _resolve(host: str, port: int, deadline: float | None) -> list[IPAddress]:
    try:
        return await resolve(host, port, deadline)
    except (OSError, TimeoutError) as exc:
        raise httpcore.ConnectError(f"could not resolve {host} ({type(exc).__name__})") from None


#: httpx's own defaults.
DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over GuardedBackend. AddressRefused passes through httpx unchanged (it
    maps only httpcore's own errors), so the client can name the refusal."""

    def __init__(self, limits: httpx.Limits = DEFAULT_LIMITS) -> None:
        # Only `limits`: httpx takes no network backend of its own, so the pool is built again with
        # ours, and any other transport option (verify, http2, retries...) would be silently lost.
        super().__init__(limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(),
        )
