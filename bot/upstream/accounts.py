"""The Midjourney accounts behind a self-hosted midjourney-proxy, and its task queue.

Over the same transport as the API client (MJClient.exchange), with the facts of
shared/MJ_ACCOUNTS_VIDEO.md: trueai keeps accounts under `/mj/admin/*` for its admin token, a "plus"
server under `/mj/account/*` for its one secret, novicezk lists them read-only, and a relay (new-api)
has none of it and answers unknown paths with its web page (HTTP 200 text/html).

Everything a server sends is untrusted: an answer becomes an `Account` of typed, length-capped fields,
and `userToken`, `cookie` and the login fields are never copied into one. Only `reconnect` holds the
whole raw object, for the one request that must send it back.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from bot.errors import TransientError, Unauthorized, UpstreamError
from bot.upstream.client import MJClient

log = logging.getLogger(__name__)

# What a probe finds (MJ_ACCOUNTS_VIDEO.md "Capability probe per upstream").
TRUEAI_ADMIN = "trueai-admin"
TRUEAI_USER = "trueai-user"
PLUS = "plus"
BASIC = "basic"
RELAY = "relay"
UNKNOWN = "unknown"
FLAVORS = (TRUEAI_ADMIN, TRUEAI_USER, PLUS, BASIC, RELAY, UNKNOWN)

#: trueai refuses a second sync of one account within 5 minutes (and counts failed syncs against it).
SYNC_COOLDOWN = 300.0
#: Longest text kept from any field or message a server sends.
MAX_TEXT = 120
#: trueai's largest page.
PAGE_SIZE = 100
#: Fields that must never leave this module in any form.
SECRET_FIELDS = frozenset({"userToken", "cookie", "loginAccount", "loginPassword", "login2fa", "password", "token"})


class AccountsUnsupported(UpstreamError):
    """This upstream (or this key on it) offers no account or queue management."""

    key = "accounts.unsupported"


class AdminRefused(UpstreamError):
    """The server answered, and said no: trueai `success:false` or plus `code != 1` (its message kept)."""

    key = "accounts.refused"


# ---- what an upstream offers ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The result of probing one upstream once; stored so restarts do not probe again."""

    flavor: str
    probed_at: float = 0.0

    @property
    def lists_accounts(self) -> bool:
        return self.flavor in (TRUEAI_ADMIN, PLUS, BASIC)

    @property
    def manages_accounts(self) -> bool:
        """Sync, Enable and Reconnect."""
        return self.flavor in (TRUEAI_ADMIN, PLUS)

    @property
    def changes_version(self) -> bool:
        return self.flavor == TRUEAI_ADMIN

    @property
    def cancels_tasks(self) -> bool:
        """Admin cancel: trueai with its admin token, plus with its secret."""
        return self.flavor in (TRUEAI_ADMIN, PLUS)

    @property
    def queue_source(self) -> str:
        """Where /info reads the queue: the accounts' counters (trueai) or /mj/task/queue."""
        if self.flavor == TRUEAI_ADMIN:
            return "accounts"
        if self.flavor in (PLUS, BASIC):
            return "queue"
        return ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | None) -> Capabilities | None:
        try:
            data = json.loads(text or "")
        except ValueError:
            return None
        if not isinstance(data, dict) or data.get("flavor") not in FLAVORS:
            return None
        return cls(flavor=data["flavor"], probed_at=float(data.get("probed_at") or 0.0))


# ---- accounts as the bot sees them ---------------------------------------------------------------


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 <= value < 10**9 else None
    if isinstance(value, str):
        text = value.strip()
        # isdecimal, not isdigit: "²" is a digit int() refuses; nine digits keep the int bound above.
        if text.isdecimal() and len(text) <= 9:
            return int(text)
    return None


def _https_url(value: Any) -> str:
    text = _text(value, 500)
    return text if text.startswith("https://") and " " not in text else ""


@dataclass(frozen=True, slots=True)
class VersionOption:
    value: str
    label: str


