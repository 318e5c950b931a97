"""API keys managed from Discord: encrypted at rest, chosen per guild, failed over when refused.

A guild uses its own keys first (highest priority first), then the global keys the bot owner added,
then the .env key (upstream "default"). Every key is its own upstream named `key:<id>`, with one
MJClient created on first use; a task stores that name, so every read and click of the task goes to
the key that created it. A guild's default speed mode makes a variant `key:<id>@fast` of the same
key (same secret, path prefix /mj-fast), stored the same way so reads use the same prefix.

Secrets are Fernet tokens in SQLite; the Fernet key comes from KEY_ENCRYPTION_KEY and never touches
the database. Plain secrets live only inside UpstreamConfig (repr=False) in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.config import ConfigError, fernet_keys
from bot.errors import BotError, InputError, NotAllowed, QuotaExhausted, Unauthorized
from bot.models import NewApiKey
from bot.net.addresses import AddressPolicy, AddressRefused, is_public, resolve
from bot.net.transport import GuardedTransport
from bot.upstream.client import AUTH_STYLES, MODES, MJClient, UpstreamConfig

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.storage.protocols import Storage

log = logging.getLogger(__name__)

DEFAULT_UPSTREAM = "default"
KEY_PREFIX = "key:"
#: Consecutive refusals (bad key, no credit) after which a key is skipped until an admin acts.
UNHEALTHY_AFTER = 3
#: Seconds a process trusts its copy of the keys before rereading them (other processes change them).
REFRESH_SECONDS = 5.0
MAX_LABEL = 40
MAX_SECRET = 512
#: Errors that prove the upstream refused the submit, so trying the next key cannot charge twice.
REFUSALS: tuple[type[BotError], ...] = (Unauthorized, QuotaExhausted)


def upstream_name(key_id: int) -> str:
    return f"{KEY_PREFIX}{key_id}"


def split_mode(upstream: str) -> tuple[str, str | None]:
    """`key:3@fast` -> (`key:3`, `fast`); names without a mode -> (name, None)."""
    base, sep, mode = upstream.partition("@")
    return (base, mode) if sep and mode in MODES and mode else (upstream, None)


def key_id_of(upstream: str) -> int | None:
    """The key id behind an upstream name, or None for the .env key and unknown names."""
    base, _ = split_mode(upstream)
    if base.startswith(KEY_PREFIX) and base[len(KEY_PREFIX) :].isdigit():
        return int(base[len(KEY_PREFIX) :])
    return None


def last4(secret: str) -> str:
    """What listings show of a secret: its last four characters (nothing for short ones)."""
    return secret[-4:] if len(secret) >= 12 else ""


class KeyCipher:
    """Fernet around the secrets. Built from KEY_ENCRYPTION_KEY: one key, or several separated by
    commas while rotating (the first encrypts, every one decrypts). ValueError if malformed."""

    def __init__(self, keys: str) -> None:
        fernets = [Fernet(key.encode("ascii")) for key in fernet_keys(keys)]  # an empty one: ValueError
        self._current = fernets[0]
        self._any = MultiFernet(fernets)

    @staticmethod
    def generate() -> str:
        return Fernet.generate_key().decode("ascii")

    def encrypt(self, secret: str) -> str:
        return self._current.encrypt(secret.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Raises cryptography's InvalidToken when the token was made with none of the keys."""
        return self._any.decrypt(token.encode("ascii")).decode("utf-8")

    def is_current(self, token: str) -> bool:
        """Whether `token` was made with the first key (else `rotate` it)."""
        try:
            self._current.decrypt(token.encode("ascii"))
        except InvalidToken:
            return False
        return True

    def rotate(self, token: str) -> str:
        """The same secret, encrypted with the first key."""
        return self._any.rotate(token.encode("ascii")).decode("ascii")


