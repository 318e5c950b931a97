"""The bot's own small HTTP server: push updates, the Vary (Region) editor and /health.

Optional: it runs when PUBLIC_URL or WEB_PORT is set. Everything reachable from outside is either
harmless (/health says only "ok" beyond loopback) or guarded by a secret in the path: each
upstream's notify hook by its own secret (an HMAC of the upstream's name under NOTIFY_SECRET: the
API server cannot sign its callbacks, MJ_API.md §8), the editor by a signed short-lived link
(bot/web/inpaint.py). Paths carry those secrets, so no request path is ever logged.

A push is a hint, never data: it only says "read this task again now". The tracker then reads the
task from the upstream the hook belongs to, with that upstream's key, so whoever learns a hook can
at most make the bot read one of that upstream's own tasks a little early.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import hashlib
import hmac
import html
import io
import ipaddress
import json
import logging
import math
import secrets
import string
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

import discord
from aiohttp import web
from aiohttp.typedefs import Handler
from PIL import Image, UnidentifiedImageError

from bot.config import ConfigError, Settings
from bot.errors import BotError, InputError, SubmitLost
from bot.i18n import normalize, t
from bot.images import sniff_image
from bot.models import TaskRecord, coerce_id
from bot.responder import error_text
from bot.storage.protocols import MetaStore, Storage
from bot.web import inpaint

if TYPE_CHECKING:
    from bot.jobs import Jobs
    from bot.net.fetcher import Fetcher
    from bot.tracking.tracker import Tracker

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # a task JSON is a few KiB; an editor selection well under this
MAX_EDITOR_IMAGE = 40 * 1024 * 1024
IMAGE_CACHE_SIZE = 8
STOP_GRACE = 10.0
DEFAULT_PORT = 8080
#: Masks drawn at once, and waiting: past that the editor answers "busy" instead of queueing CPU work.
MASK_WORKERS = 1
MASK_QUEUE = 4
#: Proxies add these; a request that went through one is not "from loopback" even if the proxy is.
_FORWARDED = ("Forwarded", "X-Forwarded-For", "X-Real-IP")

_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",  # the page URL is the credential
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_STATIC = {"inpaint.js": "text/javascript", "inpaint.css": "text/css"}
# Strings the page's script needs (the rest are filled into the HTML).
_SCRIPT_STRINGS = ("empty_selection", "sending", "submitted", "open_discord", "network_error", "image_failed")


@dataclass(frozen=True, slots=True)
class WebSecrets:
    notify: str = field(repr=False)
    link_key: bytes = field(repr=False)


async def load_secrets(store: MetaStore, settings: Settings) -> WebSecrets:
    """NOTIFY_SECRET if set, else one generated once and kept in the database, so hooks of tasks
    submitted before a restart still reach us. The link key never leaves the database."""
    notify = settings.notify_secret or await store.get_meta("web:notify_secret")
    if not notify:
        notify = secrets.token_urlsafe(24)
        await store.set_meta("web:notify_secret", notify)
    link_key = await store.get_meta("web:link_key")
    if not link_key:
        link_key = secrets.token_hex(32)
        await store.set_meta("web:link_key", link_key)
    return WebSecrets(notify=notify, link_key=bytes.fromhex(link_key))


@dataclass(frozen=True, slots=True)
class _EditorImage:
    data: bytes
    mime: str
    width: int
    height: int


def _static(name: str) -> str:
    return resources.files("bot.web.static").joinpath(name).read_text(encoding="utf-8")


def _image_size(data: bytes) -> tuple[int, int]:
    """Width and height from the header alone (Image.open does not decode the pixels). A header
    Pillow itself calls a decompression bomb is reported as too large, like any over MAX_PIXELS."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.size
        except Image.DecompressionBombError:
            raise InputError("web.image_too_large") from None


def notify_token(secret: str, upstream: str) -> str:
    """The path part of `upstream`'s notify hook: its name, then an HMAC of it under the bot's push
    secret. Each upstream learns only its own, and it names the one upstream it is good for."""
    name = base64.urlsafe_b64encode(upstream.encode("utf-8")).rstrip(b"=").decode("ascii")
    mac = hmac.new(secret.encode("utf-8"), b"notify\0" + upstream.encode("utf-8"), hashlib.sha256).digest()
    return f"{name}.{base64.urlsafe_b64encode(mac[:24]).decode('ascii')}"


def notify_upstream(secret: str, token: str) -> str | None:
    """The upstream a notify token was made for, or None when it was not made with `secret`."""
    name, dot, _ = token.partition(".")
    if not dot or len(token) > 300:
        return None
    try:
        upstream = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    expected = notify_token(secret, upstream)
    return upstream if hmac.compare_digest(token.encode("utf-8", "replace"), expected.encode("utf-8")) else None


