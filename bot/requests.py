"""What a submit asks for, as values: one frozen dataclass per midjourney-proxy submit endpoint.

A cog builds a request, the jobs layer sends it (`MJClient.submit`) and the task row keeps it, so a
retry is "send the stored request again". Requests that carry pictures (reference images, blend,
describe, face swap, a mask) are not stored: a row is read on every poll, and megabytes of base64
in it would slow every read. Those tasks cannot be retried from their message, as before.

The common fields (`notifyHook`, `state`) are not part of a request: the jobs layer adds them for
each send (MJ_API.md §2.1).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

DEFAULT_BOT = "MID_JOURNEY"
CHANGE_ACTIONS = ("UPSCALE", "VARIATION", "REROLL")


@dataclass(frozen=True, kw_only=True)
class SubmitRequest:
    """Base of every submit. `kind` names it in the stored JSON; `path` is its endpoint."""

    kind: ClassVar[str] = ""
    path: ClassVar[str] = ""
    #: See task_action().
    action: ClassVar[str] = ""
    #: False when the request carries pictures: then it is not stored (see the module docstring).
    storable: ClassVar[bool] = True

    _kinds: ClassVar[dict[str, type[SubmitRequest]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            SubmitRequest._kinds[cls.kind] = cls

    def body(self) -> dict[str, Any]:
        """The JSON body without the common fields; None values are dropped by the client."""
        raise NotImplementedError

    def label(self) -> str:
        """What the task's message shows as its prompt."""
        return ""

    def task_action(self) -> str:
        """The task's action when the caller names none (a button click names its own)."""
        return self.action

    def to_json(self) -> dict[str, Any] | None:
        """The stored form, or None for a request that is not stored."""
        if not self.storable:
            return None
        data = asdict(self)
        for name, value in data.items():
            if isinstance(value, tuple):
                data[name] = list(value)
        return {"kind": self.kind, **data}

    @staticmethod
    def from_json(data: Any) -> SubmitRequest | None:
        """A stored request again; None for anything unknown or malformed (a row from a newer
        version, a hand-edited database): that task simply cannot be retried."""
        if not isinstance(data, Mapping):
            return None
        cls = SubmitRequest._kinds.get(str(data.get("kind") or ""))
        if cls is None:
            return None
        names = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names}
        try:
            return cls(**values)
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True, kw_only=True)
class ImagineRequest(SubmitRequest):
    """/imagine; `images` are data URLs sent as base64Array (reference images)."""

    kind: ClassVar[str] = "imagine"
    path: ClassVar[str] = "/mj/submit/imagine"
    action: ClassVar[str] = "IMAGINE"

    prompt: str
    bot_type: str = DEFAULT_BOT
    images: tuple[str, ...] = ()

    def body(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "botType": self.bot_type, "base64Array": list(self.images) or None}

    def label(self) -> str:
        return self.prompt

    def to_json(self) -> dict[str, Any] | None:
        return None if self.images else super().to_json()


@dataclass(frozen=True, kw_only=True)
class BlendRequest(SubmitRequest):
    """/blend of 2-5 data URLs; the server validates the count (code 4)."""

    kind: ClassVar[str] = "blend"
    path: ClassVar[str] = "/mj/submit/blend"
    action: ClassVar[str] = "BLEND"
    storable: ClassVar[bool] = False

    images: tuple[str, ...]
    dimensions: str = "SQUARE"
    bot_type: str = DEFAULT_BOT

    def body(self) -> dict[str, Any]:
        return {"base64Array": list(self.images), "dimensions": self.dimensions, "botType": self.bot_type}

    def label(self) -> str:
        return f"/blend {len(self.images)} images ({self.dimensions.lower()})"


@dataclass(frozen=True, kw_only=True)
class DescribeRequest(SubmitRequest):
    """/describe one data URL (field `base64`)."""

    kind: ClassVar[str] = "describe"
    path: ClassVar[str] = "/mj/submit/describe"
    action: ClassVar[str] = "DESCRIBE"
    storable: ClassVar[bool] = False

    image: str
    bot_type: str = DEFAULT_BOT

    def body(self) -> dict[str, Any]:
        return {"base64": self.image, "botType": self.bot_type}

    def label(self) -> str:
        return "/describe"


@dataclass(frozen=True, kw_only=True)
class ShortenRequest(SubmitRequest):
    """/shorten (not on basic servers: UnsupportedAction)."""

    kind: ClassVar[str] = "shorten"
    path: ClassVar[str] = "/mj/submit/shorten"
    action: ClassVar[str] = "SHORTEN"

    prompt: str
    bot_type: str = DEFAULT_BOT

    def body(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "botType": self.bot_type}

    def label(self) -> str:
        return self.prompt


@dataclass(frozen=True, kw_only=True)
class ActionRequest(SubmitRequest):
    """A click on a finished task's button. Check `needs_modal` on the result (relays hide code 21).

    `enable_remix` asks trueai for the prompt step on V/pan/reroll; servers that ignore it just run.
    """

    kind: ClassVar[str] = "action"
    path: ClassVar[str] = "/mj/submit/action"
    action: ClassVar[str] = "ACTION"

    task_id: str
    custom_id: str
    enable_remix: bool = False

    def body(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "customId": self.custom_id, "enableRemix": True if self.enable_remix else None}


