"""Domain values parsed from midjourney-proxy answers.

Parsing is deliberately lenient: relays, trueai and basic servers disagree on types and on which
fields exist (see shared/MJ_API.md), so every field is optional and unknown values are kept as text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from bot.requests import SubmitRequest

NOT_START = "NOT_START"
SUBMITTED = "SUBMITTED"
MODAL = "MODAL"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
CANCEL = "CANCEL"

FINAL_STATUSES = frozenset({SUCCESS, FAILURE, CANCEL})

_PERCENT = re.compile(r"(\d{1,3})\s*%")
_KEYCAP = re.compile(r"^\s*\d\ufe0f?\u20e3\s*")


def coerce_id(value: Any) -> str | None:
    """Task ids arrive as strings or JSON numbers; never let them pass through float."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # A float id already lost precision upstream; keep the integer part we were given.
        return str(int(value))
    text = str(value).strip()
    return text or None


def parse_progress(value: Any) -> int | None:
    """'45%' -> 45; None, '' or words -> None (unknown)."""
    if value is None:
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0, min(100, int(value)))
    match = _PERCENT.search(str(value))
    if not match:
        return None
    return max(0, min(100, int(match.group(1))))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class MJButton:
    """One button of a finished task, as Midjourney's own message had it."""

    custom_id: str
    label: str = ""
    emoji: str = ""
    style: int = 2

    @classmethod
    def from_json(cls, data: Any) -> MJButton | None:
        if not isinstance(data, dict):
            return None
        custom_id = _text(data.get("customId") or data.get("custom_id")).strip()
        if not custom_id:  # link buttons ("Web") have no customId and cannot be clicked through the API
            return None
        style = _int_or_none(data.get("style")) or 2
        return cls(
            custom_id=custom_id,
            label=_text(data.get("label")).strip(),
            emoji=_text(data.get("emoji")).strip(),
            style=style,
        )

    def to_json(self) -> dict[str, Any]:
        return {"customId": self.custom_id, "label": self.label, "emoji": self.emoji, "style": self.style}


