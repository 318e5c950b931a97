"""The benchmark's world, in its own process: the simulated API and a light Discord sink.

Kept out of the measured process so that its CPU time and memory are the bot's alone. The sink
speaks just enough of Discord's REST API for discord.py's real HTTP client (login, channel
message posts and edits, multipart uploads) and enforces Discord's per-channel limit: 5 writes per
5 s per channel, posts and edits counted together (stricter than Discord, whose post and edit routes
have a bucket each), one more is answered 429 with Retry-After; plus an optional bot-wide limit.

Successful answers announce the bucket in X-RateLimit headers as Discord does, unless
ratelimit_headers=False (the default of `python -m bench.sink`; --ratelimit-headers turns them on).
With the headers, discord.py's own HTTP client holds back a request that would exhaust a bucket, so
a zero 429 count would say nothing about the tracker's pacing; without them every write the tracker
sends too early reaches the sink and is counted as a 429.

It records when each task's result arrived, so completion-to-edit latency is measured on one
clock: the simulator's finish time and the sink's arrival time. It also compares each edit with the
previous write to the same message and counts the ones that changed nothing.

Control endpoints (JSON): POST /bench/tasks makes the tasks, GET /bench/stats reports.
Run by bench/tracker.py: python -m bench.sink (prints its two base URLs as one JSON line).
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
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

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


@dataclass
class SinkStats:
    writes: int = 0
    finals: int = 0
    rate_limited: int = 0
    rate_limited_channels: dict[str, int] = field(default_factory=dict)  # channel id -> 429s
    unchanged: int = 0  # edits identical to the previous write to that message
    write_times: list[float] = field(default_factory=list)  # time.time() of each accepted write
    final_at: dict[str, float] = field(default_factory=dict)  # task id -> first result upload (time.time())
    result_uploads: dict[str, int] = field(default_factory=dict)  # task id -> result files received


class DiscordSink:
    """Just enough Discord for the tracker's writes, with real per-channel buckets."""

    def __init__(
        self,
        *,
        channel_limit: int = 5,
        channel_window: float = 5.0,
        global_limit: int = 0,
        ratelimit_headers: bool = True,
    ) -> None:
        self.channel_limit = channel_limit
        self.channel_window = channel_window
        self.global_limit = global_limit
        self.ratelimit_headers = ratelimit_headers
        self.stats = SinkStats()
        self._buckets: dict[str, Bucket] = {}
        self._shown: dict[str, int] = {}  # message id -> hash of what its last write showed
        self._global: Bucket | None = None
        self._ids = 1_400_000_000_000_000_000

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v10/users/@me", self._me)
        app.router.add_get("/api/v10/oauth2/applications/@me", self._application)
        app.router.add_post("/api/v10/channels/{channel}/messages", self._write)
        app.router.add_patch("/api/v10/channels/{channel}/messages/{message}", self._write)

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

    def _headers(self, bucket: Bucket, limit: int, name: str) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(limit),
            "X-RateLimit-Remaining": str(bucket.remaining),
            "X-RateLimit-Reset": f"{bucket.reset_at:.3f}",
            "X-RateLimit-Reset-After": f"{max(0.0, bucket.reset_at - time.time()):.3f}",
            "X-RateLimit-Bucket": name,
        }

    def _limited(self, bucket: Bucket, headers: dict[str, str], *, global_: bool, channel: str) -> web.Response:
        self.stats.rate_limited += 1
        self.stats.rate_limited_channels[channel] = self.stats.rate_limited_channels.get(channel, 0) + 1
        retry_after = max(0.0, bucket.reset_at - time.time())
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
        channel = request.match_info["channel"]
        if self.global_limit > 0:
            if self._global is None or time.time() >= self._global.reset_at:
                self._global = Bucket(time.time() + 1.0, self.global_limit)
            if self._global.remaining <= 0:
                await request.read()
                return self._limited(self._global, {}, global_=True, channel=channel)
            self._global.remaining -= 1
        bucket, allowed = self._take(channel, self.channel_limit, self.channel_window)
        headers = self._headers(bucket, self.channel_limit, "channel-messages")
        if not allowed:
            await request.read()
            return self._limited(bucket, headers, global_=False, channel=channel)
        payload, files = await self._read(request)
        message_id = request.match_info.get("message") or str(self._next_id())
        self._record(payload, files, message_id, edit=request.method == "PATCH")
        return _json(
            self._message(channel, message_id, payload, files),
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
        task_id = None
        for name, _ in files:
            if match := _RESULT_FILE.search(name):
                task_id = match.group(1)
                stats.finals += 1
                stats.final_at.setdefault(task_id, time.time())
                stats.result_uploads[task_id] = stats.result_uploads.get(task_id, 0) + 1

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


class World:
    """The simulator, the sink and the control endpoints."""

    def __init__(self, sink: DiscordSink) -> None:
        self.sink = sink
        self.sim = SimulatedProxy(
            flavor="relay", clock="time", progress_steps=3, image_size=64, image_text=False, seed=7
        )
        self.burst: set[str] = set()
        self.upstream_requests: dict[str, int] = {}

    async def _tasks(self, request: web.Request) -> web.Response:
        """Make `n` tasks: `burst` of them in one channel finishing together, the rest staggered
        over `stagger` seconds with lifecycles of 30-90 s divided by `time_factor`."""
        spec = await request.json()
        rng = random.Random(spec.get("seed", 1))
        factor = float(spec["time_factor"])
        steps = self.sim.progress_steps + 2  # NOT_START -> SUBMITTED -> progress... -> SUCCESS
        made: list[dict[str, Any]] = []
        for n in range(int(spec["n"])):
            in_burst = n < int(spec["burst"])
            if in_burst:
                duration, start = 30.0 / factor, 0.0
            else:
                duration, start = rng.uniform(30.0, 90.0) / factor, rng.uniform(0.0, float(spec["stagger"]))
            task_id = self.sim.add_task(f"bench task {n}", step_seconds=duration / steps, start_in=start)
            if in_burst:
                self.burst.add(task_id)
            made.append({"id": task_id, "burst": in_burst})
        return web.json_response(made)

    async def _stats(self, request: web.Request) -> web.Response:
        self._count_requests()
        stats = self.sink.stats
        normal: list[float] = []
        burst: list[float] = []
        unfinished = 0
        for task_id, task in self.sim.tasks.items():
            arrived = stats.final_at.get(task_id)
            if task.finish_time is None or arrived is None:
                unfinished += 1
                continue
            (burst if task_id in self.burst else normal).append(max(0.0, arrived - task.finish_time / 1000))
        duplicates = sum(1 for count in stats.result_uploads.values() if count > 1)
        per_second: dict[int, int] = {}
        for at in stats.write_times:
            per_second[int(at)] = per_second.get(int(at), 0) + 1
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return web.json_response(
            {
                "latency": normal,
                "burst_latency": burst,
                "unfinished": unfinished,
                "writes": stats.writes,
                "unchanged_edits": stats.unchanged,
                "peak_writes_per_second": max(per_second.values(), default=0),
                "finals": stats.finals,
                "distinct_finals": len(stats.final_at),
                "duplicate_results": duplicates,
                "rate_limited": stats.rate_limited,
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
    parser.add_argument("--global-limit", type=int, default=0)
    parser.add_argument("--ratelimit-headers", action="store_true", help="announce buckets as Discord does")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    sink = DiscordSink(
        channel_limit=args.channel_limit,
        channel_window=args.channel_window,
        global_limit=args.global_limit,
        ratelimit_headers=args.ratelimit_headers,
    )
    asyncio.run(World(sink).serve())


if __name__ == "__main__":
    main()
