"""HTTP client for midjourney-proxy compatible APIs (relay, trueai, basic).

It knows nothing about Discord: typed methods return domain values from bot.models, and every
failure shape the three server kinds produce (shared/MJ_API.md "Submit answers and errors") becomes
one typed error from bot.errors, so callers never see httpx exceptions or raw bodies.

Submits are never retried (a repeated submit may be charged twice); reads are retried with
exponential backoff and honour Retry-After.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx

from bot.errors import (
    AddressNotAllowed,
    BannedPrompt,
    BotError,
    FeatureUnavailable,
    InvalidRequest,
    QueueFull,
    QuotaExhausted,
    SubmitOutcomeUnknown,
    TaskNotFound,
    TransientError,
    Unauthorized,
    UnsupportedAction,
    UpstreamError,
)
from bot.models import MJTask, SubmitResult, coerce_id
from bot.net.addresses import AddressRefused
from bot.requests import (
    DEFAULT_BOT,
    ActionRequest,
    BlendRequest,
    ChangeRequest,
    DescribeRequest,
    EditRequest,
    ImagineRequest,
    ModalRequest,
    RetextureRequest,
    ShortenRequest,
    SubmitRequest,
    SwapFaceRequest,
    VideoRequest,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

AUTH_STYLES = ("bearer", "mj-api-secret", "raw")
MODES = ("", "fast", "relax", "turbo")
ACCEPTED_CODES = frozenset({1, 21, 22})
USER_AGENT = "mj-discord-bot/0.1 (+httpx)"

#: Longest detail kept from a server body; HTML error pages and stack traces are not messages.
_MAX_DETAIL = 300
#: Largest answer read from an API server (a list of 100 tasks is well under 1 MiB); the rest is
#: not read, and the answer counts as garbage.
MAX_RESPONSE_BYTES = 8 * 1024 * 1024

# Words that classify free-text answers (code 4/9, trueai success:false, relay descriptions).
# Order matters: "队列数已达上限" is a full queue, not a used-up quota.
_QUEUE_WORDS = ("队列", "并发", "queue full", "queue is full", "负载已饱和", "overload")
_QUOTA_WORDS = ("quota", "今日", "次数", "额度", "余额", "上限", "daily limit")
_UNSUPPORTED_WORDS = ("unknown_action", "未知的 action", "不支持", "not support", "unsupported")
_NOT_FOUND_WORDS = ("task_not_found", "task_no_found", "不存在", "已失效", "not found")
_ACCOUNT_WORDS = ("账号", "account", "实例")


@dataclass(frozen=True, kw_only=True)
class UpstreamConfig:
    """One midjourney-proxy server the bot talks to. The key never appears in repr or errors."""

    name: str = "default"
    base_url: str
    api_key: str = field(repr=False)
    auth_style: str = "bearer"
    mode: str = ""
    timeout: float = 30.0

    def __post_init__(self) -> None:
        style = (self.auth_style or "").strip().lower()
        if style not in AUTH_STYLES:
            raise ValueError(f"unknown auth_style {self.auth_style!r}; expected one of {', '.join(AUTH_STYLES)}")
        mode = (self.mode or "").strip().lower()
        if mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; expected one of fast, relax, turbo or empty")
        base_url = (self.base_url or "").strip().rstrip("/")
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL:
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
        key = (self.api_key or "").strip()
        if any(ord(c) < 0x21 or ord(c) > 0x7E for c in key):
            # Never name the key: a pasted key with a newline would otherwise end up in a log.
            raise ValueError(f"the API key of upstream {self.name!r} contains spaces or non-ASCII characters")
        if not self.timeout or self.timeout <= 0:
            raise ValueError(f"timeout must be positive, got {self.timeout!r}")
        object.__setattr__(self, "auth_style", style)
        object.__setattr__(self, "mode", mode)
        object.__setattr__(self, "base_url", base_url)
        object.__setattr__(self, "api_key", key)

    @property
    def path_prefix(self) -> str:
        """Speed mode is a path prefix (/mj-fast/mj/...): there is no body field that works everywhere."""
        return f"/mj-{self.mode}" if self.mode else ""

    def auth_headers(self) -> dict[str, str]:
        """The header for this server kind: relays want Bearer, trueai a raw value, basic mj-api-secret."""
        if not self.api_key:
            return {}
        if self.auth_style == "bearer":
            return {"Authorization": f"Bearer {self.api_key}"}
        if self.auth_style == "raw":
            return {"Authorization": self.api_key}
        return {"mj-api-secret": self.api_key}


def data_url(data: bytes, mime: str) -> str:
    """Images go up as data URLs (base64Array, base64, maskBase64, sourceBase64...)."""
    if not mime or "/" not in mime:
        raise ValueError(f"not a MIME type: {mime!r}")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


class _AnswerLost(TransientError):
    """The request may have reached the server, but no answer came (timeout, dropped connection).
    A read treats it like any transient failure; a submit cannot (see MJClient._submit)."""


# ---- answer interpretation -----------------------------------------------------------------------


def _contains(text: str, words: Sequence[str]) -> bool:
    lowered = text.lower()
    return any(word in lowered for word in words)


def _scrub(text: str, secret: str) -> str:
    """Server text becomes `detail`; make sure it can never carry the key, and keep it short."""
    text = " ".join(text.split())
    if secret and len(secret) >= 4:
        text = text.replace(secret, "***")
    if len(text) > _MAX_DETAIL:
        text = text[: _MAX_DETAIL - 1] + "…"
    return text


def _decode(response: httpx.Response) -> tuple[Any, bool]:
    """(decoded JSON, True) or (None, False) when the body is empty, truncated or not JSON."""
    if not response.content.strip():
        return None, False
    try:
        return json.loads(response.content), True
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: thousands of nested brackets. An answer, not a crash.
        return None, False


def _looks_like_html(response: httpx.Response) -> bool:
    content_type = response.headers.get("content-type", "").lower()
    return "html" in content_type or response.text.lstrip()[:1] == "<"


def _body_detail(response: httpx.Response, body: Any, is_json: bool, secret: str) -> str:
    """The server's own words: relay error.message, description, trueai message, or plain text."""
    text = ""
    if is_json and isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            text = str(error.get("message") or "")
        for key in ("description", "message", "error", "title", "detail"):
            if text:
                break
            value = body.get(key)
            if isinstance(value, str):
                text = value
    elif not is_json and response.content and not _looks_like_html(response):
        text = response.text
    return _scrub(text, secret)