def _from_loopback(request: web.Request) -> bool:
    """Asked on this machine directly (the container's health probe), not through a proxy."""
    if any(header in request.headers for header in _FORWARDED):
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class WebDeps:
    """What the web server uses of the bot, and nothing more."""

    client: discord.Client  # gateway state (/health), fresh attachment links, posting the editor's result
    store: Storage  # the editor's task and its one-submit claim; /health's database check
    tracker: Tracker  # push hints; /health's count of tasks in flight
    jobs: Jobs  # the editor's submit
    fetcher: Fetcher  # the editor's picture, through the guarded fetcher


class WebServer:
    """One aiohttp app. `start()` binds (port 0 = any free port), `stop()` drains pushes in flight."""

    def __init__(self, deps: WebDeps, settings: Settings, web_secrets: WebSecrets) -> None:
        self._deps = deps
        self._settings = settings
        self._secrets = web_secrets
        self._signer = inpaint.LinkSigner(web_secrets.link_key)
        self._runner: web.AppRunner | None = None
        self._jobs: set[asyncio.Task[None]] = set()
        self._images: OrderedDict[str, _EditorImage] = OrderedDict()
        # Masks are CPU work on members' input: a small pool of their own, so a flood of editor
        # submits waits there (or is refused) instead of taking the loop's default executor.
        self._mask_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._mask_slots = asyncio.Semaphore(MASK_WORKERS + MASK_QUEUE)
        self.base_url = ""
        self.pushes_received = 0
        self.pushes_applied = 0
        self.started_at = 0.0

    # ---- lifecycle -----------------------------------------------------------------------------

    @property
    def public_url(self) -> str:
        return self._settings.public_url

    def notify_hook(self, upstream: str) -> str | None:
        """The notifyHook `upstream`'s submits carry, or None without PUBLIC_URL (no server can reach us)."""
        if not self.public_url:
            return None
        return f"{self.public_url}/mj/notify/{notify_token(self._secrets.notify, upstream)}"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[self._errors])
        app.router.add_get("/health", self._health)
        app.router.add_post("/mj/notify/{token}", self._notify)
        app.router.add_get("/static/{name}", self._static_file)
        app.router.add_get("/inpaint/{token}", self._editor_page)
        app.router.add_get("/inpaint/{token}/image", self._editor_image)
        app.router.add_post("/inpaint/{token}", self._editor_submit)
        return app

    async def start(self) -> str:
        port = self._settings.web_port if self._settings.web_port is not None else DEFAULT_PORT
        # access_log=None: request paths carry secrets (notify secret, editor links).
        self._runner = web.AppRunner(self._app(), access_log=None, shutdown_timeout=STOP_GRACE)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._settings.web_host, port)
        try:
            await site.start()
        except OSError as exc:
            await self._runner.cleanup()
            self._runner = None
            raise ConfigError(
                f"the web server cannot listen on {self._settings.web_host}:{port} ({exc.strerror}); "
                "check WEB_HOST and WEB_PORT"
            ) from None
        host, bound = self._runner.addresses[0][:2]
        self.base_url = f"http://{host}:{bound}"
        self.started_at = time.time()
        self._mask_pool = concurrent.futures.ThreadPoolExecutor(MASK_WORKERS, thread_name_prefix="mj-mask")
        log.info(
            "Web server on %s:%s (push updates %s, Vary (Region) editor %s)",
            host,
            bound,
            "on" if self.public_url else "off",
            "on" if self.public_url else "off",
        )
        return self.base_url

    async def stop(self) -> None:
        """Stop listening, then let pushes already accepted finish their Discord edits."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._jobs:
            _, pending = await asyncio.wait(set(self._jobs), timeout=STOP_GRACE)
            for job in pending:
                job.cancel()
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
                log.warning("Shutdown: %d push update(s) did not finish in time", len(pending))
        if self._mask_pool is not None:
            self._mask_pool.shutdown(wait=False, cancel_futures=True)
            self._mask_pool = None

    # ---- helpers -------------------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            log.debug("web %s %s -> %s", request.method, route, exc.status)
            raise
        except Exception:
            log.exception("web %s %s failed", request.method, route)
            return web.json_response({"error": "internal error"}, status=500)
        log.debug("web %s %s -> %s", request.method, route, response.status)
        return response

    def _language(self, request: web.Request) -> str:
        return normalize(request.headers.get("Accept-Language", "") or self._settings.default_locale)

    async def _read_json(self, request: web.Request) -> Any:
        body = await request.read()  # HTTP 413 past client_max_size
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: absurdly deep nesting
            raise web.HTTPBadRequest(text="body is not JSON") from None

    # ---- /health -------------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        client = self._deps.client
        latency = client.latency
        gateway = client.is_ready() and not client.is_closed() and math.isfinite(latency)
        try:
            await self._deps.store.schema_version()
            database = True
        except Exception as exc:  # any failure means "not healthy", never a 500
            log.warning("Health check: database not usable (%s)", type(exc).__name__)
            database = False
        body = {
            "status": "ok" if gateway and database else "unavailable",
            "gateway": gateway,
            "latency_ms": round(latency * 1000) if math.isfinite(latency) else None,
            "database": database,
            "tracked_tasks": len(self._deps.tracker.active_ids),
            # received: well-formed pushes; applied: those that led to a read (the rest were late or repeats).
            "push": {
                "enabled": bool(self.public_url),
                "received": self.pushes_received,
                "applied": self.pushes_applied,
            },
            "uptime_s": round(time.time() - self.started_at),
        }
        status = 200 if body["status"] == "ok" else 503
        if not _from_loopback(request):
            body = {"status": body["status"]}  # the rest is for the operator's own probe
        return web.json_response(body, status=status)

    # ---- push updates (notifyHook) ---------------------------------------------------------------

    async def _notify(self, request: web.Request) -> web.Response:
        upstream = notify_upstream(self._secrets.notify, request.match_info["token"])
        if upstream is None:
            raise web.HTTPNotFound()
        data = await self._read_json(request)
        task_id = coerce_id(data.get("id")) if isinstance(data, dict) else None
        if not task_id or len(task_id) > 64:
            raise web.HTTPBadRequest(text="not a task object")
        self.pushes_received += 1
        # Only the id is used: status, progress, image and buttons come from reading the task back.
        if not self._deps.tracker.is_tracking(upstream, task_id):
            # Not ours, another upstream's, finished, or waiting for a modal. 2xx so the server does not log errors.
            return web.json_response({"ignored": "unknown or finished task"}, status=202)
        self._spawn(self._hint(upstream, task_id))
        return web.json_response({"accepted": True})

    def _spawn(self, coro: Any) -> None:
        job: asyncio.Task[None] = asyncio.create_task(coro)
        self._jobs.add(job)
        job.add_done_callback(self._job_done)

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._jobs.discard(job)
        if not job.cancelled() and job.exception() is not None:
            log.error("Reading a pushed task failed", exc_info=job.exception())

    async def _hint(self, upstream: str, task_id: str) -> None:
        if await self._deps.tracker.hint(upstream, task_id):
            self.pushes_applied += 1

    # ---- Vary (Region) editor ------------------------------------------------------------------

    def inpaint_url(self, task_id: str, index: int, user_id: int, locale: str) -> str | None:
        """A private editor link for one user and one button, or None without PUBLIC_URL."""
        if not self.public_url:
            return None
        token, _ = self._signer.new_link(task_id, index, user_id, normalize(locale))
        return f"{self.public_url}/inpaint/{token}"

    async def _static_file(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise web.HTTPNotFound()
        return web.Response(
            text=_static(name), content_type=_STATIC[name], headers={"Cache-Control": "public, max-age=3600"}
        )

    async def _open(self, token: str) -> tuple[inpaint.InpaintLink, TaskRecord]:
        link = self._signer.verify(token)
        parent = inpaint.check_parent(await self._deps.store.get_task(link.task_id), link.index)
        return link, parent

    async def _picture(self, parent: TaskRecord) -> _EditorImage:
        """The finished picture the mask is drawn on (our Discord upload first: upstream links expire)."""
        cached = self._images.get(parent.id)
        if cached is not None:
            self._images.move_to_end(parent.id)
            return cached
        data: bytes | None = None
        for source in (parent.result_url, self._fresh_attachment_url, parent.image_url):
            url = await source(parent) if callable(source) else source
            if not url:
                continue
            try:  # the guarded fetcher: public addresses only, and the bytes must be a picture
                data = (await self._deps.fetcher.fetch_media(url, max_bytes=MAX_EDITOR_IMAGE)).data
            except BotError:
                continue
            break
        mime = sniff_image(data) if data else None
        if data is None or mime is None:
            raise InputError("web.image_failed")
        try:
            width, height = _image_size(data)  # the header only: cheap, and checked before any drawing
        except (UnidentifiedImageError, OSError, ValueError):
            raise InputError("web.image_failed") from None
        inpaint.check_picture_size(width, height)
        picture = _EditorImage(data, mime, width, height)
        self._images[parent.id] = picture
        while len(self._images) > IMAGE_CACHE_SIZE:
            self._images.popitem(last=False)
        return picture

    async def _fresh_attachment_url(self, parent: TaskRecord) -> str | None:
        """Discord signs attachment links for about a day: ask for the message again for a fresh one."""
        if parent.message_id is None:
            return None
        channel = self._deps.client.get_partial_messageable(parent.channel_id, guild_id=parent.message_guild_id)
        try:
            message = await channel.fetch_message(parent.message_id)
        except discord.HTTPException:
            return None
        return message.attachments[0].url if message.attachments else None

    def _error_page(self, error: BotError, language: str) -> web.Response:
        status = {"web.link_expired": 410, "web.link_invalid": 403}.get(error.key, 404)
        text = html.escape(error_text(error, language, markdown=False))
        title = html.escape(t("web.title", language))
        body = (
            f'<!doctype html><html lang="{language}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title>'
            f'<link rel="stylesheet" href="../static/inpaint.css"></head>'
            f'<body><main><h1>{title}</h1><p class="error" id="status">{text}</p></main></body></html>'
        )
        return web.Response(text=body, status=status, content_type="text/html", headers=_PAGE_HEADERS)

    async def _editor_page(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        try:
            link, parent = await self._open(token)
        except BotError as error:
            return self._error_page(error, self._language(request))
        language = normalize(link.locale)
        strings = {name: t(f"web.{name}", language) for name in _SCRIPT_STRINGS}
        values = {
            "lang": language,
            "title": t("web.title", language),
            "help": t("web.help", language),
            "tool_rect": t("web.tool_rect", language),
            "tool_brush": t("web.tool_brush", language),
            "brush_size": t("web.brush_size", language),
            "undo": t("web.undo", language),
            "clear": t("web.clear", language),
            "prompt_label": t("web.prompt", language),
            "submit": t("web.submit", language),
            "prompt": parent.final_prompt or parent.prompt,
            "image": f"{token}/image",
        }
        page = string.Template(_static("inpaint.html")).substitute(
            {key: html.escape(value) for key, value in values.items()},
            strings=json.dumps(strings, ensure_ascii=False).replace("<", "\\u003c"),
        )
        return web.Response(text=page, content_type="text/html", headers=_PAGE_HEADERS)

    async def _editor_image(self, request: web.Request) -> web.Response:
        try:
            _, parent = await self._open(request.match_info["token"])
            picture = await self._picture(parent)
        except BotError as error:
            raise web.HTTPNotFound(text=error.key) from None
        return web.Response(
            body=picture.data, content_type=picture.mime, headers={"Cache-Control": "private, max-age=900"}
        )

    async def _draw_mask(self, picture: _EditorImage, shapes: list[inpaint.Shape]) -> bytes:
        """The mask, drawn in the editor's own small pool; "busy" when that pool is full."""
        if self._mask_slots.locked() or self._mask_pool is None:
            raise InputError("web.busy")
        async with self._mask_slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._mask_pool, inpaint.build_mask, picture.width, picture.height, shapes
            )

    async def _editor_submit(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        language = self._language(request)
        try:
            link, parent = await self._open(token)
        except BotError as error:
            status = {"web.link_expired": 410, "web.link_invalid": 403}.get(error.key, 409)
            return web.json_response({"error": error_text(error, language, markdown=False)}, status=status)
        language = normalize(link.locale)
        if request.content_type != "application/json":
            # Plain HTML forms cannot send JSON cross-site without CORS: this keeps the endpoint out of CSRF reach.
            raise web.HTTPUnsupportedMediaType(text="send application/json")
        data = await self._read_json(request)
        if not isinstance(data, dict) or not isinstance(data.get("prompt"), str):
            raise web.HTTPBadRequest(text="expected {prompt, shapes}")
        try:
            claim = await inpaint.claim_link(self._deps.jobs, parent, link, inpaint.link_id(token))
        except BotError as error:
            return web.json_response({"error": error_text(error, language, markdown=False)}, status=422)
        try:
            picture = await self._picture(parent)
            shapes = inpaint.parse_shapes(data.get("shapes"), picture.width, picture.height)
            mask = await self._draw_mask(picture, shapes)
            record, message = await inpaint.submit_region(
                self._deps.client, self._deps.jobs, link=link, parent=parent, prompt=data["prompt"], mask_png=mask
            )
        except SubmitLost:
            # The answer was lost, not refused: the server may have charged it, so the link stays used.
            return web.json_response({"error": t("web.submit_lost", language)}, status=422)
        except BotError as error:
            await inpaint.release_link(self._deps.jobs, parent, claim)
            return web.json_response({"error": error_text(error, language, markdown=False)}, status=422)
        return web.json_response(
            {
                "ok": True,
                "task": record.id,
                "message": t("web.submitted", language),
                "url": message.jump_url if message else None,
            }
        )
