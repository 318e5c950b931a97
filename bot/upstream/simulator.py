"""A simulated midjourney-proxy server: the tests' fake upstream and the bot's "try-it" mode.

One aiohttp app on 127.0.0.1 that speaks the API of shared/MJ_API.md in three flavours:
- "relay" (new-api): Bearer keys, codes 22 -> 1 and 21 -> 1 (except Inpaint/CustomZoom), its own
  error shapes, status "" right after a submit, no PicReader/PromptAnalyzer/BOOKMARK/animate;
- "trueai" (trueai-org): raw Authorization or mj-api-secret, full Plus API, plain-text 401s;
- "basic" (novicezk): mj-api-secret only, no buttons/action/modal/shorten/swap/image-seed, /submit/change.

Issue 19 adds each family's account and task-admin routes (MJ_ACCOUNTS_VIDEO.md): trueai's
`/mj/admin/*` for its `admin_token` (a user token gets 401 "账号无权限"), a "plus" server's
`/mj/account/*` (flavour basic with plus=True), novicezk's read-only list and `/mj/task/queue`; and
relays answer every path new-api does not route with its web page (HTTP 200 text/html, before any
auth). Video (`/submit/video`, Animate, U1-U4 on videos, Extend) and `/submit/edits|retexture` come
with trueai's refusals: Remix off (9), no account (3), video off (4), Discord-account pools (9).

Tasks walk NOT_START -> SUBMITTED -> IN_PROGRESS (previews) -> SUCCESS with realistic buttons and
Pillow-drawn PNGs. The clock is either "reads" (each read of a task advances it one step:
deterministic for tests) or "time" (one step every `step_seconds`: the try-it mode). Fault knobs
(fail_next, next_submit_code, ...) produce the error shapes real servers send.

Run standalone: python -m bot.upstream.simulator --port 8080 --flavor relay --clock time
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import io
import json
import logging
import math
import os
import random
import re
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Any, Self

import aiohttp
from aiohttp import web
from PIL import Image, ImageDraw, ImageFilter, ImageFont

log = logging.getLogger(__name__)

FLAVORS = ("relay", "trueai", "basic")
CLOCKS = ("reads", "time")
AUTH_STYLES = ("bearer", "mj-api-secret", "raw")
FAULT_KINDS = ("401", "500", "502", "timeout", "garbage", "truncated", "429", "reset", "lost")
MODE_PREFIXES = {"mj-fast": "FAST", "mj-relax": "RELAX", "mj-turbo": "TURBO"}

NOT_START = "NOT_START"
SUBMITTED = "SUBMITTED"
MODAL = "MODAL"
IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
CANCEL = "CANCEL"
FINAL = frozenset({SUCCESS, FAILURE, CANCEL})

#: Actions whose result is a 2x2 grid with U1-4 / reroll / V1-4 buttons.
GRID_ACTIONS = frozenset({"IMAGINE", "VARIATION", "REROLL", "BLEND", "PAN", "ZOOM"})
KEYCAPS = tuple(f"{n}\ufe0f\u20e3" for n in range(10))
WAITING_FOR_MODAL = "Waiting for window confirm"
INSTANCE_ID = "1648406635623804928"

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+);base64,(?P<data>.*)$", re.DOTALL)
_FAIL_WORD = re.compile(r"\bfail\b", re.IGNORECASE)
_SPEED_FLAGS = re.compile(r"\s*--(fast|relax|turbo)\b", re.IGNORECASE)


@dataclass(slots=True)
class RecordedRequest:
    """One request as the simulator saw it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any = None
    query: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class SimTask:
    """A task in the simulator's store; rendered per flavour by SimulatedProxy.task_json()."""

    id: str
    action: str
    kind: str  # grid | single | describe | shorten | face
    prompt: str = ""
    prompt_en: str = ""
    description: str = ""
    submit_description: str = "Submit success"
    final_prompt: str = ""
    bot_type: str = "MID_JOURNEY"
    mode: str | None = None
    state: str | None = None
    notify_hook: str | None = None
    parent_id: str | None = None
    custom_id: str = ""
    hash: str = ""
    index: int = 0
    stage: int = 0
    status: str = NOT_START
    progress: str | None = None
    submit_time: int = 0
    start_time: int | None = None
    finish_time: int | None = None
    fail_reason: str = ""
    pending_failure: str | None = None
    held: bool = False
    last_step: float = 0.0
    buttons: list[dict[str, Any]] = field(default_factory=list)
    source_image: bytes | None = None
    source_mime: str = "image/png"
    mask: str | None = None
    image_count: int = 0
    step_seconds: float | None = None  # clock "time": this task's own pace (None: the proxy's)
    relabel_to: str = ""  # trueai extend: starts as UPSCALE, becomes VIDEO once the pick lands
    video_count: int = 4


@dataclass(slots=True)
class _Fault:
    kind: str
    count: int
    path_prefix: str | None


@dataclass(slots=True)
class _Forced:
    code: int
    description: str | None
    properties: dict[str, Any] | None


@dataclass(slots=True)
class _Answer:
    """A submit answer before flavour rendering."""

    code: int
    description: str
    result: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    keep_21: bool = False  # relay keeps code 21 only for Inpaint / CustomZoom


class _Refusal(Exception):
    def __init__(self, answer: _Answer) -> None:
        super().__init__(answer.description)
        self.answer = answer


def _refuse(code: int, description: str, *, status: int = 200, **properties: Any) -> _Refusal:
    return _Refusal(_Answer(code=code, description=description, status=status, properties=properties))


def _now_ms() -> int:
    return int(time.time() * 1000)


def _button(custom_id: str, *, label: str = "", emoji: str = "") -> dict[str, Any]:
    return {"customId": custom_id, "emoji": emoji, "label": label, "type": 2, "style": 2}