def _retry_after(response: httpx.Response) -> float | None:
    """Retry-After in seconds (delta or HTTP date), or None."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _int_code(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def _error_for_text(text: str, *, code: int | None, status: int) -> UpstreamError | None:
    """Classify refusals whose meaning is only in their words (code 4/9, success:false, relay)."""
    if _contains(text, _QUEUE_WORDS):
        return QueueFull(text, code=code, status=status)
    if _contains(text, _QUOTA_WORDS):
        return QuotaExhausted(text, code=code, status=status)
    if _contains(text, _UNSUPPORTED_WORDS):
        return UnsupportedAction(text, code=code, status=status)
    if _contains(text, _NOT_FOUND_WORDS):
        return TaskNotFound(text, code=code, status=status)
    return None


def _error_for_code(
    code: int, detail: str, properties: Mapping[str, Any], *, status: int, retry_after: float | None
) -> UpstreamError:
    """The `code` field of a submit answer (or a relay error body) to a typed error."""
    if code == 24:
        word = properties.get("bannedWord")
        return BannedPrompt(detail, word=str(word).strip() if word else None, code=code, status=status)
    if code in (23, 30):
        return QueueFull(detail, retry_after=retry_after, code=code, status=status)
    if code == 3:
        if _contains(detail, _ACCOUNT_WORDS) and not _contains(detail, _NOT_FOUND_WORDS[:2]):
            # "无可用的账号实例": no Midjourney account is available, not a missing task.
            return UpstreamError(detail, code=code, status=status)
        return TaskNotFound(detail, code=code, status=status)
    if code == 4:
        return _error_for_text(detail, code=code, status=status) or InvalidRequest(detail, code=code, status=status)
    if code == 9:
        if _contains(detail, _QUEUE_WORDS):
            return QueueFull(detail, retry_after=retry_after, code=code, status=status)
        return UpstreamError(detail, code=code, status=status)
    if code == 5:
        # Relay "do_request_failed", "read_response_body_failed"...: its upstream misbehaved.
        return TransientError(detail, code=code, status=status)
    return _error_for_text(detail, code=code, status=status) or UpstreamError(detail, code=code, status=status)


def _error_for_answer(response: httpx.Response, body: Any, is_json: bool, secret: str) -> UpstreamError | None:
    """The typed error for an answer, or None when it is a success (see _raise_for_answer)."""
    status = response.status_code
    detail = _body_detail(response, body, is_json, secret)
    retry_after = _retry_after(response)
    shown = detail or f"HTTP {status}"
    mj_shaped = is_json and isinstance(body, dict)
    code = _int_code(body.get("code")) if mj_shaped else None
    properties = body.get("properties") if mj_shaped else None
    properties = properties if isinstance(properties, dict) else {}

    if status in (401, 403):
        return Unauthorized(shown, status=status)
    if status == 429:
        return QueueFull(shown, retry_after=retry_after, code=code, status=status)
    if status == 408 or status >= 500:
        return TransientError(shown, status=status, retry_after=retry_after)
    if 300 <= status < 400:
        try:
            host = httpx.URL(response.headers.get("location", "")).host or "another address"
        except httpx.InvalidURL:
            host = "another address"
        return UpstreamError(f"the server redirected to {host}; check the base URL", status=status)
    if status in (404, 405):
        if code is not None and code not in ACCEPTED_CODES and "description" in body:
            return _error_for_code(code, shown, properties, status=status, retry_after=retry_after)
        # No midjourney-proxy answer at all: the server lacks this endpoint (basic: no buttons).
        return UnsupportedAction(detail or "endpoint not available on this server", status=status)
    if status == 413:
        return InvalidRequest(detail or "request too large for this server", status=status)
    if not is_json:
        if 200 <= status < 300:
            what = "an empty answer" if not response.content.strip() else "an answer that is not JSON"
            return TransientError(f"the server sent {what}", status=status)
        return InvalidRequest(shown, status=status)
    if mj_shaped:
        if body.get("success") is False:
            # trueai LogicException: HTTP 200 {"success": false, "code": -1, "message": "..."}
            return _error_for_text(shown, code=code, status=status) or UpstreamError(shown, code=code, status=status)
        if isinstance(body.get("error"), dict) and "id" not in body:
            # relay (new-api) {"error": {"message", "type", "code"}}
            return _error_for_text(shown, code=None, status=status) or _generic(shown, status)
        if code is not None and code not in ACCEPTED_CODES:
            return _error_for_code(code, shown, properties, status=status, retry_after=retry_after)
    if not 200 <= status < 300:
        return _generic(shown, status)
    return None


def _raise_for_answer(response: httpx.Response, *, secret: str = "") -> Any:
    """Return the decoded JSON of a successful answer; raise the typed error for every other shape.

    Shapes: submit results {code, description, result, properties}; relay errors
    {description, type, code} and {error: {message}}; trueai {success: false, message}; plain-text
    or empty 401/403/429; HTML 5xx pages; truncated or non-JSON bodies. `secret` is scrubbed
    from any server text that becomes an error detail.
    """
    body, is_json = _decode(response)
    error = _error_for_answer(response, body, is_json, secret)
    if error is not None:
        raise error
    return body


def _generic(detail: str, status: int) -> UpstreamError:
    if 400 <= status < 500:
        return InvalidRequest(detail, status=status)
    return UpstreamError(detail, status=status)


def _submit_result(body: Any, *, secret: str) -> SubmitResult:
    """A code 1/21/22 answer to SubmitResult; "id1,id2" results keep the rest as extra_ids."""
    if not isinstance(body, dict) or _int_code(body.get("code")) not in ACCEPTED_CODES:
        raise UpstreamError("the server sent an answer without a result code")
    code = _int_code(body.get("code"))
    assert code is not None
    raw = body.get("result")
    ids: list[str] = []
    if isinstance(raw, list):
        ids = [i for i in (coerce_id(item) for item in raw) if i]
    else:
        text = coerce_id(raw)
        if text:
            ids = [part.strip() for part in text.split(",") if part.strip()]
    description = _scrub(str(body.get("description") or ""), secret)
    if not ids:
        raise UpstreamError(description or "the server accepted the request but sent no task id", code=code)
    properties = body.get("properties")
    return SubmitResult(
        code=code,
        task_id=ids[0],
        description=description,
        properties=properties if isinstance(properties, dict) else {},
        extra_ids=tuple(ids[1:]),
    )


def _video_refusal(error: UpstreamError) -> BotError | None:
    """trueai's /submit/video refusals (MJ_ACCOUNTS_VIDEO.md §7), also when a relay passes them on."""
    params = {"code": error.code, "status": error.status}
    if error.code == 9 and "remix" in error.detail.lower():
        return FeatureUnavailable("error.video_remix_off", error.detail, **params)
    if error.code == 3 and _contains(error.detail, _ACCOUNT_WORDS):
        return FeatureUnavailable("error.video_no_account", error.detail, **params)
    if error.code == 4 and "视频功能未启用" in error.detail:
        return FeatureUnavailable("error.video_disabled", error.detail, **params)
    return None


