"""What each upstream offers, probed once and remembered (in the store's meta table).

Probing costs one to three cheap reads; the answer only changes when the operator changes the
server or the key, so it is kept across restarts and redone only when an admin asks (`refresh`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from bot.errors import BotError
from bot.upstream.accounts import AccountsApi, Capabilities
from bot.upstream.keys import split_mode

if TYPE_CHECKING:
    from bot.storage.protocols import MetaStore
    from bot.upstream.keys import Upstreams

log = logging.getLogger(__name__)

META_PREFIX = "caps:"
FEATURE_PREFIX = "feature:"


def base_upstream(upstream: str) -> str:
    """`key:3@fast` and `key:3` are one server and one key: one probe."""
    return split_mode(upstream)[0]


class CapabilityMemory:
    """Capabilities per upstream: memory first, then the store, then one probe."""

    def __init__(self, store: MetaStore, upstreams: Upstreams) -> None:
        self._store = store
        self._upstreams = upstreams
        self._known: dict[str, Capabilities] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._probing: dict[str, asyncio.Task[None]] = {}
        self._features: dict[str, bool | None] = {}

    def api(self, upstream: str) -> AccountsApi:
        """KeyError when the upstream is not configured (a removed key)."""
        return AccountsApi(self._upstreams[base_upstream(upstream)])

    def known(self, upstream: str) -> Capabilities | None:
        """Without any I/O: what we already know (None = not probed yet in this process)."""
        return self._known.get(base_upstream(upstream))

    async def get(self, upstream: str, *, refresh: bool = False) -> Capabilities:
        """Raises the probe's error (unreachable, bad key) without remembering anything."""
        name = base_upstream(upstream)
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            if not refresh:
                if name in self._known:
                    return self._known[name]
                stored = Capabilities.from_json(await self._store.get_meta(META_PREFIX + name))
                if stored is not None:
                    self._known[name] = stored
                    return stored
            caps = await self.api(name).probe()
            await self._store.set_meta(META_PREFIX + name, caps.to_json())
            self._known[name] = caps
            log.info("Upstream %s probed: %s", name, caps.flavor)
            return caps

    async def offers(self, upstream: str, feature: str) -> bool | None:
        """What an answer taught us about `feature` on this upstream (None: nothing yet)."""
        name = f"{base_upstream(upstream)}:{feature}"
        if name not in self._features:
            stored = await self._store.get_meta(FEATURE_PREFIX + name)
            self._features[name] = None if stored is None else stored == "1"
        return self._features[name]

    async def learn(self, upstream: str, feature: str, available: bool) -> None:
        """Remember an answer (code 9 on /edit: this server's accounts cannot edit) across restarts."""
        name = f"{base_upstream(upstream)}:{feature}"
        if self._features.get(name) is available:
            return
        self._features[name] = available
        await self._store.set_meta(FEATURE_PREFIX + name, "1" if available else "0")
        log.info("Upstream %s: %s %s", base_upstream(upstream), feature, "available" if available else "not available")

    def learn_soon(self, upstream: str) -> None:
        """Probe in the background (at most one at a time per upstream); failures are only logged."""
        name = base_upstream(upstream)
        if name in self._known or name in self._probing:
            return
        task = asyncio.create_task(self._learn(name), name=f"probe-{name}")
        self._probing[name] = task
        task.add_done_callback(lambda _: self._probing.pop(name, None))

    async def _learn(self, name: str) -> None:
        try:
            await self.get(name)
        except BotError as exc:
            log.info("Probing upstream %s failed (%s); will try again later", name, exc.key)
        except KeyError:
            pass

    async def aclose(self) -> None:
        for task in list(self._probing.values()):
            task.cancel()
        await asyncio.gather(*self._probing.values(), return_exceptions=True)

    def forget(self, upstream: str) -> None:
        self._known.pop(base_upstream(upstream), None)
