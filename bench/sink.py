"""The benchmark's world, in its own process: the simulated API and a Discord sink shaped like Discord.

Kept out of the measured process so that its CPU time and memory are the bot's alone. The sink
speaks just enough of Discord's REST API for discord.py's real HTTP client (login, channel message
posts and edits with the bot token, interaction-token edits and followups, multipart uploads) and
enforces Discord's limits, on by default (Discord's rate-limit documentation):
- bot-token routes: at most --global-limit (50) requests in each whole second (a global 429 with
  X-RateLimit-Global), and 5 writes per 5 s per channel, posts and edits counted together
  (stricter than Discord, whose post and edit routes have a bucket each);
- interaction routes (PATCH/POST /webhooks/{application}/{token}/...): exempt from the global
  limit, with a bucket per token (5 per 5 s); a token is refused with 401 (code 50027) once it is
  --token-seconds (900) old;
- every 401, 403 and 429 is counted (Discord bans an IP above 10,000 in 10 minutes).

Successful answers announce the bucket in X-RateLimit headers as Discord does, unless
ratelimit_headers=False (the default of `python -m bench.sink`; --ratelimit-headers turns them on).
With the headers, discord.py's own HTTP client holds back a request that would exhaust a bucket, so
a zero 429 count would say nothing about the tracker's pacing; without them every write the tracker
sends too early reaches the sink and is counted as a 429.

It records when each task's result arrived, so completion-to-edit latency is measured on one
clock: the simulator's finish time and the sink's arrival time, and works out the lower bound of
bench/bound.py from the same finish times. It also compares each edit with the previous write to
the same message (counting the ones that changed nothing), and counts each task's progress writes.

Control endpoints (JSON): POST /bench/tasks makes the tasks (and the interactions that started
them), GET /bench/stats reports. Run by bench/tracker.py: python -m bench.sink (prints its two base
URLs as one JSON line).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import re
import resource
import secrets
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bench.bound import Finished, Limits, lower_bound
from bot.upstream.simulator import SimulatedProxy

log = logging.getLogger(__name__)

BOT_ID = 1_300_000_000_000_000_001
_RESULT_FILE = re.compile(r"mj_(\d+)\.")


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    # Exactly "application/json" (no charset): discord.py parses JSON only on an exact match.
    body = json.dumps(data, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, headers={**(headers or {}), "Content-Type": "application/json"})


@dataclass(slots=True)
class Bucket:
    reset_at: float
    remaining: int


@dataclass(slots=True)
class Interaction:
    """An interaction token the sink issued (as Discord does with INTERACTION_CREATE)."""

    task_id: str
    channel_id: str
    message_id: str  # its original response
    issued_at: float


@dataclass
class SinkStats:
    writes: int = 0  # accepted writes, both tokens
    token_writes: int = 0  # of which through an interaction token
    finals: int = 0
    rate_limited: int = 0  # 429s of every scope
    limited_by_scope: dict[str, int] = field(default_factory=dict)  # "global" / "channel" / "token" -> 429s
    rate_limited_channels: dict[str, int] = field(default_factory=dict)  # channel id -> 429s
    unauthorized: int = 0  # 401s (expired interaction tokens)
    invalid_at: list[float] = field(default_factory=list)  # time.time() of each 401, 403 and 429
    unchanged: int = 0  # edits identical to the previous write to that message
    write_times: list[float] = field(default_factory=list)  # time.time() of each accepted write
    bot_token_at: list[float] = field(default_factory=list)  # each bot-token write request, accepted or not
    final_at: dict[str, float] = field(default_factory=dict)  # task id -> first result upload (time.time())
    result_uploads: dict[str, int] = field(default_factory=dict)  # task id -> result files received
    progress_writes: dict[str, int] = field(default_factory=dict)  # task id -> writes before its result


class DiscordSink:
    """Just enough Discord for the tracker's writes, with Discord's limits (checked with Discord's
    rate-limit documentation): bot-token routes share `global_limit` requests per second (0 = none)
    and a bucket per channel; interaction routes (edits and followups through an interaction token)
    are exempt from the global limit, with a bucket per token; an interaction token is refused with
    401 (code 50027) `token_seconds` after it was issued."""

    def __init__(
        self,
        *,
        channel_limit: int = 5,
        channel_window: float = 5.0,
        global_limit: int = 50,
        token_limit: int = 5,
        token_window: float = 5.0,
        token_seconds: float = 900.0,
        ratelimit_headers: bool = True,
    ) -> None:
        self.channel_limit = channel_limit
        self.channel_window = channel_window
        self.global_limit = global_limit
        self.token_limit = token_limit
        self.token_window = token_window
        self.token_seconds = token_seconds
        self.ratelimit_headers = ratelimit_headers
        self.stats = SinkStats()
        self._buckets: dict[str, Bucket] = {}
        self._shown: dict[str, int] = {}  # message id -> hash of what its last write showed
        self._global_second = 0  # the whole second whose bot-token requests are being counted
        self._global_used = 0
        self._interactions: dict[str, Interaction] = {}  # token -> interaction
        self._message_task: dict[str, str] = {}  # message id -> task id
        self._files: dict[str, list[tuple[str, int]]] = {}  # message id -> its attachments
        self._ids = 1_400_000_000_000_000_000

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_post("/api/v10/channels/{channel}/messages", self._write)
        app.router.add_patch("/api/v10/channels/{channel}/messages/{message}", self._write)
        app.router.add_get("/api/v10/channels/{channel}/messages/{message}", self._read_message)
        app.router.add_get("/api/v10/webhooks/{application}/{token}/messages/{message}", self._read_message)
        app.router.add_post("/api/v10/webhooks/{application}/{token}", self._token_write)
        app.router.add_patch("/api/v10/webhooks/{application}/{token}/messages/{message}", self._token_write)

    def message_for(self, task_id: str, channel_id: int) -> str:
        """A task's message as the cogs leave it (posted with the bot token)."""
        message_id = str(self._next_id())
        self._message_task[message_id] = task_id
        return message_id

    def issue(self, task_id: str, channel_id: int) -> tuple[str, str]:
        """A slash command's interaction and its original response: (token, message id)."""
        message_id = self.message_for(task_id, channel_id)
        token = secrets.token_urlsafe(32)
        self._interactions[token] = Interaction(task_id, str(channel_id), message_id, time.time())
        return token, message_id

    # ---- rate limits ----------------------------------------------------------------------------

    def _take(self, key: str, limit: int, window: float) -> tuple[Bucket, bool]:
        now = time.time()
        bucket = self._buckets.get(key)
        if bucket is None or now >= bucket.reset_at:
            bucket = self._buckets[key] = Bucket(now + window, limit)
        if bucket.remaining <= 0:
            return bucket, False
        bucket.remaining -= 1
        return bucket, True

    def _take_global(self) -> Bucket | None:
        """One bot-token request against this second's count; the bucket to report when refused."""
        now = time.time()
        self.stats.bot_token_at.append(now)
        if self.global_limit <= 0:
            return None
        if int(now) != self._global_second:
            self._global_second, self._global_used = int(now), 0
        if self._global_used >= self.global_limit:
            return Bucket(float(self._global_second + 1), 0)
        self._global_used += 1
        return None

    def _headers(self, bucket: Bucket, limit: int, name: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": f"{bucket.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{max(0.0, bucket.reset_at - time.time()):.3f}",
            "X-RateLimit-Bucket": name,
        }

    def _invalid(self) -> None:
        self.stats.invalid_at.append(time.time())

    def _limited(self, bucket: Bucket, headers: dict[str, str], *, scope: str, channel: str) -> web.Response:
        stats = self.stats
        stats.rate_limited += 1
        stats.limited_by_scope[scope] = stats.limited_by_scope.get(scope, 0) + 1
        stats.rate_limited_channels[channel] = stats.rate_limited_channels.get(channel, 0) + 1
        self._invalid()
        retry_after = max(0.0, bucket.reset_at - time.time())
        global_ = scope == "global"
        headers = {**headers, "Via": "1.1 google", "Retry-After": str(max(1, math.ceil(retry_after)))}
        headers["X-RateLimit-Scope"] = "global" if global_ else "user"
        if global_:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": global_}
        return _json(body, status=429, headers=headers)

    # ---- routes ---------------------------------------------------------------------------------

    async def _me(self, request: web.Request) -> web.Response:
        return _json(self._user())

    async def _application(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": str(BOT_ID),
                "name": "BenchBot",
                "icon": None,
                "description": "",
                "bot_public": True,
                "bot_require_code_grant": False,
                "verify_key": "0" * 64,
                "team": None,
                "owner": self._user(),
                "flags": 0,
            }
        )

    async def _write(self, request: web.Request) -> web.Response:
        """A message post or edit with the bot token: the global limit, then the channel's bucket."""
        channel = request.match_info["channel"]
        refused = self._take_global()
        if refused is not None:
            await request.read()
            return self._limited(refused, {}, scope="global", channel=channel)
        bucket, allowed = self._take(channel, self.channel_limit, self.channel_window)
        headers = self._headers(bucket, self.channel_limit, "channel-messages")
        if not allowed:
            await request.read()
            return self._limited(bucket, headers, scope="channel", channel=channel)
        payload, files = await self._read(request)
        message_id = request.match_info.get("message") or str(self._next_id())
        self._record(payload, files, message_id, edit=request.method == "PATCH")
        return _json(
            self._message(channel, message_id, payload, files),
            headers=headers if self.ratelimit_headers else None,
        )

    async def _read_message(self, request: web.Request) -> web.Response:
        """A message as it stands (a process that took tasks over checks for a result already posted)."""
        token = request.match_info.get("token")
        if token is None:
            refused = self._take_global()
            if refused is not None:
                return self._limited(refused, {}, scope="global", channel=request.match_info["channel"])
            channel = request.match_info["channel"]
        else:
            interaction = self._interactions.get(token)
            if interaction is None:
                return _json({"message": "Unknown Webhook", "code": 10015}, status=404)
            if time.time() - interaction.issued_at >= self.token_seconds:
                self.stats.unauthorized += 1
                self._invalid()
                return _json({"message": "Invalid Webhook Token", "code": 50027}, status=401)
            channel = interaction.channel_id
        message_id = request.match_info["message"]
        if message_id == "@original" and token is not None:
            message_id = self._interactions[token].message_id
        return _json(self._message(channel, message_id, {}, self._files.get(message_id, [])))

    async def _token_write(self, request: web.Request) -> web.Response:
        """An edit or followup through an interaction token: no global limit, a bucket per token,
        401 (50027) once the token is older than `token_seconds`."""
        token = request.match_info["token"]
        interaction = self._interactions.get(token)
        if interaction is None or request.match_info["application"] != str(BOT_ID):
            await request.read()
            return _json({"message": "Unknown Webhook", "code": 10015}, status=404)
        if time.time() - interaction.issued_at >= self.token_seconds:
            await request.read()
            self.stats.unauthorized += 1
            self._invalid()
            return _json({"message": "Invalid Webhook Token", "code": 50027}, status=401)
        bucket, allowed = self._take(f"token:{token}", self.token_limit, self.token_window)
        headers = self._headers(bucket, self.token_limit, "interaction-webhook")
        if not allowed:
            await request.read()
            return self._limited(bucket, headers, scope="token", channel=interaction.channel_id)
        payload, files = await self._read(request)
        ref = request.match_info.get("message")
        if ref is None:  # a followup: a new message
            message_id = str(self._next_id())
            self._message_task[message_id] = interaction.task_id
        else:
            message_id = interaction.message_id if ref == "@original" else ref
        self.stats.token_writes += 1
        self._record(payload, files, message_id, edit=ref is not None)
        return _json(
            self._message(interaction.channel_id, message_id, payload, files),
            headers=headers if self.ratelimit_headers else None,
        )

    async def _read(self, request: web.Request) -> tuple[dict[str, Any], list[tuple[str, int]]]:
        if not request.content_type.startswith("multipart/"):
            return (await request.json()) or {}, []
        payload: dict[str, Any] = {}
        files: list[tuple[str, int]] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            data = await part.read()  # type: ignore[union-attr]
            if getattr(part, "name", None) == "payload_json":
                payload = json.loads(bytes(data))
            elif getattr(part, "filename", None):
                files.append((part.filename or "", len(data)))  # type: ignore[union-attr]
        return payload, files

    def _record(self, payload: dict[str, Any], files: list[tuple[str, int]], message_id: str, *, edit: bool) -> None:
        stats = self.stats
        stats.writes += 1
        stats.write_times.append(time.time())
        shown = hash((json.dumps(payload, sort_keys=True), tuple(files)))
        if edit and self._shown.get(message_id) == shown:
            stats.unchanged += 1
        self._shown[message_id] = shown
        result = False
        if files:
            self._files[message_id] = list(files)
        for name, _ in files:
            if match := _RESULT_FILE.search(name):
                result = True
                task_id = match.group(1)
                stats.finals += 1
                stats.final_at.setdefault(task_id, time.time())
                stats.result_uploads[task_id] = stats.result_uploads.get(task_id, 0) + 1
        owner = self._message_task.get(message_id)
        if not result and owner is not None and owner not in stats.final_at:
            stats.progress_writes[owner] = stats.progress_writes.get(owner, 0) + 1

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _user(self) -> dict[str, Any]:
        return {"id": str(BOT_ID), "username": "BenchBot", "discriminator": "0", "avatar": None, "bot": True}

    def _message(
        self, channel: str, message_id: str, payload: dict[str, Any], files: list[tuple[str, int]]
    ) -> dict[str, Any]:
        attachments = [
            {
                "id": str(self._next_id()),
                "filename": name,
                "size": size,
                "url": f"https://cdn.example/attachments/{channel}/{message_id}/{name}",
                "proxy_url": f"https://media.example/attachments/{channel}/{message_id}/{name}",
            }
            for name, size in files
        ]
        return {
            "id": message_id,
            "channel_id": channel,
            "author": self._user(),
            "content": payload.get("content") or "",
            "timestamp": "2026-01-01T00:00:00+00:00",
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": payload.get("embeds") or [],
            "components": payload.get("components") or [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }


def peak_per_second(times: list[float]) -> int:
    """The most events in one whole second."""
    per_second: dict[int, int] = {}
    for at in times:
        per_second[int(at)] = per_second.get(int(at), 0) + 1
    return max(per_second.values(), default=0)


def most_in_window(times: list[float], window: float) -> int:
    """The most events in any `window` seconds (Discord's ban counts invalid requests per 10 minutes)."""
    ordered = sorted(times)
    most = first = 0
    for last, at in enumerate(ordered):
        while ordered[first] <= at - window:
            first += 1
        most = max(most, last - first + 1)
    return most


class World:
    """The simulator, the sink and the control endpoints."""

    def __init__(self, sink: DiscordSink) -> None:
        self.sink = sink
        self.sim = SimulatedProxy(
            flavor="relay", clock="time", progress_steps=3, image_size=64, image_text=False, seed=7
        )
        self.burst: set[str] = set()
        self.tasks: dict[str, dict[str, Any]] = {}  # task id -> what /bench/tasks answered for it
        self.upstream_requests: dict[str, int] = {}

    async def _tasks(self, request: web.Request) -> web.Response:
        """Make `n` tasks: `burst` of them in channel 1 finishing together, the rest staggered over
        `stagger` seconds with lifecycles of 30-90 s (a `long_share` of them 20 minutes) divided by
        `time_factor`, `per_channel` to a channel. An `interaction_share` of them was started by a
        slash command: their message is its original response, editable with its token."""
        spec = await request.json()
        rng = random.Random(spec.get("seed", 1))
        factor = float(spec["time_factor"])
        per_channel = max(1, int(spec.get("per_channel", 10)))
        steps = self.sim.progress_steps + 2  # NOT_START -> SUBMITTED -> progress... -> SUCCESS
        made: list[dict[str, Any]] = []
        others = 0
        for n in range(int(spec["n"])):
            in_burst = n < int(spec["burst"])
            if in_burst:
                duration, start, channel = 30.0 / factor, 0.0, 1
            else:
                lifecycle = 1200.0 if rng.random() < float(spec.get("long_share", 0.0)) else rng.uniform(30.0, 90.0)
                duration, start = lifecycle / factor, rng.uniform(0.0, float(spec["stagger"]))
                channel = 1000 + others // per_channel
                others += 1
            task_id = self.sim.add_task(f"bench task {n}", step_seconds=duration / steps, start_in=start)
            if in_burst:
                self.burst.add(task_id)
            task: dict[str, Any] = {"id": task_id, "burst": in_burst, "channel": channel, "created_at": time.time()}
            if rng.random() < float(spec.get("interaction_share", 0.0)):
                task["token"], task["message_id"] = self.sink.issue(task_id, channel)
                task["token_at"] = task["created_at"]
            else:
                task["message_id"] = self.sink.message_for(task_id, channel)
            self.tasks[task_id] = {k: v for k, v in task.items() if k != "token"}
            made.append(task)
        return web.json_response(made)

    async def _stats(self, request: web.Request) -> web.Response:
        self._count_requests()
        stats = self.sink.stats
        poll_interval = float(request.query.get("poll_interval", "3"))
        young_seconds = float(request.query.get("young_seconds", "840"))
        normal: list[float] = []
        burst: list[float] = []
        young: list[float] = []
        finished: list[Finished] = []
        measured: dict[str, float] = {}
        unfinished = 0
        for task_id, task in self.sim.tasks.items():
            arrived = stats.final_at.get(task_id)
            if task.finish_time is None or arrived is None:
                unfinished += 1
                continue
            done = task.finish_time / 1000
            latency = measured[task_id] = max(0.0, arrived - done)
            (burst if task_id in self.burst else normal).append(latency)
            made = self.tasks.get(task_id, {})
            if done - made.get("created_at", done) < young_seconds:
                young.append(latency)
            if made:
                finished.append(Finished(task_id, done, int(made["channel"]), made.get("token_at")))
        limits = Limits(
            poll_interval=poll_interval,
            global_limit=self.sink.global_limit,
            channel_limit=self.sink.channel_limit,
            channel_window=self.sink.channel_window,
            token_seconds=self.sink.token_seconds,
        )
        bound = lower_bound(finished, limits)
        every = [measured[t.task_id] for t in finished]
        duplicates = sum(1 for count in stats.result_uploads.values() if count > 1)
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return web.json_response(
            {
                "latency": normal,
                "burst_latency": burst,
                "young_latency": young,
                "all_latency": every,
                "bound_latency": list(bound.values()),
                "unfinished": unfinished,
                "progress_shown": sum(1 for t in finished if stats.progress_writes.get(t.task_id)),
                "finished": len(finished),
                "writes": stats.writes,
                "token_writes": stats.token_writes,
                "unchanged_edits": stats.unchanged,
                "peak_writes_per_second": peak_per_second(stats.write_times),
                "peak_bot_token_per_second": peak_per_second(stats.bot_token_at),
                "bot_token_requests": len(stats.bot_token_at),
                "finals": stats.finals,
                "distinct_finals": len(stats.final_at),
                "duplicate_results": duplicates,
                "rate_limited": stats.rate_limited,
                "limited_by_scope": dict(stats.limited_by_scope),
                "unauthorized": stats.unauthorized,
                "invalid_per_10_minutes": most_in_window(stats.invalid_at, 600.0),
                "rate_limited_channels": dict(stats.rate_limited_channels),
                "upstream": dict(self.upstream_requests),
                "world_cpu_seconds": usage.ru_utime + usage.ru_stime,
                "world_peak_rss_mb": usage.ru_maxrss / 1024,
            }
        )

    def _count_requests(self) -> None:
        """Count and drop the simulator's request log (it would grow without end)."""
        for recorded in self.sim.requests:
            kind = "list" if recorded.path.endswith("list-by-condition") else recorded.path.rsplit("/", 1)[-1]
            kind = kind if kind in ("list", "fetch") else ("image" if "/mj/image/" in recorded.path else "other")
            self.upstream_requests[kind] = self.upstream_requests.get(kind, 0) + 1
        self.sim.requests.clear()

    async def _count_forever(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self._count_requests()

    async def serve(self) -> None:
        sim_url = await self.sim.start()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.sink.routes(app)
        app.router.add_post("/bench/tasks", self._tasks)
        app.router.add_get("/bench/stats", self._stats)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        counter = asyncio.create_task(self._count_forever())
        print(json.dumps({"sim": sim_url, "sink": f"http://{host}:{port}"}), flush=True)
        try:
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent goes
        finally:
            counter.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await counter
            await runner.cleanup()
            await self.sim.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channel-limit", type=int, default=5)
    parser.add_argument("--channel-window", type=float, default=5.0)
    parser.add_argument("--global-limit", type=int, default=50, help="bot-token requests per second (0: none)")
    parser.add_argument("--token-limit", type=int, default=5, help="writes per window per interaction token")
    parser.add_argument("--token-window", type=float, default=5.0)
    parser.add_argument("--token-seconds", type=float, default=900.0, help="an interaction token's life")
    parser.add_argument("--ratelimit-headers", action="store_true", help="announce buckets as Discord does")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sink = DiscordSink(
        channel_limit=args.channel_limit,
        channel_window=args.channel_window,
        global_limit=args.global_limit,
        token_limit=args.token_limit,
        token_window=args.token_window,
        token_seconds=args.token_seconds,
        ratelimit_headers=args.ratelimit_headers,
    )
    asyncio.run(World(sink).serve())


if __name__ == "__main__":
    main()