def _edit_refusal(error: UpstreamError) -> BotError | None:
    """Code 9 "当前账号不支持编辑/重绘任务": the pool has only Discord accounts, which cannot edit."""
    if error.code == 9 and not _contains(error.detail, _QUEUE_WORDS):
        return FeatureUnavailable("error.edit_unsupported", error.detail, code=error.code, status=error.status)
    return None


#: The newer tools' submits (MJClient._submit_tool), by request kind: how their refusals read.
_TOOL_REFUSALS: dict[str, Callable[[UpstreamError], BotError | None]] = {
    "video": _video_refusal,
    "edits": _edit_refusal,
    "retexture": _edit_refusal,
}


def _same_origin(url: httpx.URL, origin: httpx.URL) -> bool:
    return (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port)


def _drop_none(body: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in body.items() if value is not None}


# ---- the client ----------------------------------------------------------------------------------


class MJClient:
    """One upstream: one httpx.AsyncClient, typed submits (never retried) and reads (retried)."""

    def __init__(
        self,
        config: UpstreamConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        read_retries: int = 3,
        backoff: float = 0.5,
        max_retry_after: float = 30.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.config = config
        self._max_response_bytes = max_response_bytes
        self._read_retries = max(0, read_retries)
        self._backoff = max(0.0, backoff)
        self._max_retry_after = max(0.0, max_retry_after)
        self._origin = httpx.URL(config.base_url)
        self._http = httpx.AsyncClient(
            base_url=config.base_url,
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
            transport=transport,
            follow_redirects=False,  # a redirect must never carry the key to another host
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    def __repr__(self) -> str:
        return f"<MJClient {self.config.name!r} {self.config.base_url}>"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def base_url(self) -> str:
        return self.config.base_url

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ---- transport ----

    async def _send(self, method: str, path: str, body: Any = None, *, prefixed: bool = True) -> httpx.Response:
        """One HTTP exchange; transport failures become TransientError (the key never leaves its host).

        The body is streamed with a byte cap and the whole exchange has one deadline
        (`config.timeout`): a server that drips its answer or sends gigabytes cannot hold a reader.
        """
        full_path = (self.config.path_prefix if prefixed else "") + path
        request = self._http.build_request(method, full_path, json=body)
        if _same_origin(request.url, self._origin):
            request.headers.update(self.config.auth_headers())
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.config.timeout):
                response = await self._receive(request)
        except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise TransientError(f"no answer within {self.config.timeout:g} s ({type(exc).__name__})") from None
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _AnswerLost(f"no answer within {self.config.timeout:g} s ({type(exc).__name__})") from None
        except AddressRefused:
            raise AddressNotAllowed(f"{self._origin.host} is not a public address") from None
        except httpx.ConnectError as exc:
            raise TransientError(f"could not connect ({type(exc).__name__})") from None
        except httpx.RequestError as exc:
            raise _AnswerLost(f"connection failed ({type(exc).__name__})") from None
        log.debug(
            "%s %s %s -> HTTP %s in %.0f ms",
            self.config.name,
            method,
            full_path,
            response.status_code,
            (time.monotonic() - started) * 1000,
        )
        return response

    async def _receive(self, request: httpx.Request) -> httpx.Response:
        """The answer with its body read, at most `max_response_bytes` of it (after decompression)."""
        response = await self._http.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self._max_response_bytes:
                    raise TransientError(
                        f"the answer is larger than {self._max_response_bytes} bytes",
                        status=response.status_code,
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        # The body is already decoded: the copy carries no Content-Encoding to decode it twice.
        headers = [
            (k, v) for k, v in response.headers.multi_items() if k.lower() not in ("content-encoding", "content-length")
        ]
        return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks), request=request)

    async def exchange(self, method: str, path: str, body: Any = None) -> httpx.Response:
        """One raw exchange without the speed prefix, never retried: account and task-admin routes
        (bot/upstream/accounts.py) have their own answer envelopes and are parsed there."""
        return await self._send(method, path, body, prefixed=False)

    async def _submit(self, path: str, body: Mapping[str, Any]) -> SubmitResult:
        """POST a submit once. Never retried: a lost answer may still have started (and charged) a task,
        so a request that reached the server and got no answer is SubmitOutcomeUnknown."""
        try:
            response = await self._send("POST", path, _drop_none(body))
        except _AnswerLost as lost:
            raise SubmitOutcomeUnknown(lost.detail) from None
        data = _raise_for_answer(response, secret=self.config.api_key)
        result = _submit_result(data, secret=self.config.api_key)
        log.info("%s %s accepted: code %s, task %s", self.config.name, path, result.code, result.task_id)
        return result

    async def _read(self, method: str, path: str, body: Any, parse: Callable[[httpx.Response], T]) -> T:
        """A read with retries: 5xx, timeouts, garbage and 429 are retried with backoff."""
        attempt = 0
        while True:
            try:
                response = await self._send(method, path, body)
                return parse(response)
            except (TransientError, QueueFull) as exc:
                if attempt >= self._read_retries:
                    raise
                delay = self._retry_delay(attempt, exc)
                log.warning(
                    "%s %s %s failed (%s), retry %d/%d in %.2f s",
                    self.config.name,
                    method,
                    path,
                    type(exc).__name__,
                    attempt + 1,
                    self._read_retries,
                    delay,
                )
                await asyncio.sleep(delay)
                attempt += 1

    def _retry_delay(self, attempt: int, exc: Exception) -> float:
        hinted = getattr(exc, "retry_after", None)
        if hinted is None and isinstance(exc, TransientError):
            hinted = exc.params.get("retry_after")
        if isinstance(hinted, int | float):
            return min(float(hinted), self._max_retry_after)
        return min(self._backoff * 2.0**attempt, self._max_retry_after)

    # ---- submits ----

    async def submit(
        self, request: SubmitRequest, *, notify_hook: str | None = None, state: str | None = None
    ) -> SubmitResult:
        """Send one submit request; `notify_hook` and `state` are the common fields (MJ_API.md §2.1)."""
        body = {**request.body(), "notifyHook": notify_hook or None, "state": state}
        refusal = _TOOL_REFUSALS.get(request.kind)
        if refusal is not None:
            return await self._submit_tool(request.path, body, refusal)
        return await self._submit(request.path, body)

    async def imagine(
        self,
        prompt: str,
        *,
        bot_type: str = DEFAULT_BOT,
        images: Sequence[str] = (),
        notify_hook: str | None = None,
        state: str | None = None,
    ) -> SubmitResult:
        request = ImagineRequest(prompt=prompt, bot_type=bot_type, images=tuple(images))
        return await self.submit(request, notify_hook=notify_hook, state=state)

    async def blend(
        self,
        images: Sequence[str],
        *,
        dimensions: str = "SQUARE",
        bot_type: str = DEFAULT_BOT,
        notify_hook: str | None = None,
    ) -> SubmitResult:
        request = BlendRequest(images=tuple(images), dimensions=dimensions, bot_type=bot_type)
        return await self.submit(request, notify_hook=notify_hook)

    async def describe(
        self, image: str, *, bot_type: str = DEFAULT_BOT, notify_hook: str | None = None
    ) -> SubmitResult:
        return await self.submit(DescribeRequest(image=image, bot_type=bot_type), notify_hook=notify_hook)

    async def shorten(
        self, prompt: str, *, bot_type: str = DEFAULT_BOT, notify_hook: str | None = None
    ) -> SubmitResult:
        return await self.submit(ShortenRequest(prompt=prompt, bot_type=bot_type), notify_hook=notify_hook)

    async def action(
        self, task_id: str, custom_id: str, *, enable_remix: bool = False, notify_hook: str | None = None
    ) -> SubmitResult:
        request = ActionRequest(task_id=task_id, custom_id=custom_id, enable_remix=enable_remix)
        return await self.submit(request, notify_hook=notify_hook)

    async def modal(
        self,
        task_id: str,
        prompt: str,
        *,
        mask_base64: str | None = None,
        notify_hook: str | None = None,
    ) -> SubmitResult:
        request = ModalRequest(task_id=task_id, prompt=prompt, mask_base64=mask_base64)
        return await self.submit(request, notify_hook=notify_hook)

    async def swap_face(self, source: str, target: str, *, notify_hook: str | None = None) -> SubmitResult:
        return await self.submit(SwapFaceRequest(source=source, target=target), notify_hook=notify_hook)

    async def video(
        self,
        prompt: str,
        *,
        image: str | None = None,
        end_image: str | None = None,
        motion: str = "low",
        loop: bool = False,
        hd: bool = False,
        batch: int | None = None,
        extend: tuple[str, int] | None = None,
        notify_hook: str | None = None,
    ) -> SubmitResult:
        """/submit/video: `image` (a data URL or link) to video, or `extend` = (video task id, index 0-3).

        Refusals become FeatureUnavailable: Remix off (code 9), no account for video (3), video off (4)."""
        request = VideoRequest(
            prompt=prompt,
            image=image,
            end_image=end_image,
            motion=motion,
            loop=loop,
            hd=hd,
            batch=batch,
            extend_task=extend[0] if extend else None,
            extend_index=extend[1] if extend else None,
        )
        return await self.submit(request, notify_hook=notify_hook)

    async def edits(self, prompt: str, image: str, *, notify_hook: str | None = None) -> SubmitResult:
        """/submit/edits (trueai; relays pass it on). Discord-account pools refuse: FeatureUnavailable."""
        return await self.submit(EditRequest(prompt=prompt, image=image), notify_hook=notify_hook)

    async def retexture(self, prompt: str, image: str, *, notify_hook: str | None = None) -> SubmitResult:
        """/submit/retexture (trueai only: a relay answers it with its web page: UnsupportedAction)."""
        return await self.submit(RetextureRequest(prompt=prompt, image=image), notify_hook=notify_hook)

    async def _submit_tool(
        self, path: str, body: Mapping[str, Any], refusal: Callable[[UpstreamError], BotError | None]
    ) -> SubmitResult:
        """A submit of the newer tools: an HTML answer (a relay's page for a path it lacks) is
        recognised by its Content-Type and never parsed; known refusals get their own message."""
        try:
            response = await self._send("POST", path, _drop_none(body))
        except _AnswerLost as lost:
            raise SubmitOutcomeUnknown(lost.detail) from None
        if response.is_success and "html" in response.headers.get("content-type", "").lower():
            raise UnsupportedAction("this server does not offer this endpoint", status=response.status_code)
        try:
            data = _raise_for_answer(response, secret=self.config.api_key)
            result = _submit_result(data, secret=self.config.api_key)
        except UpstreamError as exc:
            mapped = refusal(exc)
            if mapped is not None:
                raise mapped from None
            raise
        log.info("%s %s accepted: code %s, task %s", self.config.name, path, result.code, result.task_id)
        return result

    async def change(
        self, task_id: str, action: str, index: int | None = None, *, notify_hook: str | None = None
    ) -> SubmitResult:
        return await self.submit(ChangeRequest(task_id=task_id, change=action, index=index), notify_hook=notify_hook)

    # ---- reads ----

    async def fetch(self, task_id: str) -> MJTask | None:
        """One task, or None if the server does not know it (204, empty 200, task_no_found, 404 code 3)."""
        secret = self.config.api_key

        def parse(response: httpx.Response) -> MJTask | None:
            status = response.status_code
            if status == 204 or (200 <= status < 300 and not response.content.strip()):
                return None
            body, is_json = _decode(response)
            if is_json and isinstance(body, dict) and status in (400, 404):
                code = _int_code(body.get("code"))
                text = str(body.get("description") or "")
                if (status == 404 and code == 3) or _contains(text, _NOT_FOUND_WORDS[:2]):
                    return None
            data = _raise_for_answer(response, secret=secret)
            if data is None:
                return None
            task = MJTask.from_json(data)
            if task is None:
                log.warning("%s fetch %s: the answer is not a task", self.config.name, task_id)
            return task

        return await self._read("GET", f"/mj/task/{quote(str(task_id), safe='')}/fetch", None, parse)

    async def list_by_ids(self, ids: Sequence[str]) -> list[MJTask]:
        """Many tasks in one call. Unknown ids are simply missing; order is the server's.

        Raises UnsupportedAction on HTTP 404/405 so the caller can fall back to fetch().
        """
        wanted = list(dict.fromkeys(str(i) for i in ids if str(i)))
        if not wanted:
            return []
        secret = self.config.api_key

        def parse(response: httpx.Response) -> list[MJTask]:
            if response.status_code in (404, 405):
                raise UnsupportedAction("list-by-condition is not available", status=response.status_code)
            data = _raise_for_answer(response, secret=secret)
            if isinstance(data, dict):
                data = next((data[k] for k in ("result", "data", "list") if isinstance(data.get(k), list)), None)
            if not isinstance(data, list):
                raise UpstreamError("list-by-condition did not answer a list", status=response.status_code)
            return [task for task in (MJTask.from_json(item) for item in data) if task is not None]

        return await self._read("POST", "/mj/task/list-by-condition", {"ids": wanted}, parse)

    async def recent_tasks(self) -> list[MJTask]:
        """The server's latest tasks (GET /mj/task/list: basic and trueai servers, newest first), to
        find a task whose submit answer was lost. Relays have no such list: UnsupportedAction."""
        secret = self.config.api_key

        def parse(response: httpx.Response) -> list[MJTask]:
            if response.status_code in (404, 405) or (response.is_success and _looks_like_html(response)):
                # A relay answers unknown paths with its web page (HTTP 200 HTML) or a 404.
                raise UnsupportedAction("this server does not list its tasks", status=response.status_code)
            data = _raise_for_answer(response, secret=secret)
            if isinstance(data, dict):
                data = next(
                    (data[k] for k in ("content", "list", "data", "result") if isinstance(data.get(k), list)), None
                )
            if not isinstance(data, list):
                raise UpstreamError("the task list is not a list", status=response.status_code)
            return [task for task in (MJTask.from_json(item) for item in data) if task is not None]

        return await self._read("GET", "/mj/task/list", None, parse)

    async def image_seed(self, task_id: str) -> str:
        """The Midjourney seed of a finished task (not on basic servers: UnsupportedAction)."""
        secret = self.config.api_key

        def parse(response: httpx.Response) -> str:
            data = _raise_for_answer(response, secret=secret)
            seed = coerce_id(data.get("result")) if isinstance(data, dict) else None
            if seed is None:
                raise UpstreamError("the server sent no seed", status=response.status_code)
            return seed

        return await self._read("GET", f"/mj/task/{quote(str(task_id), safe='')}/image-seed", None, parse)

    async def cancel(self, task_id: str) -> bool:
        """Best effort (trueai only, admin tokens): True when the server accepted the cancel."""
        secret = self.config.api_key

        def parse(response: httpx.Response) -> bool:
            if response.status_code in (404, 405) or (response.is_success and _looks_like_html(response)):
                return False  # a relay answers paths it lacks with its web page (HTTP 200 HTML)
            _raise_for_answer(response, secret=secret) if response.content else None
            return True

        try:
            return await self._read("POST", f"/mj/task/{quote(str(task_id), safe='')}/cancel", None, parse)
        except UpstreamError:
            return False

    async def check(self) -> None:
        """A cheap authenticated read for testing a key: raises Unauthorized etc., returns None if fine."""
        try:
            await self.list_by_ids(["0"])
        except UnsupportedAction:
            await self.fetch("0")