@dataclass(frozen=True, slots=True)
class Account:
    """One Midjourney account on the server: only what a panel or an alert shows. No secrets."""

    id: str
    name: str
    enabled: bool | None = None
    disabled_reason: str = ""
    locked: bool = False
    cf_url: str = ""
    running: bool | None = None
    mode: str = ""
    fast_left: str = ""
    relax_left: str = ""
    fast_exhausted: bool = False
    version: str = ""
    versions: tuple[VersionOption, ...] = ()
    remix: bool | None = None
    running_count: int | None = None
    core_size: int | None = None
    queue_count: int | None = None
    queue_size: int | None = None
    today_count: int | None = None
    renew_date: str = ""
    plan: str = ""

    @classmethod
    def from_json(cls, flavor: str, data: Mapping[str, Any]) -> Account | None:
        """trueai DiscordAccount, plus DiscordAccount or novicezk DiscordAccount (MJ_ACCOUNTS_VIDEO §3)."""
        account_id = _text(data.get("id"), 64)
        if not account_id:
            return None
        displays = data.get("displays") if isinstance(data.get("displays"), dict) else {}
        assert isinstance(displays, dict)
        name = _text(data.get("remark") or data.get("name") or data.get("channelId") or account_id, 60)
        versions: list[VersionOption] = []
        selector = data.get("versionSelector")
        for option in selector if isinstance(selector, list) else []:
            if isinstance(option, dict) and _text(option.get("customId"), 90):
                value = _text(option.get("customId"), 90)
                versions.append(VersionOption(value=value, label=_text(option.get("label"), 90) or value))
        return cls(
            id=account_id,
            name=name,
            enabled=_flag(data.get("enable")),
            disabled_reason=_text(data.get("disabledReason"), 200),
            locked=data.get("lock") is True,
            cf_url=_https_url(data.get("cfUrl")),
            running=_flag(data.get("running")),
            mode=_text(displays.get("mode") or data.get("mode"), 20),
            fast_left=_text(data.get("fastTimeRemaining"), 60),
            relax_left=_text(data.get("relaxTimeRemaining"), 60),
            fast_exhausted=data.get("fastExhausted") is True,
            version=_text(data.get("version"), 40),
            versions=tuple(versions[:25]),
            remix=_flag(data.get("mjRemixOn") if flavor == TRUEAI_ADMIN else data.get("remix")),
            running_count=_count(data.get("runningCount")),
            core_size=_count(data.get("coreSize")),
            queue_count=_count(data.get("queueCount")),
            queue_size=_count(data.get("queueSize")),
            today_count=_count(data.get("todayDraw")),
            renew_date=_text(displays.get("renewDate") or data.get("renewDate"), 40),
            plan=_text(displays.get("subscribePlan") or data.get("subscribePlan"), 30),
        )


@dataclass(frozen=True, slots=True)
class QueueStatus:
    """Running and queued tasks on the whole upstream (all its users), for /info."""

    running: int
    queued: int
    capacity: int | None = None


@dataclass(frozen=True, slots=True)
class AccountList:
    accounts: tuple[Account, ...] = ()
    read_at: float = field(default_factory=time.time)


# ---- answer envelopes ----------------------------------------------------------------------------


