"""Account alerts: poll each upstream's Midjourney accounts and tell its admins what changed.

Servers have no webhook for account events (MJ_ACCOUNTS_VIDEO.md §3.1), so the watcher polls every
ACCOUNTS_POLL_INTERVAL seconds and compares with what it saw last time. The last state of every
account is kept in the store, so an alert goes out once per change: not on every poll, and not again
after a restart. An account seen for the first time raises nothing (that is not a change).

Alerts go to the channel an admin set with `/mjadmin settings alerts_channel`: a guild hears about its
own keys' servers; the .env key's and global keys' servers go to channels the bot owner set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import discord

from bot.errors import BotError
from bot.i18n import t
from bot.render import neutralize
from bot.upstream.accounts import Account, AccountsUnsupported
from bot.upstream.capabilities import CapabilityMemory, base_upstream

if TYPE_CHECKING:
    from bot.storage.protocols import MetaStore
    from bot.upstream.keys import KeyRing

log = logging.getLogger(__name__)

SEEN_PREFIX = "accounts.seen:"
CHANNELS_KEY = "alerts.channels"

DISABLED = "disabled"
LOCKED = "locked"
STOPPED = "stopped"
FAST_EXHAUSTED = "fast_exhausted"

# trueai's disabledReason texts (§3.1) -> a translated explanation; the raw text is shown otherwise.
_REASONS = (
    ("账号用量已经用完", "alerts.reason_credits"),
    ("无法重新连接", "alerts.reason_connection"),
    ("连接失败次数超过限制", "alerts.reason_connection"),
    ("请求没有操作权限", "alerts.reason_forbidden"),
    ("同步失败超过限制", "alerts.reason_sync"),
    ("初始化失败", "alerts.reason_init"),
    ("Pending mod message", "alerts.reason_moderation"),
    ("Blocked", "alerts.reason_blocked"),
    ("Plan Cancelled", "alerts.reason_subscription"),
    ("Subscription required", "alerts.reason_subscription"),
    ("Subscription paused", "alerts.reason_subscription"),
)


def reason_text(reason: str, locale: str) -> str:
    """A disabled account's reason in the reader's language (unknown reasons as the server wrote them)."""
    if not reason:
        return t("alerts.reason_none", locale)
    for needle, key in _REASONS:
        if needle.lower() in reason.lower():
            return t(key, locale)
    return t("alerts.reason_other", locale, reason=reason.replace("`", "'"))


@dataclass(frozen=True, slots=True)
class AccountState:
    """The part of an account whose changes raise an alert."""

    enabled: bool | None
    locked: bool
    running: bool | None
    fast_exhausted: bool

    @classmethod
    def of(cls, account: Account) -> AccountState:
        return cls(account.enabled, account.locked, account.running, account.fast_exhausted)


@dataclass(frozen=True, slots=True)
class AccountAlert:
    upstream: str
    kind: str
    account: Account


def changes(upstream: str, before: dict[str, AccountState], accounts: Sequence[Account]) -> list[AccountAlert]:
    """Alerts for accounts whose state turned bad since `before` (unknown accounts raise nothing)."""
    alerts: list[AccountAlert] = []
    for account in accounts:
        old = before.get(account.id)
        if old is None:
            continue
        new = AccountState.of(account)
        if old.enabled is not False and new.enabled is False:
            alerts.append(AccountAlert(upstream, DISABLED, account))
        if not old.locked and new.locked:
            alerts.append(AccountAlert(upstream, LOCKED, account))
        if old.running is True and new.running is False and new.enabled is not False:
            alerts.append(AccountAlert(upstream, STOPPED, account))  # a disabled account stops too: said above
        if not old.fast_exhausted and new.fast_exhausted:
            alerts.append(AccountAlert(upstream, FAST_EXHAUSTED, account))
    return alerts


def alert_text(alert: AccountAlert, server: str, locale: str) -> str:
    """The alert for a public channel: what the server wrote (names, reasons) shows as text, never as
    a masked link or a mention (render.neutralize)."""
    account = alert.account
    params = {"account": neutralize(account.name.replace("`", "'")), "server": neutralize(server)}
    if alert.kind == DISABLED:
        reason = neutralize(reason_text(account.disabled_reason, locale))
        return t("alerts.disabled", locale, reason=reason, **params)
    if alert.kind == LOCKED:
        link = t("alerts.captcha_link", locale, url=account.cf_url) if account.cf_url else ""
        return t("alerts.locked", locale, link=link, **params)
    if alert.kind == STOPPED:
        return t("alerts.stopped", locale, **params)
    return t("alerts.fast_exhausted", locale, relax=neutralize(account.relax_left or "?"), **params)


def server_name(keys: KeyRing, upstream: str, locale: str) -> str:
    """How an alert or the accounts panel names a server: its key's number, label and host (never the key)."""
    key = keys.for_upstream(upstream)
    if key is None:
        return t("alerts.env_server", locale)
    return f"#{key.id} {key.label} ({key.host})"


# ---- where alerts go -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertChannel:
    guild_id: int
    channel_id: int
    #: Set by the bot owner: also receives the .env key's and the global keys' alerts.
    owner: bool