@dataclass(frozen=True, slots=True)
class ApiKey(NewApiKey):
    """One stored key: the row as inserted plus its id and health. `token` is the Fernet ciphertext;
    the plain secret is never kept here."""

    id: int
    enabled: bool
    healthy: bool
    failures: int
    last_error: str
    added_by: int
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ApiKey:
        values = dict(row)
        values["enabled"] = bool(values["enabled"])
        values["healthy"] = bool(values["healthy"])
        return cls(**values)

    @property
    def upstream(self) -> str:
        return upstream_name(self.id)

    @property
    def host(self) -> str:
        return urlsplit(self.base_url).netloc

    @property
    def is_global(self) -> bool:
        return self.guild_id is None

    @property
    def usable(self) -> bool:
        return self.enabled and self.healthy


@dataclass(frozen=True, slots=True)
class KeyCheck:
    """Outcome of `/mjadmin key test`: reachable, unauthorized, quota or error (with the error)."""

    status: str
    error: BotError | None = None


def check_base_url(base_url: str, policy: AddressPolicy | None = None, *, private_ok: bool = False) -> None:
    """A key's base URL, before it is saved. Never a user name or password (httpx would send them
    as Basic auth to whoever the URL names), a query or a fragment. Server admins may not point keys
    at the bot's own machine or network (the bot would make the requests): a host that spells a
    non-public address in any form is refused here, a name that resolves to one is refused when the
    client connects (GuardedTransport). Exempt: the policy's KEY_ALLOWED_HOSTS pairs and trusted
    origins, and the bot owner (`private_ok`), whose keys still connect only under the same rule."""
    try:
        parts = urlsplit(base_url.strip())
        parts.port  # noqa: B018 (raises ValueError for a port that is not a number)
    except ValueError:
        raise InputError("admin.key_bad_url") from None
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InputError("admin.key_url_extras")
    if parts.query or parts.fragment or base_url.strip().endswith(("?", "#")):
        raise InputError("admin.key_url_extras")
    if private_ok:
        return
    try:
        (policy or AddressPolicy()).check_literal(base_url)
    except AddressRefused:
        raise InputError("admin.key_private_host", host=parts.hostname or "") from None
    host = (parts.hostname or "").lower().rstrip(".")
    if host.endswith((".local", ".internal")) and not (policy and policy.exempt(base_url)):
        raise InputError("admin.key_private_host", host=host)


async def check_base_url_resolves(base_url: str, policy: AddressPolicy | None = None, *, deadline: float = 5.0) -> None:
    """The add-time half of the address rule for names: a server admin's base URL whose name
    resolves to a non-public address now is refused with the same message as a spelled one. (A name
    that changes later is refused when the client connects; one that does not resolve yet is left to
    that check too.)"""
    if policy is not None and policy.exempt(base_url):
        return
    parts = urlsplit(base_url.strip())
    host = parts.hostname or ""
    try:
        addresses = await resolve(host, parts.port or (443 if parts.scheme == "https" else 80), deadline)
    except (OSError, TimeoutError, ValueError):
        return
    if any(not is_public(address) for address in addresses):
        raise InputError("admin.key_private_host", host=host)


class Upstreams(Mapping[str, MJClient]):
    """Every upstream client by name. Key clients are created on first use from their config, so the
    tracker and Jobs resolve `key:<id>` (and `key:<id>@mode`) names made at runtime.

    With a `policy`, a key's client connects only to public addresses (GuardedTransport) unless its
    base URL is exempt (KEY_ALLOWED_HOSTS, the .env upstream's origin)."""

    def __init__(self, policy: AddressPolicy | None = None) -> None:
        self.policy = policy
        self._configs: dict[str, UpstreamConfig] = {}
        self._clients: dict[str, MJClient] = {}
        self._retired: list[MJClient] = []

    def __setitem__(self, name: str, client: MJClient) -> None:
        """Register a ready client (the .env key); its config also serves `name@mode` variants."""
        self._configs[name] = client.config
        self._clients[name] = client

    def configure(self, name: str, config: UpstreamConfig) -> None:
        """Set or replace what `name` means; an older client is retired, not closed mid-request."""
        if self._configs.get(name) == config:
            return
        self._configs[name] = config
        self.drop(name, keep_config=True)

    def drop(self, name: str, *, keep_config: bool = False) -> None:
        if not keep_config:
            self._configs.pop(name, None)
        for client_name in [n for n in self._clients if split_mode(n)[0] == name]:
            self._retired.append(self._clients.pop(client_name))

    def __getitem__(self, name: str) -> MJClient:
        client = self._clients.get(name)
        if client is not None:
            return client
        base, mode = split_mode(name)
        config = self._configs.get(base)
        if config is None:
            raise KeyError(name)
        config = replace(config, name=name, mode=mode if mode is not None else config.mode)
        guarded = self.policy is not None and not self.policy.exempt(config.base_url)
        client = self._clients[name] = MJClient(config, transport=GuardedTransport() if guarded else None)
        return client

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and split_mode(name)[0] in self._configs

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._clients))

    def __len__(self) -> int:
        return len(self._clients)

    def with_mode(self, name: str, mode: str) -> str:
        """The name to submit on so `mode` applies, unless the key already has its own mode."""
        config = self._configs.get(split_mode(name)[0])
        if not mode or config is None or config.mode:
            return name
        return f"{name}@{mode}"

    async def aclose(self) -> None:
        clients = [*self._clients.values(), *self._retired]
        self._clients.clear()
        self._retired.clear()
        for client in clients:
            await client.aclose()