def _is_html(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return "html" in content_type or response.content.lstrip()[:1] == b"<"


def _clean(text: str, secret: str) -> str:
    text = " ".join(text.split())
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    return text[:200]


def _admin_answer(response: httpx.Response, secret: str) -> Any:
    """The decoded body of a successful admin answer; a typed error for every other shape.

    The `{success, code, message}` (trueai) or `{code, description}` (plus) envelope decides, not
    the HTTP status. A relay's HTML page is never parsed: it means the route does not exist there.
    """
    status = response.status_code
    if _is_html(response) and status < 500:
        raise AccountsUnsupported("not available on this server", status=status)
    if status in (401, 403):
        raise Unauthorized(_clean(response.text, secret) or f"HTTP {status}", status=status)
    if status in (404, 405):
        raise AccountsUnsupported("not available on this server", status=status)
    if status >= 500 or status == 429:
        raise TransientError(f"HTTP {status}", status=status)
    if not response.content.strip():
        if 200 <= status < 300:
            return None
        raise AdminRefused(f"HTTP {status}", status=status)
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        if 200 <= status < 300:
            raise TransientError("the server sent an answer that is not JSON", status=status) from None
        raise AdminRefused(_clean(response.text, secret), status=status) from None
    if isinstance(body, dict):
        if body.get("success") is False:
            raise AdminRefused(_clean(str(body.get("message") or ""), secret) or "failed", status=status)
        code = body.get("code")
        if "description" in body and isinstance(code, int) and not isinstance(code, bool) and code != 1:
            raise AdminRefused(_clean(str(body.get("description") or ""), secret), code=code, status=status)
    if not 200 <= status < 300:
        raise AdminRefused(f"HTTP {status}", status=status)
    return body


def _quoted(account_id: str) -> str:
    return quote(account_id, safe="")


# ---- the API -------------------------------------------------------------------------------------


class AccountsApi:
    """Account and queue management for one upstream, shaped by what its probe found."""

    def __init__(self, client: MJClient) -> None:
        self._client = client
        self._secret = client.config.api_key

    async def _call(self, method: str, path: str, body: Any = None) -> Any:
        response = await self._client.exchange(method, path, body)
        return _admin_answer(response, self._secret)

    # ---- probing ----

    async def probe(self) -> Capabilities:
        """trueai admin? trueai user? plus? basic? relay? One or three cheap reads."""
        now = time.time()
        try:
            body = await self._call("POST", "/mj/admin/accounts", {"pagination": {"current": 1, "pageSize": 1}})
        except Unauthorized as exc:
            if "账号无权限" in exc.detail:  # trueai: a valid user token on an admin route
                return Capabilities(TRUEAI_USER, now)
            raise
        except AccountsUnsupported as exc:
            if exc.status == 200:  # HTML 200 for an unknown path: new-api
                return Capabilities(RELAY, now)
        except AdminRefused:
            pass
        else:
            if isinstance(body, dict) and isinstance(body.get("list"), list):
                return Capabilities(TRUEAI_ADMIN, now)
        try:
            body = await self._call("POST", "/mj/account/query", {"pageNumber": 0, "pageSize": 1})
        except (AccountsUnsupported, AdminRefused):
            pass
        else:
            if isinstance(body, dict) and isinstance(body.get("content"), list):
                return Capabilities(PLUS, now)
        try:
            body = await self._call("GET", "/mj/account/list")
        except (AccountsUnsupported, AdminRefused):
            return Capabilities(UNKNOWN, now)
        return Capabilities(BASIC if isinstance(body, list) else UNKNOWN, now)

    # ---- reading ----

    async def accounts(self, caps: Capabilities) -> AccountList:
        """Every account, disabled ones included (trueai's GET would hide them)."""
        raw: list[Any] = []
        if caps.flavor == TRUEAI_ADMIN:
            page = 1
            while page <= 20:
                body = await self._call(
                    "POST", "/mj/admin/accounts", {"pagination": {"current": page, "pageSize": PAGE_SIZE}}
                )
                items = body.get("list") if isinstance(body, dict) else None
                if not isinstance(items, list):
                    raise UpstreamError("the server did not answer a list of accounts")
                raw += items
                pagination = body.get("pagination") if isinstance(body.get("pagination"), dict) else {}
                if len(items) < PAGE_SIZE or page >= (_count(pagination.get("pageCount")) or 1):
                    break
                page += 1
        elif caps.flavor == PLUS:
            number = 0
            while number < 20:
                body = await self._call("POST", "/mj/account/query", {"pageNumber": number, "pageSize": PAGE_SIZE})
                items = body.get("content") if isinstance(body, dict) else None
                if not isinstance(items, list):
                    raise UpstreamError("the server did not answer a list of accounts")
                raw += items
                if number + 1 >= (_count(body.get("totalPages")) or 1):
                    break
                number += 1
        elif caps.flavor == BASIC:
            body = await self._call("GET", "/mj/account/list")
            raw = body if isinstance(body, list) else []
        else:
            raise AccountsUnsupported("this server does not list its accounts")
        accounts = [Account.from_json(caps.flavor, item) for item in raw if isinstance(item, dict)]
        return AccountList(tuple(a for a in accounts if a is not None))

    async def queue(self, caps: Capabilities) -> QueueStatus:
        """Running and queued counts: summed from trueai's accounts, or /mj/task/queue elsewhere."""
        if caps.queue_source == "accounts":
            listed = (await self.accounts(caps)).accounts
            enabled = [a for a in listed if a.enabled is not False]
            capacity = sum(a.core_size or 0 for a in enabled) or None
            return QueueStatus(
                running=sum(a.running_count or 0 for a in enabled),
                queued=sum(a.queue_count or 0 for a in enabled),
                capacity=capacity,
            )
        if caps.queue_source == "queue":
            body = await self._call("GET", "/mj/task/queue")
            tasks = [t for t in body if isinstance(t, dict)] if isinstance(body, list) else []
            running = sum(1 for t in tasks if t.get("status") == "IN_PROGRESS")
            return QueueStatus(running=running, queued=len(tasks) - running)
        raise AccountsUnsupported("this server does not show its queue")

    async def lock_link(self, caps: Capabilities, account_id: str) -> str:
        """trueai's CAPTCHA link for a locked account ("" when it has none)."""
        if caps.flavor != TRUEAI_ADMIN:
            return ""
        body = await self._call("GET", f"/mj/admin/account-cf/{_quoted(account_id)}")
        return _https_url(body.get("cfUrl")) if isinstance(body, dict) else ""

    # ---- actions ----

    async def sync(self, caps: Capabilities, account_id: str) -> None:
        """Re-read the account's /info and /settings on Discord (trueai: at most once in 5 minutes)."""
        if caps.flavor == TRUEAI_ADMIN:
            await self._call("POST", f"/mj/admin/account-sync/{_quoted(account_id)}")
        elif caps.flavor == PLUS:
            await self._call("POST", f"/mj/account/{_quoted(account_id)}/sync-info")
        else:
            raise AccountsUnsupported("this server cannot sync accounts")

    async def enable(self, caps: Capabilities, account_id: str) -> None:
        if caps.flavor == TRUEAI_ADMIN:
            await self._call("POST", "/mj/admin/accounts-enable", [account_id])
        elif caps.flavor == PLUS:
            await self._plus_reconnect(account_id)
        else:
            raise AccountsUnsupported("this server cannot enable accounts")

    async def reconnect(self, caps: Capabilities, account_id: str) -> None:
        """Enable and restart the account's connection.

        trueai's reconnect overwrites ~50 stored fields (the token among them) with what it is sent,
        so the whole account is read and sent back unchanged except `enable`, never a partial object.
        """
        if caps.flavor == PLUS:
            await self._plus_reconnect(account_id)
            return
        if caps.flavor != TRUEAI_ADMIN:
            raise AccountsUnsupported("this server cannot reconnect accounts")
        path = f"/mj/admin/account/{_quoted(account_id)}"
        whole = await self._call("GET", path)
        if not isinstance(whole, dict) or str(whole.get("id")) != account_id:
            raise UpstreamError("the server did not send the whole account")
        whole["enable"] = True
        await self._call("PUT", f"/mj/admin/account-reconnect/{_quoted(account_id)}", whole)

    async def _plus_reconnect(self, account_id: str) -> None:
        """plus: update-reconnect takes AccountUpdateDTO; its three required fields come from fetch."""
        whole = await self._call("GET", f"/mj/account/{_quoted(account_id)}/fetch")
        if not isinstance(whole, dict) or not whole.get("userToken"):
            raise UpstreamError("the server did not send the account")
        fields = (
            "guildId",
            "channelId",
            "userToken",
            "mjBotChannelId",
            "nijiBotChannelId",
            "userAgent",
            "remixAutoSubmit",
            "coreSize",
            "queueSize",
            "timeoutMinutes",
            "remark",
        )
        update = {name: whole[name] for name in fields if whole.get(name) is not None}
        update["enable"] = True
        await self._call("PUT", f"/mj/account/{_quoted(account_id)}/update-reconnect", update)

    async def change_version(self, caps: Capabilities, account_id: str, version: str) -> None:
        if not caps.changes_version:
            raise AccountsUnsupported("this server cannot change the version")
        query = urlencode({"version": version})
        await self._call("POST", f"/mj/admin/account-change-version/{_quoted(account_id)}?{query}")

    async def cancel_task(self, caps: Capabilities, task_id: str) -> None:
        """Admin cancel (trueai: the task ends FAILURE "取消任务"; plus: CANCEL)."""
        if not caps.cancels_tasks:
            raise AccountsUnsupported("this server does not let the bot cancel tasks")
        await self._call("POST", f"/mj/task/{_quoted(task_id)}/cancel")