class AlertChannels:
    """One alert channel per guild, kept in the store's meta table."""

    def __init__(self, store: MetaStore) -> None:
        self._store = store

    async def all(self) -> list[AlertChannel]:
        try:
            data = json.loads(await self._store.get_meta(CHANNELS_KEY) or "{}")
        except ValueError:
            return []
        found = []
        for guild, value in data.items() if isinstance(data, dict) else ():
            if str(guild).isdigit() and isinstance(value, dict) and isinstance(value.get("channel"), int):
                found.append(AlertChannel(int(guild), value["channel"], value.get("owner") is True))
        return found

    async def set(self, guild_id: int, channel_id: int | None, *, owner: bool) -> None:
        channels = {c.guild_id: c for c in await self.all()}
        if channel_id is None:
            channels.pop(guild_id, None)
        else:
            channels[guild_id] = AlertChannel(guild_id, channel_id, owner)
        data = {str(c.guild_id): {"channel": c.channel_id, "owner": c.owner} for c in channels.values()}
        await self._store.set_meta(CHANNELS_KEY, json.dumps(data))

    async def get(self, guild_id: int) -> AlertChannel | None:
        return next((c for c in await self.all() if c.guild_id == guild_id), None)


# ---- the watcher ---------------------------------------------------------------------------------


class AccountWatcher:
    """One background task: every `interval` seconds, each upstream that lists accounts is read and
    compared; `deliver` is called once per alert. Errors are per upstream and only logged."""

    def __init__(
        self,
        store: MetaStore,
        memory: CapabilityMemory,
        upstream_names: Callable[[], Sequence[str]],
        deliver: Callable[[AccountAlert], Awaitable[None]],
        *,
        interval: float,
        wait_ready: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._store = store
        self._memory = memory
        self._upstream_names = upstream_names
        self._deliver = deliver
        self.interval = interval
        self._wait_ready = wait_ready
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="account-alerts")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        if self._wait_ready is not None:
            await self._wait_ready()
        while True:
            # Sleep first: a start (or a restart loop) is not a reason to read every server at once.
            await asyncio.sleep(self.interval)
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("Account alerts: a poll failed")

    async def poll_once(self) -> list[AccountAlert]:
        """Read every watched upstream once; returns (and delivers) the alerts raised."""
        raised: list[AccountAlert] = []
        for upstream in dict.fromkeys(base_upstream(name) for name in self._upstream_names()):
            try:
                raised += await self._poll(upstream)
            except (AccountsUnsupported, KeyError):
                continue
            except BotError as exc:
                log.warning("Account alerts: could not read the accounts of %s (%s)", upstream, exc.key)
        for alert in raised:
            try:
                await self._deliver(alert)
            except Exception:
                log.exception("Account alerts: delivering an alert for %s failed", alert.upstream)
        return raised

    async def _poll(self, upstream: str) -> list[AccountAlert]:
        caps = await self._memory.get(upstream)
        if not caps.lists_accounts:
            return []
        api = self._memory.api(upstream)
        accounts = (await api.accounts(caps)).accounts
        before = self._load(await self._store.get_meta(SEEN_PREFIX + upstream))
        alerts = changes(upstream, before, accounts)
        for index, alert in enumerate(alerts):
            if alert.kind == LOCKED and not alert.account.cf_url:
                with contextlib.suppress(BotError):
                    link = await api.lock_link(caps, alert.account.id)
                    if link:
                        alerts[index] = replace(alert, account=replace(alert.account, cf_url=link))
        seen = {a.id: asdict(AccountState.of(a)) for a in accounts}
        await self._store.set_meta(SEEN_PREFIX + upstream, json.dumps(seen))
        if alerts:
            log.info("Account alerts: %d change(s) on %s", len(alerts), upstream)
        return alerts

    @staticmethod
    def _load(text: str | None) -> dict[str, AccountState]:
        try:
            data = json.loads(text or "{}")
        except ValueError:
            return {}
        states = {}
        for account_id, value in data.items() if isinstance(data, dict) else ():
            with contextlib.suppress(TypeError):
                states[str(account_id)] = AccountState(**value)
        return states


class AlertPoster:
    """Posts an alert in every channel that should hear about its upstream, in that guild's language."""

    def __init__(self, client: discord.Client, channels: AlertChannels, keys: KeyRing, *, default_locale: str) -> None:
        self._client = client
        self._channels = channels
        self._keys = keys
        self._default_locale = default_locale

    async def __call__(self, alert: AccountAlert) -> None:
        key = self._keys.for_upstream(alert.upstream)
        for target in await self._channels.all():
            mine = target.guild_id == key.guild_id if key is not None and key.guild_id else target.owner
            if not mine:
                continue
            guild = self._client.get_guild(target.guild_id)
            locale = str(guild.preferred_locale) if guild is not None else self._default_locale
            text = alert_text(alert, server_name(self._keys, alert.upstream, locale), locale)
            try:
                channel = self._client.get_channel(target.channel_id) or await self._client.fetch_channel(
                    target.channel_id
                )
                if isinstance(channel, discord.abc.Messageable):
                    await channel.send(text[:2000], allowed_mentions=discord.AllowedMentions.none())
            except discord.HTTPException as exc:
                log.warning("Account alerts: could not post in channel %s (HTTP %s)", target.channel_id, exc.status)