@dataclass(frozen=True, kw_only=True)
class ModalRequest(SubmitRequest):
    """Second step for the MODAL task id; `prompt` is always sent because older servers require it."""

    kind: ClassVar[str] = "modal"
    path: ClassVar[str] = "/mj/submit/modal"
    action: ClassVar[str] = "MODAL"
    storable: ClassVar[bool] = False  # the second step of a two-step task: not repeatable on its own

    task_id: str
    prompt: str
    mask_base64: str | None = None

    def body(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "prompt": self.prompt or "", "maskBase64": self.mask_base64 or None}

    def label(self) -> str:
        return self.prompt


@dataclass(frozen=True, kw_only=True)
class SwapFaceRequest(SubmitRequest):
    """Face swap: `source` = the face, `target` = the picture (both data URLs)."""

    kind: ClassVar[str] = "swap_face"
    path: ClassVar[str] = "/mj/insight-face/swap"
    action: ClassVar[str] = "SWAP_FACE"
    storable: ClassVar[bool] = False

    source: str
    target: str

    def body(self) -> dict[str, Any]:
        return {"sourceBase64": self.source, "targetBase64": self.target}

    def label(self) -> str:
        return "/swapface"


@dataclass(frozen=True, kw_only=True)
class ChangeRequest(SubmitRequest):
    """U/V/reroll on basic servers (no buttons). Relays demand an index even for REROLL: send 1."""

    kind: ClassVar[str] = "change"
    path: ClassVar[str] = "/mj/submit/change"

    task_id: str
    change: str
    index: int | None = None

    def __post_init__(self) -> None:
        name = self.change.strip().upper()
        if name not in CHANGE_ACTIONS:
            raise ValueError(f"change action must be one of {', '.join(CHANGE_ACTIONS)}, got {self.change!r}")
        index = self.index
        if name == "REROLL":
            index = 1
        elif not isinstance(index, int) or isinstance(index, bool) or not 1 <= index <= 4:
            raise ValueError(f"{name} needs an index from 1 to 4, got {index!r}")
        object.__setattr__(self, "change", name)
        object.__setattr__(self, "index", index)

    def body(self) -> dict[str, Any]:
        return {"taskId": self.task_id, "action": self.change, "index": self.index}

    def task_action(self) -> str:
        return self.change


def _is_data(value: str | None) -> bool:
    return bool(value) and str(value).startswith("data:")


@dataclass(frozen=True, kw_only=True)
class VideoRequest(SubmitRequest):
    """/submit/video: `image` (a data URL or a link) to video, or extend video `extend_index` (0-3)
    of task `extend_task`. Stored unless it carries a picture's bytes (a link is kept)."""

    kind: ClassVar[str] = "video"
    path: ClassVar[str] = "/mj/submit/video"
    action: ClassVar[str] = "VIDEO"

    prompt: str
    image: str | None = None
    end_image: str | None = None
    motion: str = "low"
    loop: bool = False
    hd: bool = False
    batch: int | None = None
    extend_task: str | None = None
    extend_index: int | None = None

    def __post_init__(self) -> None:
        if self.motion not in ("low", "high"):
            raise ValueError(f"motion must be low or high, got {self.motion!r}")
        if self.batch is not None and self.batch not in (1, 2, 4):
            raise ValueError(f"batch must be 1, 2 or 4, got {self.batch!r}")
        if (self.extend_task is None) != (self.extend_index is None):
            raise ValueError("extend needs both the video task and its index")

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "prompt": self.prompt,
            "motion": self.motion,
            "image": self.image,
            "endImage": self.end_image,
            "loop": True if self.loop else None,
            "videoType": "vid_1.1_i2v_720" if self.hd else None,
            "batchSize": self.batch,
        }
        if self.extend_task is not None:
            body.update(action="extend", taskId=self.extend_task, index=self.extend_index)
        return body

    def label(self) -> str:
        return self.prompt

    def to_json(self) -> dict[str, Any] | None:
        return None if _is_data(self.image) or _is_data(self.end_image) else super().to_json()


@dataclass(frozen=True, kw_only=True)
class EditRequest(SubmitRequest):
    """/submit/edits (trueai; relays pass it on): a picture (data URL) changed by a prompt."""

    kind: ClassVar[str] = "edits"
    path: ClassVar[str] = "/mj/submit/edits"
    action: ClassVar[str] = "EDIT"
    storable: ClassVar[bool] = False

    prompt: str
    image: str

    def body(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "image": self.image}

    def label(self) -> str:
        return self.prompt


@dataclass(frozen=True, kw_only=True)
class RetextureRequest(EditRequest):
    """/submit/retexture (trueai only): the picture's shapes kept, its look changed."""

    kind: ClassVar[str] = "retexture"
    path: ClassVar[str] = "/mj/submit/retexture"
    action: ClassVar[str] = "RETEXTURE"
