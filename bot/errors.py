"""Errors a user can be shown.

Each error carries an i18n message key and its parameters; the Discord layer translates it. The API
client maps every upstream failure shape (MJ_API.md "Submit answers and errors") to one of these.
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the setting, never a secret's value."""


class BotError(Exception):
    """Base: a failure with a translatable, user-facing explanation."""

    key = "error.generic"
    #: True when the same request may succeed if repeated later (network, 5xx, overload).
    transient = False

    def __init__(self, detail: str = "", **params: Any) -> None:
        self.detail = detail.strip()
        self.params: dict[str, Any] = {"detail": self.detail, **params}
        super().__init__(self.detail or self.key)


# ---- upstream (midjourney-proxy) failures -------------------------------------------------------


class UpstreamError(BotError):
    """The API refused or failed a request."""

    key = "error.upstream"
    #: The upstream (key) that answered, when the jobs layer knows it (bot/jobs.py).
    upstream: str | None = None

    def __init__(self, detail: str = "", *, code: int | None = None, status: int | None = None, **params: Any):
        super().__init__(detail, code=code, status=status, **params)
        self.code = code
        self.status = status


class Unauthorized(UpstreamError):
    """Bad, expired or used-up API key (HTTP 401/403)."""

    key = "error.unauthorized"


class QuotaExhausted(UpstreamError):
    """The key has no credit left (relay quota_not_enough, trueai daily limit)."""

    key = "error.quota"


class QueueFull(UpstreamError):
    """Queue full / overloaded (code 23, code 9 'queue full', code 30, HTTP 429). Nothing was charged."""

    key = "error.queue_full"
    transient = True

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **params: Any):
        super().__init__(detail, **params)
        self.retry_after = retry_after


class BannedPrompt(UpstreamError):
    """Code 24: the prompt hit the server's banned-word list."""

    key = "error.banned"

    def __init__(self, detail: str = "", *, word: str | None = None, **params: Any):
        super().__init__(detail, word=word or "", **params)
        self.word = word
        if word:
            self.key = "error.banned_word"


class TaskNotFound(UpstreamError):
    """Code 3 / task_not_found / HTTP 404 on a task."""

    key = "error.not_found"


class AmbiguousTask(BotError):
    """A bare task id (an old button, a typed id) names tasks of more than one upstream: which one
    is meant cannot be told, so none is used."""

    key = "error.ambiguous_task"


class TaskIdTaken(BotError):
    """The API answered a submit with the id of a stored task of another member or guild (a server
    shared by several guilds, or one that lies): that task's row is not handed over."""

    key = "error.task_id_taken"


class InvalidRequest(UpstreamError):
    """Code 4: the server rejected the parameters; `detail` says which."""

    key = "error.invalid"


class UnsupportedAction(UpstreamError):
    """The server does not support this endpoint or button (unknown_action, 未知的 Action 类型, 404)."""

    key = "error.unsupported"


class AddressNotAllowed(UpstreamError):
    """The API server's host resolves to a non-public address the operator did not allow."""

    key = "error.address_refused"


class FeatureUnavailable(UpstreamError):
    """The server has the endpoint but its accounts cannot run it: video with Remix off (code 9), no
    account for video (3), video turned off (4), editing on Discord-account pools (9). `key` per case."""

    def __init__(self, key: str, detail: str = "", **params: Any) -> None:
        super().__init__(detail, **params)
        self.key = key


class TransientError(UpstreamError):
    """5xx, timeout, refused connection, garbage body: may work later."""

    key = "error.transient"
    transient = True


class SubmitOutcomeUnknown(TransientError):
    """A submit reached the server but its answer was lost (dropped connection, timeout): the server
    may have made, and charged, the task. Transient like any lost answer, but never re-sent without
    the user's consent (bot/jobs.py looks for the task first)."""

    key = "error.submit_unknown"


# ---- downloads made for someone else (bot.net.fetcher) -------------------------------------------


class DownloadRefused(BotError):
    """The link points at an address the bot does not connect to for others (loopback, a private
    network, cloud metadata...), directly or through a redirect; or (`key` download.bad_link) it is
    no http(s) link, or redirects without end. Never retried."""

    key = "download.refused"

    def __init__(self, detail: str = "", *, key: str = "download.refused") -> None:
        super().__init__(detail)
        self.key = key


class DownloadTooLarge(BotError):
    """The body is larger than the caller's cap (it was not read further)."""

    key = "download.too_large"

    def __init__(self, limit: int) -> None:
        super().__init__("", limit_mb=f"{limit / 1048576:.0f}")
        self.limit = limit


class NotMedia(BotError):
    """The bytes are not a picture (or video) the bot may post: it is shown as a failure instead."""

    key = "download.not_media"


# ---- bot-side failures ---------------------------------------------------------------------------


class InputError(BotError):
    """The user's input cannot be submitted (bad file, bad prompt...). `key` is set per case."""

    def __init__(self, key: str, /, **params: Any) -> None:  # a `key=` parameter is the message's own
        super().__init__("", **params)
        self.key = key


class NotAllowed(BotError):
    """The user may not do this (not the owner, not an admin, channel not allowed...)."""

    def __init__(self, key: str = "error.not_allowed", **params: Any) -> None:
        super().__init__("", **params)
        self.key = key


class SubmitLost(BotError):
    """A submit's answer was lost (SubmitOutcomeUnknown) and its task not found yet. `state` names
    the lost submit for its Retry button; `searching` says whether the bot can look for the task."""

    def __init__(self, state: str, *, searching: bool) -> None:
        super().__init__("")
        self.state = state
        self.searching = searching
        self.key = "submit.lost_searching" if searching else "submit.lost_unsearchable"