@dataclass(frozen=True, slots=True)
class MJTask:
    """A task as the upstream reports it (fetch, list-by-condition or a notifyHook body)."""

    id: str
    action: str = ""
    status: str = ""
    progress: int | None = None
    prompt: str = ""
    prompt_en: str = ""
    description: str = ""
    image_url: str | None = None
    fail_reason: str = ""
    final_prompt: str = ""
    buttons: tuple[MJButton, ...] = ()
    submit_time: int | None = None
    start_time: int | None = None
    finish_time: int | None = None
    #: The submit's `state`, echoed back: how the bot finds a task whose submit answer was lost.
    state: str = ""
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    #: A video result's file: the first of videoUrls[].url and videoUrl (MJ_ACCOUNTS_VIDEO.md §7).
    video_url: str | None = None

    @classmethod
    def from_json(cls, data: Any) -> MJTask | None:
        """Returns None for anything that is not a task object with an id."""
        if not isinstance(data, dict):
            return None
        task_id = coerce_id(data.get("id"))
        if task_id is None:
            return None
        properties = data.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        raw_buttons = data.get("buttons")
        buttons: list[MJButton] = []
        if isinstance(raw_buttons, list):
            for raw in raw_buttons:
                button = MJButton.from_json(raw)
                if button is not None:
                    buttons.append(button)
        image_url = _text(data.get("imageUrl")).strip() or None
        video_url = _video_url(data)
        status = _text(data.get("status")).strip().upper()
        if video_url and status == "SUCCESS":
            image_url = video_url  # the result to re-upload is the video, not its preview
        return cls(
            id=task_id,
            action=_text(data.get("action")).strip().upper(),
            status=_text(data.get("status")).strip().upper(),
            progress=parse_progress(data.get("progress")),
            prompt=_text(data.get("prompt")),
            prompt_en=_text(data.get("promptEn")),
            description=_text(data.get("description")),
            image_url=image_url,
            fail_reason=_text(data.get("failReason")).strip(),
            final_prompt=_text(properties.get("finalPrompt")),
            buttons=tuple(buttons),
            submit_time=_int_or_none(data.get("submitTime")),
            start_time=_int_or_none(data.get("startTime")),
            finish_time=_int_or_none(data.get("finishTime")),
            state=_text(data.get("state")).strip(),
            properties=properties,
            video_url=video_url,
        )

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES

    @property
    def is_running(self) -> bool:
        return self.status == IN_PROGRESS


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a request comes from and where its answer goes, travelling together: who asked, the
    channel that shows the task, the guild whose rules and key apply (None: made in DMs), the
    language. A server's task shown in the member's DMs keeps its guild (`in_dm`); the channel rules
    then check `used_in`, the channel the command was typed in (none for a click in those DMs)."""

    user_id: int
    channel_id: int
    guild_id: int | None
    locale: str = "en"
    in_dm: bool = False
    used_in: int | None = None

    @property
    def rules_channel(self) -> int | None:
        """The channel whose rules (allowed channels, NSFW only) apply; None: none applies."""
        if self.used_in is not None:
            return self.used_in
        return None if self.in_dm else self.channel_id


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """An accepted submit: code 1 (started), 22 (queued) or 21 (a MODAL task waits for /submit/modal)."""

    code: int
    task_id: str
    description: str = ""
    properties: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    extra_ids: tuple[str, ...] = ()

    @property
    def queue_position(self) -> int | None:
        value = _int_or_none(self.properties.get("numberOfQueues"))
        if value is not None:
            return value
        match = re.search(r"(\d+)", self.description) if self.code == 22 else None
        return int(match.group(1)) if match else None

    @property
    def needs_modal(self) -> bool:
        """Relays rewrite 21 to 1, so the description and the remix flag count too (MJ_API.md)."""
        if self.code == 21:
            return True
        if "confirm" in self.description.lower():
            return True
        return self.properties.get("remix") is True

    @property
    def final_prompt(self) -> str:
        return _text(self.properties.get("finalPrompt"))


def split_candidates(text: str) -> list[str]:
    """Describe/shorten options: keycap-numbered lines, blank lines dropped, keycaps stripped."""
    candidates: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if not _KEYCAP.match(line):
            continue
        cleaned = _KEYCAP.sub("", line).strip()
        if cleaned:
            candidates.append(cleaned)
    return candidates


def describe_candidates(task: MJTask) -> list[str]:
    """The four prompts of a DESCRIBE result (finalPrompt, else promptEn, else prompt)."""
    for source in (task.final_prompt, task.prompt_en, task.prompt):
        found = split_candidates(source)
        if found:
            return found[:4]
    return []


@dataclass(frozen=True, slots=True)
class ShortenResult:
    analysis: str
    options: tuple[str, ...]


def shorten_result(task: MJTask) -> ShortenResult:
    """SHORTEN: the 'Important tokens' analysis and up to five options after 'Shortened prompts'."""
    text = task.final_prompt or task.description
    marker = re.search(r"shortened prompts", text, re.IGNORECASE)
    if not marker:
        return ShortenResult(analysis=text.strip(), options=tuple(split_candidates(text)[:5]))
    head = text[: marker.start()]
    head = re.sub(r"#+\s*important tokens\s*", "", head, flags=re.IGNORECASE).strip().rstrip("#").strip()
    options = split_candidates(text[marker.end() :])[:5]
    return ShortenResult(analysis=head, options=tuple(options))


def _video_url(data: dict[str, Any]) -> str | None:
    """videoUrls[0].url, else videoUrl: http(s) links only (anything else is not a file to fetch)."""
    candidates: list[Any] = []
    listed = data.get("videoUrls")
    if isinstance(listed, list):
        candidates += [item.get("url") for item in listed if isinstance(item, dict)]
    candidates.append(data.get("videoUrl"))
    for candidate in candidates:
        text = _text(candidate).strip()
        if text.startswith(("https://", "http://")):
            return text
    return None


def result_extra(task: MJTask) -> dict[str, Any]:
    """Parsed describe/shorten results, kept with the task so picks still work after a restart;
    `video` marks a result whose file is a video (shown as an attachment, never as an embed image)."""
    if task.action == "VIDEO" or task.video_url:
        return {"video": True}
    if task.action == "DESCRIBE":
        return {"candidates": describe_candidates(task)}
    if task.action == "SHORTEN":
        result = shorten_result(task)
        return {"analysis": result.analysis, "options": list(result.options)}
    return {}


# ==== stored values: what the bot keeps about tasks and keys (bot/storage/ reads and writes them) ====


class Row(Protocol):
    """A database row by column name: sqlite3.Row, asyncpg.Record or a dict."""

    def keys(self) -> Iterable[str]: ...
    def __getitem__(self, key: str, /) -> Any: ...


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """An API key row to insert. `token` is already encrypted: the store never sees a plain secret."""

    guild_id: int | None
    label: str
    base_url: str
    auth_style: str
    mode: str
    priority: int
    token: str = field(repr=False)
    last4: str
    added_by: int

    def values(self) -> tuple[Any, ...]:
        """In the order of `NEW_API_KEY_COLUMNS`."""
        return tuple(getattr(self, name) for name in NEW_API_KEY_COLUMNS)


NEW_API_KEY_COLUMNS = tuple(f.name for f in fields(NewApiKey))


@dataclass(frozen=True, slots=True, order=True)
class TaskKey:
    """A task row's identity: the upstream that made the task and the id that upstream gave it. An id
    is unique only on its own server: another (a guild admin's key server, a relay) may answer with
    the same id, and must not reach the first task's row."""

    upstream: str
    id: str


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task the bot submitted, and the Discord message that shows it."""

    id: str
    action: str
    user_id: int
    channel_id: int
    guild_id: int | None = None
    message_id: int | None = None
    upstream: str = "default"
    prompt: str = ""
    final_prompt: str = ""
    parent_id: str | None = None
    status: str = ""
    progress: int | None = None
    queue_position: int | None = None
    image_url: str | None = None
    result_url: str | None = None
    fail_reason: str = ""
    buttons: tuple[MJButton, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    locale: str = "en"
    shown: str = ""
    delivered: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    # The interaction that showed the task (a command or a click): its message is edited through
    # this token for the token's first minutes (bot/tracking/writer.py). A secret: out of repr.
    interaction_token: str | None = field(default=None, repr=False)
    interaction_at: float | None = None  # when Discord created that interaction (epoch seconds)
    #: What was submitted, so a retry sends it again (None: not stored, see bot/requests.py).
    request: SubmitRequest | None = None
    #: Its messages are in the owner's DMs ("results in my DMs"): channel_id is that DM, while
    #: guild_id stays the server it was made in (whose rules and key apply).
    in_dm: bool = False

    @classmethod
    def from_row(cls, row: Row) -> TaskRecord:
        """The record a stored row holds, on either backend. Columns that are not fields (lease_owner,
        lease_expires) are coordination, not task data."""
        values = {name: row[name] for name in row.keys() if name in _TASK_FIELDS}
        values["buttons"] = tuple(
            b for b in (MJButton.from_json(item) for item in json.loads(values["buttons"] or "[]")) if b
        )
        values["extra"] = json.loads(values["extra"] or "{}")
        values["delivered"] = bool(values["delivered"])
        stored = values.get("request")
        values["request"] = SubmitRequest.from_json(json.loads(stored)) if stored else None
        if "in_dm" in values:
            values["in_dm"] = bool(values["in_dm"])
        return cls(**values)

    @property
    def key(self) -> TaskKey:
        return TaskKey(self.upstream, self.id)

    def column_values(self) -> list[Any]:
        """The values to store, in the order of `TASK_COLUMNS`."""
        return [task_column_value(name, getattr(self, name)) for name in TASK_COLUMNS]

    def button(self, index: int) -> MJButton | None:
        return self.buttons[index] if 0 <= index < len(self.buttons) else None

    @property
    def message_guild_id(self) -> int | None:
        """The server its messages are in: None when they are in a DM."""
        return None if self.in_dm else self.guild_id


TASK_COLUMNS = tuple(f.name for f in fields(TaskRecord))
_TASK_FIELDS = frozenset(TASK_COLUMNS)


def task_column_value(name: str, value: Any) -> Any:
    """A TaskRecord field as both backends store it: buttons, extra and request as JSON (a request
    that is not stored, NULL), delivered as 0/1."""
    if name == "buttons":
        return json.dumps([b.to_json() for b in value], ensure_ascii=False)
    if name == "extra":
        return json.dumps(value, ensure_ascii=False)
    if name in ("delivered", "in_dm"):
        return int(bool(value))
    if name == "request":
        stored = value.to_json() if value is not None else None
        return json.dumps(stored, ensure_ascii=False) if stored is not None else None
    return value