class KeyRing:
    """The stored keys in memory, their order per guild, and their health."""

    def __init__(
        self, store: Storage, upstreams: Upstreams, cipher: KeyCipher | None, *, timeout: float = 30.0
    ) -> None:
        self._store = store
        self._upstreams = upstreams
        self.cipher = cipher
        self._timeout = timeout
        self._keys: dict[int, ApiKey] = {}
        self._loaded_at = 0.0
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        #: Told once when a key turns unhealthy (the admin cog DMs whoever added it).
        self.on_unhealthy: Callable[[ApiKey], Coroutine[Any, Any, None]] | None = None

    # ---- loading -----------------------------------------------------------------------------------

    async def load(self) -> None:
        """Read every key and prepare its upstream. ConfigError when they cannot be decrypted."""
        rows = await self._store.api_key_rows()
        keys = [ApiKey.from_row(row) for row in rows]
        if keys and self.cipher is None:
            raise ConfigError(
                f"KEY_ENCRYPTION_KEY is not set, but the database holds {len(keys)} encrypted API key(s): "
                "set it to the key they were saved with (see .env.example)"
            )
        self._keys = {}
        self._loaded_at = time.monotonic()
        for key in keys:
            self._install(key)
        if keys:
            log.info("Loaded %d API key(s) from the database", len(keys))
            assert self.cipher is not None  # checked above
            await self._rotate(self.cipher, [key for key in keys if not self.cipher.is_current(key.token)])

    async def _rotate(self, cipher: KeyCipher, stale: Sequence[ApiKey]) -> None:
        """Re-encrypt keys saved with an older KEY_ENCRYPTION_KEY (a later one in the list) with the
        first, so the older one can be dropped from .env."""
        for key in stale:
            token = cipher.rotate(key.token)
            await self._store.update_api_key(key.id, token=token, updated_at=time.time())
            self._keys[key.id] = replace(key, token=token)
        if stale:
            log.info(
                "Re-encrypted %d API key(s) with the first KEY_ENCRYPTION_KEY; remove the older key(s) from "
                ".env once every bot process runs with the new one",
                len(stale),
            )

    async def refresh(self, max_age: float = REFRESH_SECONDS) -> None:
        """Reread the keys when the copy in memory is older than `max_age`: another bot process may
        have added, removed, disabled or marked one unhealthy. A failed read keeps the copy we have."""
        now = time.monotonic()
        if now - self._loaded_at < max_age or self.cipher is None:
            return
        self._loaded_at = now
        try:
            rows = await self._store.api_key_rows()
        except Exception as exc:
            log.warning("Rereading the API keys failed (%s); using the ones in memory", exc)
            return
        async with self._lock:
            fresh = {key.id: key for key in (ApiKey.from_row(row) for row in rows)}
            for key_id in set(self._keys) - set(fresh):
                del self._keys[key_id]
                self._upstreams.drop(upstream_name(key_id))
            for key_id, key in fresh.items():
                known = self._keys.get(key_id)
                if known is None or known.token != key.token or known.base_url != key.base_url:
                    try:
                        self._install(key)
                    except ConfigError:
                        log.error("API key %d cannot be decrypted with KEY_ENCRYPTION_KEY; skipping it", key_id)
                else:
                    self._keys[key_id] = key

    def _install(self, key: ApiKey) -> None:
        assert self.cipher is not None
        try:
            secret = self.cipher.decrypt(key.token)
        except InvalidToken:
            raise ConfigError(
                "KEY_ENCRYPTION_KEY does not match the key the stored API keys were encrypted with"
            ) from None
        self._upstreams.configure(key.upstream, self._config(key, secret))
        self._keys[key.id] = key

    def _config(self, key: ApiKey, secret: str) -> UpstreamConfig:
        return UpstreamConfig(
            name=key.upstream,
            base_url=key.base_url,
            api_key=secret,
            auth_style=key.auth_style,
            mode=key.mode,
            timeout=self._timeout,
        )

    # ---- reading -----------------------------------------------------------------------------------

    def get(self, key_id: int) -> ApiKey | None:
        return self._keys.get(key_id)

    def for_upstream(self, upstream: str) -> ApiKey | None:
        key_id = key_id_of(upstream)
        return self._keys.get(key_id) if key_id is not None else None

    def visible(self, guild_id: int | None) -> list[ApiKey]:
        """The guild's own keys, then the global ones, each in the order they are tried."""
        own = [k for k in self._keys.values() if k.guild_id is not None and k.guild_id == guild_id]
        shared = [k for k in self._keys.values() if k.guild_id is None]
        order = lambda k: (-k.priority, k.id)  # noqa: E731
        return sorted(own, key=order) + sorted(shared, key=order)

    def find(self, reference: str, guild_id: int | None) -> ApiKey | None:
        """A key by `#id`/id or label, among the guild's and the global keys."""
        text = reference.strip().removeprefix("#")
        candidates = self.visible(guild_id)
        if text.isdigit():
            found = next((k for k in candidates if k.id == int(text)), None)
            if found is not None:
                return found
        lowered = text.lower()
        return next((k for k in candidates if k.label.lower() == lowered), None)

    def chain(self, guild_id: int | None) -> list[str]:
        """Upstreams to try for a new task, in order: usable guild keys, usable global keys, .env key."""
        names = [k.upstream for k in self.visible(guild_id) if k.usable]
        if DEFAULT_UPSTREAM in self._upstreams:
            names.append(DEFAULT_UPSTREAM)
        return names

    # ---- changing ----------------------------------------------------------------------------------

    async def add(
        self,
        *,
        guild_id: int | None,
        label: str,
        base_url: str,
        auth_style: str,
        mode: str,
        priority: int,
        secret: str,
        added_by: int,
    ) -> ApiKey:
        if self.cipher is None:
            raise NotAllowed("admin.no_encryption_key")
        label = " ".join(label.split())[:MAX_LABEL]
        secret = secret.strip()
        if not label:
            raise InputError("admin.key_bad_label")
        if not secret or len(secret) > MAX_SECRET:
            raise InputError("admin.key_bad_secret")
        if auth_style not in AUTH_STYLES or mode not in MODES:
            raise InputError("admin.key_bad_option")
        try:
            # Validates the URL and the key's characters; its messages never contain the key.
            config = UpstreamConfig(name="new", base_url=base_url, api_key=secret, auth_style=auth_style, mode=mode)
        except ValueError:
            raise InputError("admin.key_bad_url_or_secret") from None
        async with self._lock:
            if any(k.guild_id == guild_id and k.label.lower() == label.lower() for k in self._keys.values()):
                raise InputError("admin.key_exists", label=label)
            key_id = await self._store.insert_api_key(
                NewApiKey(
                    guild_id=guild_id,
                    label=label,
                    base_url=config.base_url,
                    auth_style=config.auth_style,
                    mode=config.mode,
                    priority=priority,
                    token=self.cipher.encrypt(config.api_key),
                    last4=last4(config.api_key),
                    added_by=added_by,
                )
            )
            row = await self._store.api_key_row(key_id)
            assert row is not None
            key = ApiKey.from_row(row)
            self._upstreams.configure(key.upstream, self._config(key, config.api_key))
            self._keys[key.id] = key
        log.info("API key %d (%s, %s) added for %s by user %s", key.id, key.label, key.host, _scope(key), added_by)
        return key

    async def remove(self, key_id: int) -> None:
        async with self._lock:
            key = self._keys.pop(key_id, None)
            await self._store.delete_api_key(key_id)
            self._upstreams.drop(upstream_name(key_id))
        if key is not None:
            log.info("API key %d (%s) removed from %s", key.id, key.label, _scope(key))

    async def set_enabled(self, key_id: int, enabled: bool) -> ApiKey | None:
        """Enabling also clears the failure count: it is the admin's way of saying "try it again"."""
        changes: dict[str, Any] = {"enabled": enabled}
        if enabled:
            changes.update(healthy=True, failures=0, last_error="")
        return await self._update(key_id, **changes)

    async def check(self, key_id: int) -> KeyCheck:
        """One authenticated read; a pass restores the key's health, a refusal takes it away."""
        key = self._keys.get(key_id)
        if key is None:
            return KeyCheck("error", InputError("admin.key_not_found", key=str(key_id)))
        try:
            await self._upstreams[key.upstream].check()
        except Unauthorized as exc:
            await self._update(key_id, healthy=False, last_error="unauthorized")
            return KeyCheck("unauthorized", exc)
        except QuotaExhausted as exc:
            await self._update(key_id, healthy=False, last_error="quota")
            return KeyCheck("quota", exc)
        except BotError as exc:
            return KeyCheck("error", exc)
        await self._update(key_id, healthy=True, failures=0, last_error="")
        return KeyCheck("reachable")

    async def record_refusal(self, upstream: str, error: BotError) -> None:
        """A submit on this key was refused as unauthorized / out of credit."""
        key = self.for_upstream(upstream)
        if key is None:
            return
        reason = "unauthorized" if isinstance(error, Unauthorized) else "quota"
        # Counted in the database (one atomic increment): several bot processes share the count.
        failures = await self._store.bump_api_key_failure(key.id, reason)
        turned = key.healthy and failures >= UNHEALTHY_AFTER
        updated = await self._update(key.id, failures=failures, healthy=key.healthy and not turned, last_error=reason)
        log.warning("API key %d (%s) refused a submit (%s), %d in a row", key.id, key.label, reason, failures)
        if turned and updated is not None:
            log.warning("API key %d (%s) is now marked unhealthy and skipped", key.id, key.label)
            self._notify(updated)

    async def record_success(self, upstream: str) -> None:
        key = self.for_upstream(upstream)
        if key is not None and (key.failures or key.last_error):
            await self._update(key.id, failures=0, last_error="")

    async def _update(self, key_id: int, **changes: Any) -> ApiKey | None:
        async with self._lock:
            key = self._keys.get(key_id)
            if key is None:
                return None
            changes["updated_at"] = time.time()
            await self._store.update_api_key(key_id, **changes)
            key = replace(key, **changes)
            self._keys[key_id] = key
            return key

    def _notify(self, key: ApiKey) -> None:
        callback = self.on_unhealthy
        if callback is None:
            return
        task = asyncio.create_task(callback(key), name=f"key-unhealthy-{key.id}")
        self._background.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("Telling the admin about an unhealthy key failed", exc_info=task.exception())

    async def aclose(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _scope(key: ApiKey) -> str:
    return "all servers" if key.guild_id is None else f"guild {key.guild_id}"


def cipher_from(settings: Settings) -> KeyCipher | None:
    return KeyCipher(settings.key_encryption_key) if settings.key_encryption_key else None


async def check_key_config(settings: Settings) -> None:
    """Before connecting to Discord: stored keys must be decryptable with KEY_ENCRYPTION_KEY."""
    from bot.storage.factory import open_store

    store = await open_store(settings.database)
    upstreams = Upstreams()
    try:
        await KeyRing(store, upstreams, cipher_from(settings)).load()
    finally:
        await upstreams.aclose()
        await store.close()