def grid_buttons(job_hash: str) -> list[dict[str, Any]]:
    """E3: U1-4, reroll, V1-4 of a grid message."""
    buttons = [_button(f"MJ::JOB::upsample::{i}::{job_hash}", label=f"U{i}") for i in range(1, 5)]
    buttons.append(_button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", emoji="🔄"))
    buttons += [_button(f"MJ::JOB::variation::{i}::{job_hash}", label=f"V{i}") for i in range(1, 5)]
    return buttons


def upscale_buttons(job_hash: str) -> list[dict[str, Any]]:
    """E4: the V6 set of an upscaled image (13 buttons)."""
    h = job_hash
    return [
        _button(f"MJ::JOB::upsample_v6_2x_subtle::1::{h}::SOLO", label="Upscale (Subtle)", emoji="upscale_1"),
        _button(f"MJ::JOB::upsample_v6_2x_creative::1::{h}::SOLO", label="Upscale (Creative)", emoji="upscale_1"),
        _button(f"MJ::JOB::low_variation::1::{h}::SOLO", label="Vary (Subtle)", emoji="🪄"),
        _button(f"MJ::JOB::high_variation::1::{h}::SOLO", label="Vary (Strong)", emoji="🪄"),
        _button(f"MJ::Inpaint::1::{h}::SOLO", label="Vary (Region)", emoji="🖌️"),
        _button(f"MJ::Outpaint::50::1::{h}::SOLO", label="Zoom Out 2x", emoji="🔍"),
        _button(f"MJ::Outpaint::75::1::{h}::SOLO", label="Zoom Out 1.5x", emoji="🔍"),
        _button(f"MJ::CustomZoom::{h}", label="Custom Zoom", emoji="🔍"),
        _button(f"MJ::JOB::pan_left::1::{h}::SOLO", emoji="⬅️"),
        _button(f"MJ::JOB::pan_right::1::{h}::SOLO", emoji="➡️"),
        _button(f"MJ::JOB::pan_up::1::{h}::SOLO", emoji="⬆️"),
        _button(f"MJ::JOB::pan_down::1::{h}::SOLO", emoji="⬇️"),
        _button(f"MJ::BOOKMARK::{h}", emoji="❤️"),
    ]


def animate_buttons(job_hash: str) -> list[dict[str, Any]]:
    """Animate on an upscaled image (V7 on Discord; the simulator adds them with video_buttons=True)."""
    return [
        _button(f"MJ::JOB::animate_high::1::{job_hash}::SOLO", label="Animate (High motion)", emoji="🎞️"),
        _button(f"MJ::JOB::animate_low::1::{job_hash}::SOLO", label="Animate (Low motion)", emoji="🎞️"),
    ]


def video_buttons(job_hash: str, count: int = 4) -> list[dict[str, Any]]:
    """A VIDEO task: U1-U4 pick one video (MJ_ACCOUNTS_VIDEO.md §7), 🔄 runs it again."""
    buttons = [_button(f"MJ::JOB::video_virtual_upscale::{i}::{job_hash}", label=f"U{i}") for i in range(1, count + 1)]
    buttons.append(_button(f"MJ::JOB::reroll::0::{job_hash}::SOLO", emoji="🔄"))
    return buttons


def extend_buttons(job_hash: str) -> list[dict[str, Any]]:
    """One picked video: Extend continues it."""
    return [
        _button(f"MJ::JOB::animate_high_extend::1::{job_hash}", label="Extend (High motion)", emoji="🎞️"),
        _button(f"MJ::JOB::animate_low_extend::1::{job_hash}", label="Extend (Low motion)", emoji="🎞️"),
    ]


def mp4_bytes(seed: str) -> bytes:
    """A small file that is an MP4 by its bytes (ftyp box, then media data)."""
    ftyp = b"ftyp" + b"isom" + (512).to_bytes(4, "big") + b"isomiso2avc1mp41"
    mdat = b"mdat" + (seed.encode("ascii", "replace") * 64)[:4096]
    return len(ftyp + b"1234").to_bytes(4, "big") + ftyp + (len(mdat) + 4).to_bytes(4, "big") + mdat


def describe_buttons() -> list[dict[str, Any]]:
    """E5: PicReader picks, describe again, imagine all (no job hash)."""
    buttons = [_button(f"MJ::Job::PicReader::{i}", emoji=KEYCAPS[i]) for i in range(1, 5)]
    buttons.append(_button("MJ::Picread::Retry", emoji="🔄"))
    buttons.append(_button("MJ::Job::PicReader::all", label="Imagine all", emoji="🎉"))
    return buttons


def shorten_buttons(count: int) -> list[dict[str, Any]]:
    return [_button(f"MJ::Job::PromptAnalyzer::{i}", emoji=KEYCAPS[i]) for i in range(1, count + 1)]


def sample_account(n: int, *, flavor: str = "trueai", **changes: Any) -> dict[str, Any]:
    """One Midjourney account as each server family stores it (MJ_ACCOUNTS_VIDEO.md §3), secrets
    included: trueai and plus answer admins with `userToken`, `cookie` and login fields in clear."""
    channel = f"11{n:02d}0703772185268251"
    if flavor == "basic":
        account: dict[str, Any] = {
            "id": channel,
            "channelId": channel,
            "guildId": "1050703771580432384",
            "userToken": f"sim-user-token-{n}-MTA1MDcwMzc3",
            "userAgent": "Mozilla/5.0",
            "enable": True,
            "coreSize": 3,
            "queueSize": 10,
            "timeoutMinutes": 5,
        }
    elif flavor == "plus":
        account = {
            "id": f"17{n:02d}9981561340551168",
            "name": f"plus-account-{n}",
            "email": f"owner{n}@example.com",
            "channelId": channel,
            "guildId": "1050703771580432384",
            "userToken": f"sim-user-token-{n}-MTA1MDcwMzc3",
            "enable": True,
            "mode": "FAST",
            "nijiMode": "FAST",
            "fastTimeRemaining": "12.50/15.0 hours (83.33%)",
            "lifetimeUsage": "321 images (70.1 hours)",
            "relaxedUsage": "12 images (0.9 hours)",
            "subscribePlan": "STANDARD",
            "billedWay": "MONTHLY",
            "renewDate": "2026-12-31",
            "version": "7",
            "remix": False,
            "coreSize": 3,
            "queueSize": 10,
            "timeoutMinutes": 5,
            "remark": f"plus pool {n}",
        }
    else:
        account = {
            "id": f"a8c5f1d2-0000-4000-8000-00000000000{n}",
            "channelId": channel,
            "guildId": "1050703771580432384",
            "remark": f"pool {n}",
            "sponsor": "",
            "isDiscord": True,
            "isYouChuan": False,
            "isOfficial": False,
            "userToken": f"sim-user-token-{n}-MTA1MDcwMzc3",
            "cookie": f"__cf_bm=sim-cookie-{n}",
            "loginAccount": f"owner{n}@example.com",
            "loginPassword": f"sim-password-{n}",
            "login2fa": "JBSWY3DPEHPK3PXP",
            "userAgent": "Mozilla/5.0",
            "enable": True,
            "disabledReason": None,
            "lock": False,
            "cfUrl": None,
            "running": True,
            "mode": None,
            "allowModes": [],
            "enableMj": True,
            "enableNiji": True,
            "displays": {"mode": "Fast", "nijiMode": "Fast", "subscribePlan": "Standard", "renewDate": "2026-12-31"},
            "fastTimeRemaining": "12.50/15.0 hours (83.33%)",
            "relaxTimeRemaining": None,
            "fastExhausted": False,
            "version": "7",
            "versionSelector": [
                {"customId": "7", "label": "Midjourney Model V7", "emoji": ""},
                {"customId": "6.1", "label": "Midjourney Model V6.1", "emoji": ""},
                {"customId": "niji 6", "label": "Niji Model V6", "emoji": ""},
            ],
            "mjRemixOn": False,
            "nijiRemixOn": False,
            "remixAutoSubmit": False,
            "coreSize": 3,
            "queueSize": 10,
            "timeoutMinutes": 5,
            "runningCount": 0,
            "queueCount": 0,
            "todayDraw": 4,
            "infoUpdated": "2026-12-07T09:00:00",
        }
    account.update(changes)
    return account


@dataclass(frozen=True, slots=True)
class _ButtonKind:
    """What a customId does: the new task's action, and whether it always/sometimes needs a modal."""

    action: str
    index: int = 1
    modal: str = "no"  # no | always | remix
    special: str = ""  # picreader | picread_retry | custom_zoom | inpaint


def classify_custom_id(custom_id: str) -> _ButtonKind | None:
    """The action tables of MJ_API.md §Buttons; None = a button no server accepts through /action."""
    parts = custom_id.split("::")
    if len(parts) < 3 or parts[0] != "MJ":
        return None
    if parts[1] == "JOB":
        word = parts[2]
        index = int(parts[3]) if len(parts) > 3 and parts[3].isdigit() else 1
        if word == "upsample":
            return _ButtonKind("UPSCALE", index=index)
        if word.startswith("upsample_"):
            return _ButtonKind("UPSCALE")
        if word == "variation":
            return _ButtonKind("VARIATION", index=index, modal="remix")
        if word in ("low_variation", "high_variation"):
            return _ButtonKind("VARIATION", modal="remix")
        if word == "reroll":
            return _ButtonKind("REROLL", modal="remix")
        if word.startswith("pan_"):
            return _ButtonKind("PAN", modal="remix")
        if word == "video_virtual_upscale":
            return _ButtonKind("UPSCALE", index=index, special="video_pick")
        if word in ("animate_high", "animate_low", "animate_high_extend", "animate_low_extend"):
            return _ButtonKind("VIDEO", modal="remix", special="animate")
        return None  # video::…::manual and the rest: rejected
    if parts[1] == "Outpaint":
        return _ButtonKind("ZOOM")
    if parts[1] == "CustomZoom":
        return _ButtonKind("ZOOM", modal="always", special="custom_zoom")
    if parts[1] == "Inpaint":
        return _ButtonKind("VARIATION", modal="always", special="inpaint")
    if parts[1] == "Job" and parts[2] == "PicReader" and len(parts) > 3:
        if parts[3] == "all":
            return _ButtonKind("IMAGINE", index=0, special="picreader")
        if parts[3].isdigit():
            return _ButtonKind("IMAGINE", index=int(parts[3]), modal="always", special="picreader")
        return None
    if parts[1] == "Picread" and parts[2] == "Retry":
        return _ButtonKind("DESCRIBE", special="picread_retry")
    return None  # BOOKMARK, PromptAnalyzer, unknown


def _decode_data_url(value: Any) -> tuple[str, bytes] | None:
    if not isinstance(value, str):
        return None
    match = _DATA_URL.match(value.strip())
    if not match:
        return None
    try:
        return match.group("mime"), base64.b64decode(match.group("data"), validate=False)
    except (binascii.Error, ValueError):
        return None


class SimulatedProxy:
    """A fake midjourney-proxy on 127.0.0.1 (see the module docstring for flavours and knobs)."""

    def __init__(
        self,
        *,
        flavor: str = "relay",
        api_key: str | None = None,
        auth_style: str | None = None,
        clock: str = "reads",
        step_seconds: float = 2.0,
        progress_steps: int = 3,
        remix: bool = False,
        banned_words: Sequence[str] = ("nude",),
        numeric_ids: bool = False,
        list_by_condition_enabled: bool = True,
        image_size: int = 512,
        image_noise: bool = False,
        image_text: bool = True,
        timeout_delay: float = 2.0,
        admin_token: str | None = None,
        plus: bool = False,
        video_buttons: bool = False,
        video_enabled: bool = True,
        accounts: Sequence[dict[str, Any]] | None = None,
        sync_cooldown: float = 300.0,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
    ) -> None:
        if flavor not in FLAVORS:
            raise ValueError(f"unknown flavor {flavor!r}; expected one of {', '.join(FLAVORS)}")
        if clock not in CLOCKS:
            raise ValueError(f"unknown clock {clock!r}; expected one of {', '.join(CLOCKS)}")
        if auth_style is not None and auth_style not in AUTH_STYLES:
            raise ValueError(f"unknown auth_style {auth_style!r}")
        self.flavor = flavor
        self.api_key = api_key
        self.auth_style = auth_style
        self.clock = clock
        self.step_seconds = step_seconds
        self.progress_steps = max(1, progress_steps)
        self.remix = remix
        self.banned_words = list(banned_words)
        self.numeric_ids = numeric_ids
        self.list_by_condition_enabled = list_by_condition_enabled
        self.image_size = max(64, image_size)
        self.image_noise = image_noise
        self.image_text = image_text  # False: plain coloured tiles (benchmarks: text costs most of a render)
        self.timeout_delay = timeout_delay
        self.host = host
        self.port = port
        self.base_url = ""
        #: Where finished tasks say their picture is (`{image_base}/{task id}`); None: this server.
        #: Tests point it elsewhere to play a server that answers with someone else's address.
        self.image_base: str | None = None
        self.requests: list[RecordedRequest] = []
        self.tasks: dict[str, SimTask] = {}
        self.hook_deliveries: list[tuple[str, dict[str, Any]]] = []
        self._rng = random.Random(seed)
        self._faults: list[_Fault] = []
        self._forced: list[_Forced] = []
        self._images: dict[tuple[str, bool, int], bytes] = {}
        self._runner: web.AppRunner | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._last_id = 0
        self._frozen_listing: dict[str, dict[str, Any]] = {}
        # Account management (MJ_ACCOUNTS_VIDEO.md): trueai's admin token, a "plus" server's
        # /mj/account/* routes (flavour basic), the accounts themselves and trueai's sync limit.
        self.admin_token = admin_token
        self.plus = plus
        # Video and editing (MJ_ACCOUNTS_VIDEO.md §7-§8): Animate buttons on upscales, trueai's EnableVideo.
        self.video_buttons = video_buttons
        self.video_enabled = video_enabled
        self.sync_cooldown = sync_cooldown
        source = accounts if accounts is not None else [sample_account(n, flavor=self._account_shape) for n in (1, 2)]
        self.accounts: dict[str, dict[str, Any]] = {str(a["id"]): dict(a) for a in source}
        self._last_sync: dict[str, float] = {}

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> str:
        """Bind 127.0.0.1 (random port unless `port` was given) and return the base URL."""
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._stopping = asyncio.Event()
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.port = port
        self.base_url = f"http://{host}:{port}"
        if self.clock == "time":
            self._ticker = asyncio.create_task(self._tick_forever(), name="simulator-clock")
        log.info("Simulated midjourney-proxy (%s, clock=%s) at %s", self.flavor, self.clock, self.base_url)
        return self.base_url

    async def stop(self) -> None:
        self._stopping.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # ---- knobs for tests ----------------------------------------------------------------------

    def fail_next(self, kind: str, count: int = 1, path_prefix: str | None = None) -> None:
        """The next `count` matching requests fail with `kind` (see FAULT_KINDS)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        self._faults.append(_Fault(kind=kind, count=count, path_prefix=path_prefix))

    def next_submit_code(
        self, code: int, description: str | None = None, properties: dict[str, Any] | None = None
    ) -> None:
        """Force the next submit's answer code (22 queued, 23/9 queue full, 24 banned, 4, 30 relay...)."""
        self._forced.append(_Forced(code=code, description=description, properties=properties))

    def submits(self, path_suffix: str = "") -> list[RecordedRequest]:
        """Recorded submit requests (POST /submit/... or /insight-face/...) whose path ends with the suffix."""
        return [
            r
            for r in self.requests
            if r.method == "POST"
            and ("/submit/" in r.path or "/insight-face/" in r.path)
            and r.path.endswith(path_suffix)
        ]

    def add_task(
        self, prompt: str = "a benchmark task", *, step_seconds: float | None = None, start_in: float = 0.0
    ) -> str:
        """An accepted IMAGINE without a submit request (benchmarks). With clock "time" it takes its
        first step `start_in` + `step_seconds` from now, then one step per `step_seconds`."""
        task = self._new_task("IMAGINE", "grid", {}, None, prompt=prompt)
        task.step_seconds = step_seconds
        task.last_step = time.monotonic() + start_in
        return task.id

    def finish(self, task_id: str) -> None:
        """Jump a task to SUCCESS now (held or not)."""
        task = self.tasks[task_id]
        task.pending_failure = None
        self._set_stage(task, self._last_stage)

    def fail(self, task_id: str, reason: str = "Invalid parameter, Invalid value") -> None:
        """End a task with FAILURE and this failReason now."""
        self._fail(self.tasks[task_id], reason)
        self._notify(self.tasks[task_id])

    def hold(self, task_id: str) -> None:
        """Freeze a task where it is (reads and time no longer advance it)."""
        self.tasks[task_id].held = True

    def release(self, task_id: str) -> None:
        task = self.tasks[task_id]
        task.held = False
        task.last_step = time.monotonic()

    def freeze_listing(self, task_id: str) -> None:
        """list-by-condition keeps answering this task as it is now (a relay's stale cache), while
        fetch, and time, go on: only a read of the task on its own sees it move."""
        self._frozen_listing[task_id] = self._task_json(self.tasks[task_id])

    def task_json(self, task_id: str) -> dict[str, Any]:
        """The task as this flavour's fetch would show it, without advancing the clock."""
        return self._task_json(self.tasks[task_id])

    # ---- HTTP entry point ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        self.requests.append(
            RecordedRequest(
                method=request.method,
                path=request.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                json=body,
                query=dict(request.query),
            )
        )
        mode, route = self._split_mode(request.path)
        if self.flavor == "relay" and (route is None or not self._relay_routes(request.method, route)):
            # new-api: every path it does not route falls to the web UI's index page, before any auth.
            return self._index_page()
        if route is None:
            return self._not_found(request.path)
        if route.startswith("/mj/image/") and request.method == "GET":
            return await self._image(route.removeprefix("/mj/image/"), request)

        fault = self._take_fault(request.path, route)
        if fault is not None and fault not in ("timeout", "truncated", "lost"):
            return self._fault_response(fault, request)
        if not self._authorized(request):
            return self._unauthorized()

        admin_answer = self._admin_route(request, route, body)
        if admin_answer is not None:
            return admin_answer
        response = await self._route(request.method, route, body, mode)
        if fault == "lost":
            # The work is done (a submit did start a task); the connection drops before the answer.
            if request.transport is not None:
                request.transport.abort()
            return response
        if fault == "timeout":
            # The work is done (a submit did start a task); the answer just comes too late.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.timeout_delay)
        elif fault == "truncated":
            payload = response.body if isinstance(response, web.Response) else None
            data = bytes(payload) if isinstance(payload, bytes | bytearray) else b""
            cut = data[: max(1, len(data) // 2)] if data else b'{"code": 1, "descr'
            return web.Response(body=cut, status=response.status, content_type="application/json")
        return response

    def _split_mode(self, path: str) -> tuple[str | None, str | None]:
        """'/mj-fast/mj/x' -> ('FAST', '/mj/x'); basic servers have no speed prefixes."""
        if path.startswith("/mj/"):
            return None, path
        head, _, rest = path.lstrip("/").partition("/")
        if head in MODE_PREFIXES and self.flavor != "basic" and rest.startswith("mj/"):
            return MODE_PREFIXES[head], "/" + rest
        return None, None

    async def _route(self, method: str, route: str, body: Any, mode: str | None) -> web.StreamResponse:
        match = re.fullmatch(r"/mj/task/([^/]+)/(fetch|image-seed)", route)
        if method == "GET" and match:
            task_id, what = match.groups()
            if what == "fetch":
                return self._fetch(task_id)
            return self._image_seed(task_id, route)
        if method == "GET" and route == "/mj/task/list" and self.flavor != "relay":
            return self._list_recent()
        if method == "POST" and route in ("/mj/task/list-by-condition", "/mj/task/list-by-ids"):
            if route.endswith("list-by-ids") and self.flavor != "trueai":
                return self._not_found(route)
            return self._list_by_condition(body, route)
        submit = self._submit_handler(method, route)
        if submit is None:
            return self._not_found(route)
        return self._submit(submit, body if isinstance(body, dict) else {}, mode)

    # ---- auth ---------------------------------------------------------------------------------

    def _authorized(self, request: web.Request) -> bool:
        """Check the key the way this flavour's server would."""
        if not self.api_key:
            return True
        authorization = request.headers.get("Authorization", "")
        secret = request.headers.get("mj-api-secret", "")
        if self.auth_style is not None:
            expected = {
                "bearer": authorization == f"Bearer {self.api_key}",
                "raw": authorization == self.api_key,
                "mj-api-secret": secret == self.api_key,
            }
            if not expected[self.auth_style]:
                return False
        if self.flavor == "relay":
            token = authorization if authorization and authorization != "midjourney-proxy" else secret
            for prefix in ("Bearer ", "bearer "):
                token = token.removeprefix(prefix)
            return token.strip().removeprefix("sk-") == self.api_key.removeprefix("sk-")
        if self.flavor == "trueai":
            # trueai looks the raw Authorization value up as a token: "Bearer x" fails.
            return (authorization or secret) in {self.api_key, self.admin_token}
        return secret == self.api_key

    def _unauthorized(self) -> web.Response:
        if self.flavor == "relay":
            request_id = f"{_now_ms()}{self._rng.randrange(10**6):06d}"
            return self._json(
                {
                    "error": {
                        "message": f"无效的令牌 (request id: {request_id})",
                        "type": "new_api_error",
                        "code": "",
                    }
                },
                status=401,
            )
        if self.flavor == "trueai":
            return web.Response(status=401, text="Authorization header missing.")
        return web.Response(status=401)

    # ---- faults -------------------------------------------------------------------------------

    def _take_fault(self, path: str, route: str) -> str | None:
        for fault in self._faults:
            if fault.path_prefix is None:
                if route.startswith("/mj/image/"):
                    continue  # images are downloaded elsewhere; only explicit prefixes hit them
            elif not (path.startswith(fault.path_prefix) or route.startswith(fault.path_prefix)):
                continue
            fault.count -= 1
            if fault.count <= 0:
                self._faults.remove(fault)
            return fault.kind
        return None

    def _fault_response(self, kind: str, request: web.Request) -> web.StreamResponse:
        if kind == "401":
            return self._unauthorized()
        if kind == "429":
            headers = {"Retry-After": "1"}
            if self.flavor == "relay":
                body = {
                    "description": "当前分组负载已饱和，请稍后再试，或升级账户以提升服务质量。 ",
                    "type": "upstream_error",
                    "code": 30,
                }
                return self._json(body, status=429, headers=headers)
            return web.Response(status=429, headers=headers)
        if kind == "500":
            if self.flavor == "trueai":
                body = {"success": False, "code": -1, "message": "操作失败", "timestamp": str(_now_ms())}
            elif self.flavor == "relay":
                body = {"description": "do_request_failed ", "type": "upstream_error", "code": 5}
            else:
                body = self._spring_error(500, "Internal Server Error", request.path)
            return self._json(body, status=500)
        if kind == "502":
            html = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
            html += "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>"
            return web.Response(status=502, text=html, content_type="text/html")
        if kind == "garbage":
            return web.Response(
                status=200, text="<!DOCTYPE html><html><body>Just a moment...</body></html>", content_type="text/html"
            )
        # "reset": drop the connection without an answer.
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)

    # ---- reads --------------------------------------------------------------------------------

    def _fetch(self, task_id: str) -> web.Response:
        task = self.tasks.get(task_id)
        if task is None:
            if self.flavor == "basic":
                return web.Response(status=200, body=b"", content_type="application/json")
            if self.flavor == "trueai":
                return web.Response(status=204)
            return self._json({"description": "task_no_found ", "type": "upstream_error", "code": 4}, status=400)
        payload = self._task_json(task)
        self._after_read(task)
        return self._json(payload)

    def _list_by_condition(self, body: Any, route: str) -> web.Response:
        if not self.list_by_condition_enabled:
            return self._not_found(route)
        ids = body.get("ids") if isinstance(body, dict) else None
        found = [self.tasks[str(i)] for i in ids or [] if str(i) in self.tasks]
        found = list({task.id: task for task in found}.values())
        self._rng.shuffle(found)
        payload = [self._frozen_listing.get(task.id) or self._task_json(task) for task in found]
        for task in found:
            if task.id not in self._frozen_listing:
                self._after_read(task)
        return self._json(payload)

    def _list_recent(self) -> web.Response:
        """GET /mj/task/list: basic servers list every stored task, trueai the latest 100 (of all
        users), newest first; relays do not have it (MJ_ACCOUNTS_VIDEO.md §4)."""
        newest = sorted(self.tasks.values(), key=lambda task: task.submit_time, reverse=True)
        if self.flavor == "trueai":
            newest = newest[:100]
        return self._json([self._task_json(task) for task in newest])

    def _image_seed(self, task_id: str, route: str) -> web.Response:
        if self.flavor == "basic":
            return self._not_found(route)
        task = self.tasks.get(task_id)
        if task is None:
            if self.flavor == "relay":
                return self._json({"description": "task_no_found ", "type": "upstream_error", "code": 4}, status=400)
            return self._json({"code": 3, "description": "任务不存在", "result": None}, status=404)
        if task.status != SUCCESS or not task.hash:
            return self._json({"code": 4, "description": "关联任务状态错误", "result": None}, status=400)
        seed = str(int(task.hash.replace("-", "")[:8], 16))
        return self._json({"code": 1, "description": "成功", "result": seed})

    def _after_read(self, task: SimTask) -> None:
        if self.clock == "reads":
            self._advance(task)

    # ---- submits ------------------------------------------------------------------------------

    def _submit_handler(self, method: str, route: str) -> Any:
        if method != "POST":
            return None
        handlers = {
            "/mj/submit/imagine": self._imagine,
            "/mj/submit/blend": self._blend,
            "/mj/submit/describe": self._describe,
            "/mj/submit/shorten": self._shorten,
            "/mj/submit/action": self._action,
            "/mj/submit/modal": self._modal,
            "/mj/submit/change": self._change,
            "/mj/insight-face/swap": self._swap_face,
            "/mj/submit/video": self._video,
            "/mj/submit/edits": partial(self._edit, "EDIT"),
            "/mj/submit/edit": partial(self._edit, "EDIT"),
            "/mj/submit/retexture": partial(self._edit, "RETEXTURE"),
        }
        new_tools = {"/mj/submit/video", "/mj/submit/edits", "/mj/submit/edit", "/mj/submit/retexture"}
        unavailable = {
            "basic": {"/mj/submit/shorten", "/mj/submit/action", "/mj/submit/modal", "/mj/insight-face/swap"}
            | new_tools,
            "trueai": {"/mj/submit/change"},  # removed in trueai v10
            "relay": set(),  # /edit and /retexture never get here: new-api does not route them
        }[self.flavor]
        if route in unavailable:
            return None
        return handlers.get(route)

    def _submit(self, handler: Any, body: dict[str, Any], mode: str | None) -> web.Response:
        forced = self._forced.pop(0) if self._forced else None
        if forced is not None and forced.code not in (1, 21, 22):
            answer = _Answer(
                code=forced.code,
                description=forced.description or self._default_description(forced.code),
                properties=dict(forced.properties or {}),
                status=404 if forced.code == 3 and self.flavor == "trueai" else 200,
            )
            return self._render_answer(answer)
        try:
            answer = handler(body, mode)
        except _Refusal as refusal:
            return self._render_answer(refusal.answer)
        if forced is not None:
            answer.code = forced.code
            answer.description = forced.description or self._default_description(forced.code, answer)
            answer.properties.update(forced.properties or {})
            if forced.code == 22:
                answer.properties.setdefault("numberOfQueues", 1)
                if forced.description is None:
                    answer.description = f"排队中，前面还有{answer.properties['numberOfQueues']}个任务"
        if answer.result and answer.result in self.tasks:
            self.tasks[answer.result].submit_description = answer.description
        return self._render_answer(answer)

    def _default_description(self, code: int, answer: _Answer | None = None) -> str:
        return {
            1: "Submit success",
            3: "无可用的账号实例",
            4: "参数错误",
            9: "提交失败，队列已满，请稍后重试",
            21: WAITING_FOR_MODAL,
            22: "排队中，前面还有1个任务",
            23: "队列已满，请稍后尝试",
            24: "可能包含敏感词",
            30: "当前分组负载已饱和，请稍后再试，或升级账户以提升服务质量。",
        }.get(code, "Submit failed")

    def _render_answer(self, answer: _Answer) -> web.Response:
        result: Any = answer.result
        if self.numeric_ids and result is not None and result.isdigit():
            result = int(result)
        if self.flavor == "relay":
            if answer.code in (1, 21, 22):
                code = answer.code
                if code == 22 or (code == 21 and not answer.keep_21):
                    code = 1  # new-api's string replace of the upstream code
                body = {
                    "code": code,
                    "description": answer.description,
                    "result": result,
                    "properties": answer.properties,
                }
                return self._json(body)
            status = 429 if answer.code == 30 else 400
            body = {
                "description": f"{answer.description} {answer.result or ''}",
                "type": "upstream_error",
                "code": answer.code,
            }
            return self._json(body, status=status)
        body = {
            "code": answer.code,
            "description": answer.description,
            "result": result,
            "properties": answer.properties,
        }
        return self._json(body, status=answer.status)

    def _accepted(self, task: SimTask, *, description: str = "Submit success") -> _Answer:
        return _Answer(
            code=1,
            description=description,
            result=task.id,
            properties={"discordChannelId": "1050703772185268251", "discordInstanceId": INSTANCE_ID},
        )

    def _check_prompt(self, prompt: str) -> None:
        for word in self.banned_words:
            if word and re.search(rf"\b{re.escape(word)}\b", prompt, re.IGNORECASE):
                raise _refuse(24, "可能包含敏感词", promptEn=prompt, bannedWord=word)

    def _check_bot_type(self, body: dict[str, Any]) -> str:
        bot_type = str(body.get("botType") or "MID_JOURNEY")
        aliases = {"mj": "MID_JOURNEY", "niji": "NIJI_JOURNEY"}
        bot_type = aliases.get(bot_type, bot_type)
        if bot_type not in ("MID_JOURNEY", "NIJI_JOURNEY"):
            raise _refuse(4, "botType参数错误")
        return bot_type

    def _images_of(self, value: Any, *, minimum: int = 0, maximum: int = 5) -> list[tuple[str, bytes]]:
        if value is None:
            value = []
        if not isinstance(value, list):
            raise _refuse(4, "base64格式错误")
        decoded = [_decode_data_url(item) for item in value]
        if any(item is None for item in decoded):
            raise _refuse(4, "base64格式错误")
        if not minimum <= len(decoded) <= maximum:
            if self.flavor == "basic":
                raise _refuse(4, "base64List参数错误")
            raise _refuse(4, "图片参数错误，2~5张图片")
        return [item for item in decoded if item is not None]

    def _imagine(self, body: dict[str, Any], mode: str | None) -> _Answer:
        prompt = str(body.get("prompt") or "").strip()
        if not prompt:
            raise _refuse(4, "prompt_is_required" if self.flavor == "relay" else "prompt不能为空")
        images = self._images_of(body.get("base64Array"))
        bot_type = self._check_bot_type(body)
        self._check_prompt(prompt)  # through a relay the code 24 arrives without properties
        task = self._new_task(
            "IMAGINE", "grid", body, mode, prompt=prompt, description=f"/imagine {prompt}", bot_type=bot_type
        )
        task.image_count = len(images)
        return self._accepted(task)

    def _blend(self, body: dict[str, Any], mode: str | None) -> _Answer:
        images = self._images_of(body.get("base64Array"), minimum=2, maximum=5)
        dimensions = str(body.get("dimensions") or "SQUARE")
        if dimensions not in ("PORTRAIT", "SQUARE", "LANDSCAPE"):
            raise _refuse(4, "dimensions参数错误")
        bot_type = self._check_bot_type(body)
        task = self._new_task("BLEND", "grid", body, mode, prompt="", bot_type=bot_type)
        task.description = f"/blend {task.id} {len(images)}"
        task.image_count = len(images)
        return self._accepted(task)

    def _describe(self, body: dict[str, Any], mode: str | None) -> _Answer:
        if not body.get("base64"):
            raise _refuse(4, "base64不能为空")
        decoded = _decode_data_url(body.get("base64"))
        if decoded is None:
            raise _refuse(4, "base64格式错误")
        bot_type = self._check_bot_type(body)
        task = self._new_task("DESCRIBE", "describe", body, mode, prompt="", bot_type=bot_type)
        task.source_mime, task.source_image = decoded
        task.description = "/describe" if self.flavor == "trueai" else f"/describe {task.id}.png"
        return self._accepted(task)

    def _shorten(self, body: dict[str, Any], mode: str | None) -> _Answer:
        prompt = str(body.get("prompt") or "").strip()
        if not prompt:
            raise _refuse(4, "prompt_is_required" if self.flavor == "relay" else "prompt不能为空")
        self._check_prompt(prompt)
        bot_type = self._check_bot_type(body)
        task = self._new_task(
            "SHORTEN", "shorten", body, mode, prompt=prompt, description=f"/shorten {prompt}", bot_type=bot_type
        )
        return self._accepted(task)

    def _swap_face(self, body: dict[str, Any], mode: str | None) -> _Answer:
        source, target = body.get("sourceBase64"), body.get("targetBase64")
        if self.flavor == "relay" and (not source or not target):
            raise _refuse(4, "sour_base64_and_target_base64_is_required")
        if not source:
            raise _refuse(4, "人脸图片不能为空")
        if not target:
            raise _refuse(4, "目标图片不能为空")
        if source == target:
            raise _refuse(4, "人脸图片和目标图片不能相同")
        if _decode_data_url(source) is None or _decode_data_url(target) is None:
            raise _refuse(4, "base64格式错误")
        task = self._new_task("SWAP_FACE", "face", body, mode, prompt="", bot_type="INSIGHT_FACE")
        task.description = "/swap"
        return self._accepted(task)

    def _discord_accounts_only(self) -> bool:
        enabled = [a for a in self.accounts.values() if a.get("enable")]
        return all(not a.get("isYouChuan") and not a.get("isOfficial") for a in enabled)

    def _video(self, body: dict[str, Any], mode: str | None) -> _Answer:
        """/submit/video (trueai; a relay forwards it as is): image-to-video, or extend a video."""
        if self.flavor == "trueai":
            if not self.video_enabled:
                raise _refuse(4, "视频功能未启用")
            enabled = [a for a in self.accounts.values() if a.get("enable")]
            if not enabled:
                raise _refuse(3, "无可用的账号实例")
            if body.get("videoType") == "vid_1.1_i2v_720" and not any(a.get("isHdVideo") for a in enabled):
                raise _refuse(3, "无可用的账号实例")
            if not any(a.get("mjRemixOn") or a.get("nijiRemixOn") for a in enabled if a.get("isDiscord", True)):
                raise _refuse(9, "未开启 REMIX，无法使用视频扩展功能")
        prompt = str(body.get("prompt") or "").strip()
        if not prompt:
            raise _refuse(4, "Prompt 不能为空")
        self._check_prompt(prompt)
        motion = str(body.get("motion") or "low")
        if motion not in ("low", "high"):
            raise _refuse(4, "motion参数错误")
        batch = body.get("batchSize") or 4
        if batch not in (1, 2, 4):
            raise _refuse(4, "batchSize参数错误")
        if body.get("taskId") or body.get("action"):
            if body.get("action") != "extend":
                raise _refuse(4, "任务类型错误")
            parent = self._parent(body)
            if parent.kind not in ("video", "video1"):
                raise _refuse(4, "任务类型错误")
            index = body.get("index")
            if not isinstance(index, int) or not 0 <= index <= 3:
                raise _refuse(4, "index参数错误")
            task = self._new_task("UPSCALE", "video", body, mode, prompt=parent.prompt, parent=parent)
            task.description = "/video extend"
            task.relabel_to = "VIDEO"
        else:
            image = body.get("image")
            if image is not None and _decode_data_url(image) is None and not str(image).startswith("http"):
                raise _refuse(4, "base64格式错误")
            task = self._new_task("VIDEO", "video", body, mode, prompt=prompt, description=f"/video {prompt}")
        task.video_count = int(batch)
        suffix = f" --video 1{' --end loop' if body.get('loop') else ''} --motion {motion}"
        task.prompt = task.prompt_en = task.final_prompt = prompt + suffix
        return self._accepted(task)

    def _edit(self, action: str, body: dict[str, Any], mode: str | None) -> _Answer:
        """/submit/edits and /submit/retexture: only YouChuan or official accounts run them."""
        prompt = str(body.get("prompt") or "").strip()
        image = body.get("image")
        if not prompt or not image:
            raise _refuse(4, "image或prompt不能为空")
        if _decode_data_url(image) is None and not str(image).startswith("http"):
            raise _refuse(4, "base64格式错误")
        if self._discord_accounts_only():
            raise _refuse(9, "当前账号不支持编辑/重绘任务")
        self._check_prompt(prompt)
        word = action.lower()
        task = self._new_task(action, "single", body, mode, prompt=prompt, description=f"/{word} {prompt}")
        return self._accepted(task)

    def _parent(self, body: dict[str, Any]) -> SimTask:
        parent = self.tasks.get(str(body.get("taskId") or ""))
        if parent is None:
            if self.flavor == "relay":
                raise _refuse(4, "task_not_found")
            if self.flavor == "trueai":
                raise _refuse(3, "关联任务不存在或已失效", status=404)
            raise _refuse(3, "关联任务不存在或已失效")
        if parent.status != SUCCESS:
            raise _refuse(4, "task_status_not_success" if self.flavor == "relay" else "关联任务状态错误")
        return parent

    def _action(self, body: dict[str, Any], mode: str | None) -> _Answer:
        custom_id = str(body.get("customId") or "")
        if not custom_id:
            raise _refuse(4, "custom_id_is_required" if self.flavor == "relay" else "customId不能为空")
        kind = classify_custom_id(custom_id)
        relay_ok = kind is not None and kind.special not in ("picreader", "picread_retry", "video_pick", "animate")
        if self.flavor == "relay" and not relay_ok:
            raise _refuse(4, f"unknown_action:{custom_id}")
        if kind is None:
            raise _refuse(4, "未知的 Action 类型")
        parent = self._parent(body)
        if custom_id not in {b["customId"] for b in parent.buttons}:
            raise _refuse(4, "customId不属于该任务")
        if kind.special == "picread_retry":
            task = self._new_task("DESCRIBE", "describe", body, mode, prompt="", parent=parent)
            task.source_image, task.source_mime = parent.source_image, parent.source_mime
            task.description = parent.description
            return self._accepted(task)
        if kind.special == "picreader":
            return self._pic_reader(parent, kind, body, mode)

        action = kind.action
        if action == "REROLL":
            action = "IMAGINE" if parent.action == "UPSCALE" and parent.kind != "video1" else parent.action
            if parent.kind in ("video", "video1"):
                action = "VIDEO"
        if kind.special == "video_pick":
            result_kind = "video1"
        elif action == "VIDEO":
            result_kind = "video"
        else:
            result_kind = "single" if action == "UPSCALE" else "grid"
        task = self._new_task(action, result_kind, body, mode, prompt=parent.prompt, parent=parent)
        task.custom_id = custom_id
        task.index = kind.index
        task.final_prompt = parent.final_prompt or parent.prompt
        # trueai honours `enableRemix` (code 21 for V/pan/reroll); relays and basic ignore it.
        asked = bool(body.get("enableRemix")) and self.flavor == "trueai"
        modal = kind.modal == "always" or (kind.modal == "remix" and (self.remix or asked))
        if not modal:
            return self._accepted(task)
        final_prompt = "" if kind.special == "inpaint" else _SPEED_FLAGS.sub("", parent.final_prompt or parent.prompt)
        if kind.special == "inpaint":
            task.prompt = task.prompt_en = ""
        self._make_modal(task)
        return _Answer(
            code=21,
            description=WAITING_FOR_MODAL,
            result=task.id,
            properties={"finalPrompt": final_prompt, "remix": True},
            keep_21=kind.modal == "always",
        )

    def _pic_reader(self, parent: SimTask, kind: _ButtonKind, body: dict[str, Any], mode: str | None) -> _Answer:
        candidates = _describe_candidates(parent)
        if kind.index == 0:  # "Imagine all": four auto-submitted imagines, comma-joined ids
            ids = []
            for candidate in candidates:
                task = self._new_task("IMAGINE", "grid", body, mode, prompt=candidate, parent=parent)
                task.description = f"/imagine {candidate}"
                ids.append(task.id)
            return _Answer(code=1, description="成功", result=",".join(ids))
        if not 1 <= kind.index <= len(candidates):
            raise _refuse(4, "无效的 PicReader 索引")
        chosen = f"{KEYCAPS[kind.index]} {candidates[kind.index - 1]}"
        task = self._new_task("IMAGINE", "grid", body, mode, prompt=chosen, parent=parent)
        task.final_prompt = chosen
        self._make_modal(task)
        return _Answer(
            code=21, description=WAITING_FOR_MODAL, result=task.id, properties={"finalPrompt": chosen, "remix": True}
        )

    def _make_modal(self, task: SimTask) -> None:
        task.status = MODAL
        task.progress = None
        task.description = WAITING_FOR_MODAL

    def _modal(self, body: dict[str, Any], mode: str | None) -> _Answer:
        task = self.tasks.get(str(body.get("taskId") or ""))
        if task is None:
            if self.flavor == "relay":
                raise _refuse(4, "task_not_found")
            raise _refuse(3, "任务不存在", status=404)
        if task.status != MODAL:
            raise _refuse(4, "任务状态错误")
        if "prompt" not in body:
            raise _refuse(4, "参数错误")  # older trueai and Plus servers require the prompt
        prompt = str(body.get("prompt") or "").strip()
        parent = self.tasks.get(task.parent_id or "")
        if not prompt:
            prompt = task.final_prompt or (parent.prompt if parent else "")
        self._check_prompt(prompt)
        mask = body.get("maskBase64")
        if mask is not None and _decode_data_url(mask) is None:
            raise _refuse(4, "maskBase64格式错误")
        task.mask = mask
        task.prompt = task.prompt_en = task.final_prompt = prompt
        if task.custom_id.startswith("MJ::CustomZoom::") and "--zoom" not in prompt:
            task.pending_failure = "Invalid parameter, Custom Zoom needs --zoom with a value from 1 to 2"
        elif _FAIL_WORD.search(prompt):
            task.pending_failure = self._fail_text()
        if body.get("notifyHook"):
            task.notify_hook = str(body["notifyHook"])
        task.submit_time = _now_ms()
        task.description = "Submit success" if self.flavor != "basic" else task.description
        self._set_stage(task, 1)
        answer = self._accepted(task, description="提交成功")
        return answer

    def _change(self, body: dict[str, Any], mode: str | None) -> _Answer:
        action = str(body.get("action") or "").upper()
        if action not in ("UPSCALE", "VARIATION", "REROLL"):
            raise _refuse(4, "action参数错误")
        index = body.get("index")
        if self.flavor == "relay" and not index:
            raise _refuse(4, "index_is_required")
        if action != "REROLL" and (not isinstance(index, int) or not 1 <= index <= 4):
            raise _refuse(4, "index参数错误")
        parent = self._parent(body)
        if parent.action not in GRID_ACTIONS - {"PAN", "ZOOM"}:
            raise _refuse(4, "关联任务不允许执行变化")
        kind = "single" if action == "UPSCALE" else "grid"
        task = self._new_task(action, kind, body, mode, prompt=parent.prompt, parent=parent)
        task.index = index if isinstance(index, int) else 1
        task.final_prompt = parent.final_prompt or parent.prompt
        letter = {"UPSCALE": "U", "VARIATION": "V", "REROLL": "R"}[action]
        suffix = "" if action == "REROLL" else str(task.index)
        task.description = f"/up {parent.id} {letter}{suffix}"
        return self._accepted(task)

    # ---- accounts and task admin (MJ_ACCOUNTS_VIDEO.md §2-§6) -------------------------------------

    @property
    def _account_shape(self) -> str:
        if self.flavor == "basic":
            return "plus" if self.plus else "basic"
        return "trueai"

    def _relay_routes(self, method: str, route: str) -> bool:
        """The /mj routes new-api registers (relay-router.go); anything else is its NoRoute page."""
        if method == "GET" and (
            re.fullmatch(r"/mj/task/[^/]+/(fetch|image-seed)", route) or route.startswith("/mj/image/")
        ):
            return True
        if method != "POST":
            return False
        return route == "/mj/task/list-by-condition" or route in {
            "/mj/submit/imagine",
            "/mj/submit/blend",
            "/mj/submit/describe",
            "/mj/submit/shorten",
            "/mj/submit/action",
            "/mj/submit/modal",
            "/mj/submit/change",
            "/mj/submit/simple-change",
            "/mj/submit/edits",
            "/mj/submit/video",
            "/mj/submit/upload-discord-images",
            "/mj/insight-face/swap",
        }

    def _index_page(self) -> web.Response:
        html = '<!doctype html><html lang="zh"><head><meta charset="utf-8"><title>New API</title></head>'
        html += '<body><div id="root"></div><script src="/assets/index.js"></script></body></html>'
        return web.Response(status=200, text=html, content_type="text/html")

    def _is_admin(self, request: web.Request) -> bool:
        token = request.headers.get("Authorization", "") or request.headers.get("mj-api-secret", "")
        return bool(self.admin_token) and token == self.admin_token

    def _result(self, ok: bool = True, message: str = "") -> web.Response:
        """trueai's Result envelope: HTTP 200 whether it worked or not."""
        body = {"success": ok, "code": 0 if ok else -1, "message": message or ("成功" if ok else "操作失败")}
        body["timestamp"] = str(_now_ms() * 10_000)
        return self._json(body)

    def _message(self, code: int, description: str, result: Any = None) -> web.Response:
        """plus's Message envelope: code 1 = OK, 3 not found, 4 validation, 9 failure."""
        return self._json({"code": code, "description": description, "result": result})

    def _live_account(self, account: dict[str, Any]) -> dict[str, Any]:
        """trueai's list endpoints fill in what only the running instance knows."""
        shown = dict(account)
        if self.flavor != "trueai":
            return shown
        enabled = [a for a in self.accounts.values() if a.get("enable")]
        if account.get("enable") and enabled and enabled[0]["id"] == account["id"]:
            busy = [t for t in self.tasks.values() if t.status not in FINAL and t.status != MODAL]
            core = int(account.get("coreSize") or 3)
            shown.setdefault("runningCount", 0)
            shown["runningCount"] = max(int(account.get("runningCount") or 0), min(core, len(busy)))
            shown["queueCount"] = max(int(account.get("queueCount") or 0), max(0, len(busy) - core))
        shown["running"] = bool(account.get("running", account.get("enable")))
        return shown

    def _stored_account(self, account: dict[str, Any]) -> dict[str, Any]:
        """GET account/{id} reads the database copy: no live counters."""
        return {k: v for k, v in account.items() if k not in ("running", "runningCount", "queueCount")}

    def _admin_route(self, request: web.Request, route: str, body: Any) -> web.Response | None:
        """Account and task-admin endpoints of this flavour, or None for the normal routes."""
        method = request.method
        query = dict(request.query)
        if self.flavor == "trueai":
            if route.startswith("/mj/admin/"):
                if not self._is_admin(request):
                    return web.Response(status=401, text="账号无权限")
                return self._trueai_admin(method, route.removeprefix("/mj/admin/"), body, query)
            match = re.fullmatch(r"/mj/task/([^/]+)/cancel", route)
            if match and method == "POST":
                if not self._is_admin(request):
                    return web.Response(status=400, text="演示模式，禁止操作")
                task = self.tasks.get(match.group(1))
                if task is not None and task.status not in FINAL:
                    self._fail(task, "取消任务")
                return web.Response(status=200)
            return None
        if self.flavor == "basic":
            return self._basic_admin(method, route, body)
        return None

    def _trueai_admin(self, method: str, path: str, body: Any, query: dict[str, str]) -> web.Response:
        if path == "accounts" and method == "POST":
            pagination = body.get("pagination") if isinstance(body, dict) else None
            pagination = pagination if isinstance(pagination, dict) else {}
            current = max(1, int(pagination.get("current") or 1))
            size = max(1, min(100, int(pagination.get("pageSize") or 10)))
            accounts = list(self.accounts.values())
            page = accounts[(current - 1) * size : current * size]
            total = len(accounts)
            return self._json(
                {
                    "list": [self._live_account(a) for a in page],
                    "pagination": {
                        "current": current,
                        "pageSize": size,
                        "total": total,
                        "pageCount": -(-total // size),
                    },
                }
            )
        if path == "accounts" and method == "GET":
            return self._json([self._live_account(a) for a in self.accounts.values() if a.get("enable")])
        if path == "accounts-enable" and method == "POST":
            ids = [str(i) for i in body] if isinstance(body, list) else []
            found = [self.accounts[i] for i in ids if i in self.accounts]
            for enabled in found:
                enabled.update(enable=True, disabledReason=None, running=True)
            return self._result(True, f"已启用 {len(found)} 个账号")
        match = re.fullmatch(
            r"(account|account-sync|account-reconnect|account-change-version|account-cf)/([^/]+)", path
        )
        if match is None:
            return web.Response(status=404)
        what, account_id = match.groups()
        account = self.accounts.get(account_id)
        if account is None:
            return self._result(False, "账号不存在")
        if what == "account" and method == "GET":
            return self._json(self._stored_account(account))
        if what == "account-cf" and method == "GET":
            return self._json(self._stored_account(account))
        if what == "account-sync" and method == "POST":
            now = time.monotonic()
            last = self._last_sync.get(account_id)
            if last is not None and now - last < self.sync_cooldown:
                return self._result(False, "同步失败，请稍后重试")
            self._last_sync[account_id] = now
            account["infoUpdated"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
            return self._result(True)
        if what == "account-change-version" and method == "POST":
            offered = {str(o.get("customId")) for o in account.get("versionSelector") or [] if isinstance(o, dict)}
            version = query.get("version", "")
            if version not in offered:
                return self._result(False, "修改版本或同步信息失败")
            account["version"] = version
            return self._result(True)
        if what == "account-reconnect" and method == "PUT":
            if not isinstance(body, dict) or str(body.get("id")) != account_id:
                return self._result(False, "参数错误")
            # trueai overwrites the stored account with what it is sent: a partial object wipes fields.
            replaced = {k: v for k, v in body.items() if k not in ("running", "runningCount", "queueCount")}
            replaced["running"] = bool(replaced.get("enable"))
            self.accounts[account_id] = replaced
            return self._result(True)
        return web.Response(status=404)

    def _basic_admin(self, method: str, route: str, body: Any) -> web.Response | None:
        """novicezk: list/fetch and the queue; plus adds query, sync-info, update-reconnect, cancel."""
        if route == "/mj/task/queue" and method == "GET":
            queued = [t for t in self.tasks.values() if t.status not in FINAL and t.status != MODAL]
            return self._json([self._task_json(t) for t in sorted(queued, key=lambda t: t.submit_time)])
        if route == "/mj/account/list" and method == "GET" and not self.plus:
            return self._json(list(self.accounts.values()))
        match = re.fullmatch(r"/mj/account/([^/]+)/fetch", route)
        if match and method == "GET":
            account = self.accounts.get(match.group(1))
            if account is None:
                return web.Response(status=200, body=b"", content_type="application/json")
            return self._json(account)
        if not self.plus:
            return None
        if route == "/mj/account/query" and method == "POST":
            query = body if isinstance(body, dict) else {}
            number = max(0, int(query.get("pageNumber") or 0))
            size = max(1, int(query.get("pageSize") or 10))
            accounts = list(self.accounts.values())
            content = accounts[number * size : (number + 1) * size]
            total = len(accounts)
            return self._json(
                {
                    "content": content,
                    "totalElements": total,
                    "totalPages": -(-total // size),
                    "number": number,
                    "size": size,
                }
            )
        match = re.fullmatch(r"/mj/account/([^/]+)/(sync-info|update-reconnect)", route)
        if match:
            account = self.accounts.get(match.group(1))
            if account is None:
                return self._message(3, "数据未找到")
            if match.group(2) == "sync-info" and method == "POST":
                return self._message(1, "成功", account)
            if match.group(2) == "update-reconnect" and method == "PUT":
                update = body if isinstance(body, dict) else {}
                if not all(update.get(k) for k in ("guildId", "channelId", "userToken")):
                    return self._message(4, "服务器ID、频道ID、用户Token不能为空")
                account.update({k: v for k, v in update.items() if k != "id"})
                return self._message(1, "修改成功，wss连接成功" if account.get("enable") else "修改成功，账号已禁用")
        match = re.fullmatch(r"/mj/task/([^/]+)/cancel", route)
        if match and method == "POST":
            task = self.tasks.get(match.group(1))
            if task is None:
                return self._message(3, "数据未找到")
            if task.status in FINAL:
                return self._message(4, "该任务不可取消: 任务已结束")
            task.status, task.fail_reason, task.finish_time = CANCEL, "", _now_ms()
            return self._message(1, "成功")
        return None

    # ---- the task store and lifecycle ---------------------------------------------------------

    @property
    def _last_stage(self) -> int:
        return self.progress_steps + 2

    def _new_id(self) -> str:
        candidate = _now_ms() * 1000 + self._rng.randrange(1000)
        candidate = max(candidate, self._last_id + 1)
        self._last_id = candidate
        return str(candidate)

    def _new_hash(self) -> str:
        value = self._rng.getrandbits(128)
        text = f"{value:032x}"
        return f"{text[:8]}-{text[8:12]}-4{text[13:16]}-a{text[17:20]}-{text[20:32]}"

    def _fail_text(self) -> str:
        if self.flavor == "basic":
            return "[Invalid parameter] Invalid value"
        return "Invalid parameter, Invalid value"

    def _new_task(
        self,
        action: str,
        kind: str,
        body: dict[str, Any],
        mode: str | None,
        *,
        prompt: str,
        description: str = "",
        bot_type: str = "MID_JOURNEY",
        parent: SimTask | None = None,
    ) -> SimTask:
        hook = body.get("notifyHook")
        task = SimTask(
            id=self._new_id(),
            action=action,
            kind=kind,
            prompt=prompt,
            prompt_en=prompt,
            description=description or "Submit success",
            final_prompt=prompt if kind in ("grid", "single") else "",
            bot_type=parent.bot_type if parent else bot_type,
            mode=mode,
            state=body.get("state") if isinstance(body.get("state"), str) else None,
            notify_hook=str(hook) if hook and self.flavor != "relay" else None,  # new-api strips hooks
            parent_id=parent.id if parent else None,
            hash=self._new_hash(),
            submit_time=_now_ms(),
            last_step=time.monotonic(),
        )
        if _FAIL_WORD.search(prompt):
            task.pending_failure = self._fail_text()
        self.tasks[task.id] = task
        self._set_stage(task, 0, notify=False)
        return task

    def _advance(self, task: SimTask) -> None:
        if task.held or task.status in FINAL or task.status == MODAL:
            return
        self._set_stage(task, task.stage + 1)

    def _set_stage(self, task: SimTask, stage: int, *, notify: bool = True) -> None:
        """Stage 0 = just submitted, 1 = SUBMITTED 0%, 2.. = IN_PROGRESS, last = SUCCESS."""
        stage = max(0, min(stage, self._last_stage))
        task.stage = stage
        task.last_step = time.monotonic()
        if stage == 0:
            task.status = "" if self.flavor == "relay" else NOT_START
            task.progress = "0%" if self.flavor == "relay" else None
        elif stage == 1:
            task.status, task.progress = SUBMITTED, "0%"
            task.start_time = task.start_time or _now_ms()
        elif task.pending_failure:
            self._fail(task, task.pending_failure)
        elif stage < self._last_stage:
            if task.relabel_to and stage >= 3:
                # trueai extend: the pick (UPSCALE) landed; the same task id goes on as VIDEO from 0 %.
                task.action, task.relabel_to = task.relabel_to, ""
            task.status = IN_PROGRESS
            task.progress = f"{round(100 * (stage - 1) / (self.progress_steps + 1))}%"
            task.start_time = task.start_time or _now_ms()
        else:
            self._succeed(task)
        if notify:
            self._notify(task)

    def _succeed(self, task: SimTask) -> None:
        task.status, task.progress = SUCCESS, "100%"
        task.start_time = task.start_time or _now_ms()
        task.finish_time = _now_ms()
        task.stage = self._last_stage
        if task.kind == "describe":
            task.final_prompt = "\n\n".join(
                f"{KEYCAPS[i]} {text}" for i, text in enumerate(_make_candidates(task), start=1)
            )
            task.prompt_en = task.final_prompt
            task.prompt = "" if self.flavor == "trueai" else task.final_prompt
        elif task.kind == "shorten":
            text, count = _shorten_text(task.prompt)
            task.final_prompt = text
            if self.flavor == "trueai":
                task.description = text
            task.buttons = shorten_buttons(count)
        if task.kind == "grid":
            task.buttons = grid_buttons(task.hash)
        elif task.kind == "single":
            task.buttons = upscale_buttons(task.hash)
            if self.video_buttons and task.action == "UPSCALE":
                task.buttons = [*task.buttons[:-1], *animate_buttons(task.hash), task.buttons[-1]]
        elif task.kind == "video":
            task.buttons = video_buttons(task.hash, task.video_count)
        elif task.kind == "video1":
            task.buttons = extend_buttons(task.hash)
        elif task.kind == "describe":
            task.buttons = describe_buttons()
        if self.flavor == "basic":
            task.buttons = []  # novicezk has no buttons: U/V go through /submit/change

    def _fail(self, task: SimTask, reason: str) -> None:
        task.status = FAILURE
        task.progress = "100%" if self.flavor == "relay" else ""
        task.fail_reason = reason
        task.finish_time = _now_ms()
        task.pending_failure = None
        task.stage = self._last_stage

    async def _tick_forever(self) -> None:
        interval = max(0.05, min(self.step_seconds / 4, 0.5))
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for task in list(self.tasks.values()):
                if now - task.last_step >= (task.step_seconds or self.step_seconds):
                    self._advance(task)

    def _notify(self, task: SimTask) -> None:
        """trueai/basic POST the whole task to notifyHook on each change (no retries, no signature)."""
        if not task.notify_hook or task.status == MODAL or self._stopping.is_set():
            return
        payload = self._task_json(task)
        job = asyncio.ensure_future(self._post_hook(task.notify_hook, payload))
        self._background.add(job)
        job.add_done_callback(self._background.discard)

    async def _post_hook(self, url: str, payload: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        try:
            async with self._session.post(url, json=payload) as response:
                await response.read()
                self.hook_deliveries.append((url, payload))
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.debug("notifyHook %s failed: %s", url, type(exc).__name__)

    # ---- task JSON per flavour ----------------------------------------------------------------

    def _id(self, task_id: str | None) -> Any:
        if task_id is not None and self.numeric_ids and task_id.isdigit():
            return int(task_id)
        return task_id

    def _image_url(self, task: SimTask) -> str | None:
        url = f"{self.base_url}/mj/image/{task.id}"
        if task.status == SUCCESS and task.kind != "shorten":
            return f"{self.image_base}/{task.id}" if self.image_base is not None else url
        if task.status == IN_PROGRESS and task.kind in ("grid", "single", "face", "video", "video1"):
            return url + "?preview=1"
        return None

    def _video_urls(self, task: SimTask) -> list[str]:
        if task.kind not in ("video", "video1") or task.status != SUCCESS:
            return []
        count = 1 if task.kind == "video1" else task.video_count
        return [f"{self.base_url}/mj/image/{task.id}?video={i}" for i in range(count)]

    def _task_json(self, task: SimTask) -> dict[str, Any]:
        common: dict[str, Any] = {
            "id": self._id(task.id),
            "action": task.action,
            "status": task.status,
            "prompt": task.prompt,
            "promptEn": task.prompt_en,
            "description": task.description,
            "state": task.state,
            "submitTime": task.submit_time,
            "startTime": task.start_time,
            "finishTime": task.finish_time,
            "imageUrl": self._image_url(task),
            "progress": task.progress,
            "failReason": task.fail_reason or None,
        }
        if self.flavor == "relay":
            return {
                **common,
                "customId": "",
                "botType": "",
                "description": task.submit_description,
                "state": task.state or "",
                "failReason": task.fail_reason,
                "videoUrl": (self._video_urls(task) or [""])[0],
                "videoUrls": [{"url": url} for url in self._video_urls(task)] or None,
                "buttons": list(task.buttons),
                "maskBase64": "",
                "properties": {"finalPrompt": task.final_prompt, "finalZhPrompt": ""},
            }
        properties: dict[str, Any] = {
            "finalPrompt": task.final_prompt or None,
            "notifyHook": task.notify_hook,
            "discordInstanceId": INSTANCE_ID,
            "discordChannelId": "1050703772185268251",
            "botType": task.bot_type,
        }
        if task.status == SUCCESS and task.kind in ("grid", "single"):
            properties["messageHash"] = task.hash
        if self.flavor == "basic":
            return {**common, "properties": properties}
        size = self.image_size if task.status == SUCCESS and task.kind in ("grid", "single", "face") else None
        videos = self._video_urls(task)
        if videos:  # EnableFillOfficialCdn on: videoUrl and videoUrls[] beside imageUrl
            common["videoUrl"] = videos[0]
            common["videoUrls"] = [{"url": url, "thumbnail": url.replace("?video=", "?thumb=")} for url in videos]
        return {
            **common,
            "failReason": task.fail_reason if task.status == SUCCESS else (task.fail_reason or None),
            "parentId": self._id(task.parent_id),
            "botType": task.bot_type,
            "mode": task.mode,
            "imageWidth": size,
            "imageHeight": size,
            "buttons": list(task.buttons),
            "properties": properties,
        }

    # ---- images -------------------------------------------------------------------------------

    async def _image(self, task_id: str, request: web.Request) -> web.StreamResponse:
        task = self.tasks.get(task_id)
        if task is None:
            return web.Response(status=404, text="404 page not found")
        fault = self._take_fault(request.path, request.path)
        if fault is not None and fault not in ("timeout", "truncated"):
            return self._fault_response(fault, request)
        preview = request.query.get("preview") == "1" or task.status != SUCCESS
        if task.kind == "describe" and task.source_image is not None:
            return web.Response(body=task.source_image, content_type=task.source_mime)
        if task.kind in ("video", "video1") and not preview and "thumb" not in request.query:
            return web.Response(body=mp4_bytes(task.hash), content_type="video/mp4")
        key = (task.id, preview, task.stage)
        data = self._images.get(key)
        if data is None:
            data = await asyncio.to_thread(self._render, task, preview)
            self._images[key] = data
        return web.Response(body=data, content_type="image/png")

    def _render(self, task: SimTask, preview: bool) -> bytes:
        size = self.image_size if not preview else max(64, self.image_size // 2)
        if self.image_noise and not preview:
            image = Image.frombytes("RGB", (size, size), os.urandom(size * size * 3))
        else:
            image = _draw(task, size, with_text=self.image_text)
            if preview:
                image = image.filter(ImageFilter.GaussianBlur(radius=max(2, size // 40)))
        out = io.BytesIO()
        image.save(out, format="PNG", compress_level=1 if self.image_noise else 6)
        return out.getvalue()

    # ---- small response helpers ---------------------------------------------------------------

    def _json(self, body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
        return web.json_response(body, status=status, headers=headers, dumps=partial(json.dumps, ensure_ascii=False))

    def _spring_error(self, status: int, error: str, path: str) -> dict[str, Any]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000+00:00", time.gmtime())
        return {"timestamp": stamp, "status": status, "error": error, "path": path}

    def _not_found(self, path: str) -> web.Response:
        """Each server kind's answer for a path it does not have."""
        if self.flavor == "basic":
            return self._json(self._spring_error(404, "Not Found", path), status=404)
        if self.flavor == "trueai":
            return web.Response(status=404)
        return web.Response(status=404, text="404 page not found")


# ---- result text and images -------------------------------------------------------------------


def _describe_candidates(task: SimTask) -> list[str]:
    text = task.final_prompt or task.prompt_en
    found = []
    for line in text.splitlines():
        cleaned = re.sub(r"^\s*\d\ufe0f?\u20e3\s*", "", line).strip()
        if cleaned:
            found.append(cleaned)
    return found[:4]


def _make_candidates(task: SimTask) -> list[str]:
    """Four describe prompts; the aspect ratio comes from the uploaded image when Pillow can read it."""
    ratio = "1:1"
    if task.source_image:
        try:
            with Image.open(io.BytesIO(task.source_image)) as image:
                width, height = image.size
            divisor = math.gcd(width, height) or 1
            ratio = f"{width // divisor}:{height // divisor}"
        except (OSError, ValueError):
            pass
    subjects = (
        "a simple, flat cartoon drawing of a simulated scene with soft pastel colours",
        "a photograph of a quiet test pattern on a wooden table, warm afternoon light",
        "an isometric illustration of a tiny server room, clean lines, muted palette",
        "a watercolor sketch of a robot painting a canvas, loose brush strokes",
    )
    return [f"{subject} --ar {ratio}" for subject in subjects]


def _shorten_text(prompt: str) -> tuple[str, int]:
    """E6-style markdown: important tokens with **kept** / ~~dropped~~ words, then five options."""
    words = [w for w in re.split(r"[\s,]+", prompt) if w]
    if not words:
        words = ["prompt"]
    marked = [f"~~{w}~~" if i % 3 == 1 and len(words) > 2 else f"**{w}**" for i, w in enumerate(words)]
    kept = [w for i, w in enumerate(words) if not (i % 3 == 1 and len(words) > 2)]
    options = []
    for n in range(5):
        size = max(1, len(kept) - n)
        options.append(", ".join(kept[:size]))
    text = "## Important tokens\n" + " ".join(marked) + "\n## Shortened prompts\n"
    text += "\n\n".join(f"{KEYCAPS[i]} {option}" for i, option in enumerate(options, start=1))
    return text, len(options)


def _colour(job_hash: str, n: int) -> tuple[int, int, int]:
    digits = (job_hash.replace("-", "") or "0" * 32) * 2
    chunk = digits[n * 6 : n * 6 + 6]
    r, g, b = (int(chunk[i : i + 2], 16) for i in (0, 2, 4))
    return 60 + r % 160, 60 + g % 160, 60 + b % 160


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (OSError, TypeError):  # Pillow built without FreeType
        return ImageFont.load_default()


def _draw(task: SimTask, size: int, *, with_text: bool = True) -> Image.Image:
    """A 2x2 grid with the prompt for grid actions, one picture for upscales and face swaps.
    Without text: the same coloured tiles only (drawing text is most of a render)."""
    image = Image.new("RGB", (size, size), (24, 24, 28))
    draw = ImageDraw.Draw(image)
    text = task.prompt or task.description or task.action
    if task.kind == "grid":
        half = size // 2
        if with_text:
            label_font, text_font = _font(max(12, size // 8)), _font(max(8, size // 32))
            wrapped = "\n".join(textwrap.wrap(text, width=max(10, half // max(5, size // 64)))[:4])
        for n in range(4):
            x, y = (n % 2) * half, (n // 2) * half
            draw.rectangle((x, y, x + half - 1, y + half - 1), fill=_colour(task.hash, n))
            if with_text:  # each quadrant's text right after its tile: at small sizes it runs over the next
                draw.text((x + 8, y + 4), str(n + 1), fill=(255, 255, 255), font=label_font)
                draw.multiline_text((x + 8, y + half // 2), wrapped, fill=(255, 255, 255), font=text_font)
    else:
        draw.rectangle((0, 0, size - 1, size - 1), fill=_colour(task.hash, task.index % 4))
        if with_text:
            label = "Face swap" if task.kind == "face" else f"Image #{task.index or 1}"
            draw.text((12, 8), label, fill=(255, 255, 255), font=_font(max(12, size // 12)))
            wrapped = "\n".join(textwrap.wrap(text, width=40)[:6])
            draw.multiline_text((12, size // 2), wrapped, fill=(255, 255, 255), font=_font(max(8, size // 28)))
    return image


# ---- command line -----------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> None:
    proxy = SimulatedProxy(
        flavor=args.flavor,
        api_key=args.api_key or None,
        clock=args.clock,
        step_seconds=args.step_seconds,
        remix=args.remix,
        host=args.host,
        port=args.port,
        numeric_ids=args.numeric_ids,
        admin_token=args.admin_token or None,
        plus=args.plus,
        video_buttons=args.video_buttons,
    )
    if args.remix:
        for account in proxy.accounts.values():
            account["mjRemixOn"] = True  # trueai: video needs Remix on
    async with proxy:
        print(f"Simulated midjourney-proxy ({args.flavor}) listening on {proxy.base_url}", flush=True)
        await asyncio.Event().wait()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A simulated midjourney-proxy server for trying the bot.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--flavor", choices=FLAVORS, default="relay")
    parser.add_argument("--clock", choices=CLOCKS, default="time")
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--api-key", default=os.environ.get("SIM_API_KEY", ""))
    parser.add_argument("--remix", action="store_true", help="V/pan/reroll open a remix modal")
    parser.add_argument("--numeric-ids", action="store_true", help="send task ids as JSON numbers")
    parser.add_argument("--admin-token", default="", help="trueai: the token that may use /mj/admin/*")
    parser.add_argument("--plus", action="store_true", help="basic: also answer midjourney-proxy-plus account routes")
    parser.add_argument("--video-buttons", action="store_true", help="Animate buttons under upscales")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args))


if __name__ == "__main__":
    main()
