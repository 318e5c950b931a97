"""Benchmark of the tracker at scale (run by hand; not a test).

    python -m bench.tracker --tasks 1000,10000
    python -m bench.tracker --processes 1,2,4 --db sqlite,postgres --tasks 2000   (bench/scale.py)

For each N, a fresh process (so peak RSS is that N's own) starts the world in a child process
(bench/sink.py: the simulated API with clock "time", and a Discord sink with Discord's limits:
50 bot-token requests per second, 5 writes per 5 s per channel, interaction tokens exempt from the
global limit and valid for 15 minutes), writes N in-flight rows with Store.insert_many, times the
start-up (open the store, Tracker.resume with the default settings), then runs the real Tracker loop
with discord.py's real HTTP client against the sink until every task is delivered. Lifecycles:
30-90 s divided by --time-factor, starts staggered over --stagger seconds, one channel holding a
burst of --burst tasks that all finish together, the others --per-channel to a channel; an
--interaction-share of the tasks (all, by default) were started by a slash command, so their
message is an interaction's original response. Then a naive poller (one fetch per task per cycle,
the same client) polls the same N tasks for a few cycles as the baseline.

Each table reports 429s by scope and 401s, invalid requests per 10 minutes, the peak of bot-token
writes in one second against the tracker's budget (--budget), results' p50/p95/p99, and the lower
bound of bench/bound.py (the best any bot polling every --poll-interval could do under the same
limits, from the run's own completion times) with the ratio of the measured p95 to it.

Scenarios: the Ns under Discord's limits; the same Ns with no global limit at the sink
(--unlimited-scenario: the tracker's own cost); tasks outliving their tokens (--outlive-scenario:
a share runs 20 minutes, every duration and the tokens' life divided by --outlive-time-factor, so
the switch to the bot token happens under load); and a burst (--burst-scenario): --burst tasks in
ONE channel finishing together, with the bot token, once with the tracker's pacing and once with it
switched off (the control: it shows the sink does answer 429 when a channel is written too fast).

Peak RSS and CPU are the bot process's alone: the simulator and the sink run in the child process
(their CPU is shown for reference). The sink sends no X-RateLimit headers unless --ratelimit-headers,
so discord.py cannot hold requests back by itself: a 429 count of zero is the tracker's pacing.

Prints tables with a target and a verdict per target (--markdown prints them for the README).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import discord

from bot import render
from bot.models import TaskRecord
from bot.net.addresses import AddressPolicy
from bot.net.fetcher import Fetcher, result_fetcher
from bot.storage.sqlite import Store
from bot.tracking.settings import TrackerSettings
from bot.tracking.tracker import Tracker
from bot.upstream.client import MJClient, UpstreamConfig

log = logging.getLogger(__name__)

#: The tracker as the bot runs it: the benchmark's defaults are its defaults.
TRACKER_DEFAULTS = TrackerSettings()

TOKEN = "bench-token"
#: An interaction token's life on Discord (the sink's, divided by --time-factor).
TOKEN_SECONDS = 900.0
#: Tasks younger than this at completion are held to the latency target (14 minutes: the tracker's
#: interaction window; older ones wait for the bot-token budget).
YOUNG_SECONDS = 840.0
BURST_CHANNEL = 1
USER_ID = 1_200_000_000_000_000_001
GUILD_ID = 1_100_000_000_000_000_001


class BenchClient(discord.Client):
    """REST only: the benchmark has no gateway, so there is no READY to wait for."""

    async def wait_until_ready(self) -> None:
        return None


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


def rows_for(tasks: list[dict[str, Any]], per_channel: int) -> list[TaskRecord]:
    """In-flight rows as the cogs leave them: a posted message that shows the queued task."""
    now = time.time()
    records = []
    others = 0
    for n, task in enumerate(tasks):
        if "channel" in task:  # the sink placed it (bench/sink.py World._tasks)
            channel = int(task["channel"])
        elif task["burst"]:
            channel = BURST_CHANNEL
        else:
            channel = 1000 + others // max(1, per_channel)
            others += 1
        record = TaskRecord(
            id=task["id"],
            action="IMAGINE",
            user_id=USER_ID,
            channel_id=channel,
            guild_id=GUILD_ID,
            message_id=int(task.get("message_id") or 1_500_000_000_000_000_000 + n),
            prompt=f"bench task {n}",
            status="",
            progress=0,
            created_at=now,
            interaction_token=task.get("token"),  # started by a slash command (bench/sink.py)
            interaction_at=task.get("token_at"),
        )
        records.append(replace(record, shown=render.render_task(record).fingerprint()))
    return records


async def start_world(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    options = [
        f"--channel-limit={args.channel_limit}",
        f"--channel-window={args.channel_window}",
        f"--global-limit={args.global_limit}",
        f"--token-seconds={TOKEN_SECONDS / args.time_factor}",
    ]
    if args.ratelimit_headers:
        options.append("--ratelimit-headers")
    world = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sink",
        *options,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert world.stdout is not None
    line = await asyncio.wait_for(world.stdout.readline(), timeout=30)
    return world, json.loads(line)


def current_rss_mb() -> float:
    """Resident memory now (Linux), not the peak."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


async def naive_baseline(upstream: MJClient, ids: list[str], cycles: int, concurrency: int) -> dict[str, float]:
    """What per-task polling costs: one fetch per task per cycle."""
    slots = asyncio.Semaphore(concurrency)

    async def one(task_id: str) -> None:
        async with slots:
            await upstream.fetch(task_id)

    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(cycles):
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.gather(*(one(i) for i in ids))
        cpu.append(time.process_time() - cpu0)
        wall.append(time.perf_counter() - wall0)
    if not cpu:
        return {"requests_per_cycle": float(len(ids)), "cpu_per_cycle": math.nan, "wall_per_cycle": math.nan}
    return {
        "requests_per_cycle": float(len(ids)),
        "cpu_per_cycle": statistics.mean(cpu),
        "wall_per_cycle": statistics.mean(wall),
    }


async def timed_resume(
    client: discord.Client,
    database: Path,
    upstream: MJClient,
    fetcher: Fetcher,
    settings: TrackerSettings,
    give_up_after: float,
) -> tuple[Store, Tracker, int, float | None]:
    """Start-up as the bot does it: open the store, resume. (store, tracker, resumed, seconds);
    seconds is None when resume had not returned after `give_up_after` s (the store is then closed)."""
    started = time.perf_counter()
    store = await Store.open(database)
    tracker = Tracker(client, store, {"default": upstream}, fetcher, settings)
    try:
        resumed = await asyncio.wait_for(tracker.resume(), timeout=give_up_after)
    except TimeoutError:
        await store.close()  # rolls back a claim cut off half-way
        return store, tracker, 0, None
    return store, tracker, resumed, time.perf_counter() - started


async def run_one(args: argparse.Namespace) -> dict[str, Any]:
    n = args.one
    burst_size = min(args.burst, n)
    world, urls = await start_world(args)
    tmp = tempfile.TemporaryDirectory(prefix="mj-bench-")
    database = Path(tmp.name) / "bench.sqlite3"
    try:
        async with aiohttp.ClientSession() as http:
            spec = {
                "n": n,
                "burst": burst_size,
                "time_factor": args.time_factor,
                "stagger": args.stagger,
                "seed": 1,
                "per_channel": args.per_channel,
                "interaction_share": args.interaction_share,
                "long_share": args.long_share,
            }
            async with http.post(urls["sink"] + "/bench/tasks", json=spec) as answer:
                tasks = await answer.json()
            rows = rows_for(tasks, args.per_channel)
            channels = len({row.channel_id for row in rows})
            store = await Store.open(database)
            await store.insert_many(rows)
            await store.close()
            del rows

            discord.http.Route.BASE = urls["sink"] + "/api/v10"
            client = BenchClient(intents=discord.Intents.none())
            await client.login(TOKEN)
            upstream = MJClient(UpstreamConfig(base_url=urls["sim"], api_key="", timeout=30.0))
            settings = TrackerSettings(
                poll_interval=args.poll_interval,
                batch_size=args.batch_size,
                write_budget=args.budget,
                interaction_seconds=YOUNG_SECONDS / args.time_factor,
            )
            fetcher = result_fetcher(AddressPolicy.trusting(urls["sim"]), settings.download_concurrency)
            if args.unpaced:  # the control: no pacing of our own, so the sink's 429s show
                settings = replace(settings, channel_edits=1_000_000, final_reserve=0, write_budget=1_000_000)
            rss_before = current_rss_mb()
            peak_before = peak_rss_mb()

            # Start-up: open the database and resume every in-flight task.
            store, tracker, resumed, resume_seconds = await timed_resume(
                client, database, upstream, fetcher, settings, args.resume_timeout
            )
            if resume_seconds is None:
                raise RuntimeError(f"resuming {n} tasks did not return within {args.resume_timeout:g} s")
            assert resumed == n, f"resumed {resumed} of {n}"

            cpu0, wall0 = time.process_time(), time.perf_counter()
            tracker.start()
            deadline = wall0 + args.deadline
            while time.perf_counter() < deadline:
                await asyncio.sleep(0.5)
                if not tracker.active_ids and not tracker.pending_writes:
                    break
            cpu = time.process_time() - cpu0
            wall = time.perf_counter() - wall0
            await tracker.flush()
            await tracker.stop()
            peak_rss = peak_rss_mb()
            query = {"poll_interval": str(args.poll_interval), "young_seconds": str(YOUNG_SECONDS / args.time_factor)}
            async with http.get(urls["sink"] + "/bench/stats", params=query) as answer:
                stats = await answer.json()
            counters = tracker.counters
            delivered = await store.count_tasks(delivered=True)

            baseline = await naive_baseline(upstream, [t["id"] for t in tasks], args.baseline_cycles, args.concurrency)
            await fetcher.aclose()
            await upstream.aclose()
            await client.close()
            await store.close()
    finally:
        assert world.stdin is not None
        world.stdin.close()
        try:
            await asyncio.wait_for(world.wait(), timeout=10)
        except TimeoutError:
            world.kill()
        tmp.cleanup()

    cycles = max(1, counters.cycles)
    latency, burst = stats["latency"], stats["burst_latency"]
    every, bound, young = stats["all_latency"], stats["bound_latency"], stats["young_latency"]
    scopes = stats["limited_by_scope"]
    limited = stats["rate_limited_channels"]
    upstream_total = stats["upstream"].get("list", 0) + stats["upstream"].get("fetch", 0)
    return {
        "n": n,
        "unpaced": args.unpaced,
        "channels": channels,
        "burst_tasks": burst_size,
        "per_channel": args.per_channel,
        "delivered": delivered,
        "left_in_flight": n - delivered,
        "duplicate_results": stats["duplicate_results"],
        "wall_seconds": wall,
        "cycles": counters.cycles,
        "requests_per_cycle_mean": upstream_total / cycles,
        "requests_per_cycle_max": counters.max_cycle_requests,
        "upstream_requests_tracker": counters.upstream_requests,
        "upstream_requests_sim": upstream_total,
        "stall_reads": counters.stall_reads,
        "request_target": math.ceil(n / args.batch_size),
        "batch_size": args.batch_size,
        "cpu_per_cycle": cpu / cycles,
        "tracker_cpu_per_cycle": counters.cpu_seconds / cycles,
        "cpu_share": cpu / wall if wall else math.nan,
        "world_cpu_seconds": stats["world_cpu_seconds"],
        "world_peak_rss_mb": stats["world_peak_rss_mb"],
        "latency_count": len(latency),
        "latency_p50": percentile(latency, 50),
        "latency_p95": percentile(latency, 95),
        "latency_p99": percentile(latency, 99),
        "latency_max": max(latency) if latency else math.nan,
        "burst_p50": percentile(burst, 50),
        "burst_max": max(burst) if burst else math.nan,
        "burst_size": len(burst),
        "edits_sent": counters.edits_sent,
        "edits_skipped": counters.edits_skipped,
        "progress_coalesced": counters.progress_coalesced,
        "write_failures": counters.write_failures,
        "sink_writes": stats["writes"],
        "unchanged_edits": stats["unchanged_edits"],
        "peak_writes_per_second": stats["peak_writes_per_second"],
        "rate_limited": stats["rate_limited"],
        "rate_limited_burst": limited.get(str(BURST_CHANNEL), 0),
        "limited_global": scopes.get("global", 0),
        "limited_channel": scopes.get("channel", 0),
        "limited_token": scopes.get("token", 0),
        "unauthorized": stats["unauthorized"],
        "invalid_per_10_minutes": stats["invalid_per_10_minutes"],
        "peak_bot_token_per_second": stats["peak_bot_token_per_second"],
        "bot_token_requests": stats["bot_token_requests"],
        "token_writes": stats["token_writes"],
        "budget": args.budget,
        "global_limit": args.global_limit,
        "interaction_share": args.interaction_share,
        "long_share": args.long_share,
        "time_factor": args.time_factor,
        "all_p50": percentile(every, 50),
        "all_p95": percentile(every, 95),
        "all_p99": percentile(every, 99),
        "young_p95": percentile(young, 95),
        "young_count": len(young),
        "bound_p50": percentile(bound, 50),
        "bound_p95": percentile(bound, 95),
        "bound_p99": percentile(bound, 99),
        "progress_shown": stats["progress_shown"],
        "finished": stats["finished"],
        "peak_rss_mb": peak_rss,
        "rss_before_mb": rss_before,
        "peak_before_mb": peak_before,
        "resume_seconds": resume_seconds,
        "naive_requests_per_cycle": baseline["requests_per_cycle"],
        "naive_cpu_per_cycle": baseline["cpu_per_cycle"],
        "naive_wall_per_cycle": baseline["wall_per_cycle"],
        "poll_interval": args.poll_interval,
    }


Row = tuple[str, list[str], str, list[bool | None]]


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("pass" if ok else "FAIL")


def render_table(header: list[str], rows: list[Row], *, markdown: bool) -> str:
    body = [
        [name, *values, target, ", ".join(verdict(v) for v in oks if v is not None)]
        for name, values, target, oks in rows
    ]
    header = [*header, "target", "pass/fail"]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(out)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *body]
    )


def table(results: list[dict[str, Any]], *, markdown: bool) -> str:
    """One column per N; the targets are those of issues 5 and 16 (stated for N = 10,000), checked at
    every N."""
    interval = results[0]["poll_interval"] if results else TRACKER_DEFAULTS.poll_interval
    batch = results[0]["batch_size"] if results else TRACKER_DEFAULTS.batch_size

    def col(fmt: str, key: str) -> list[str]:
        return [fmt.format(r[key]) for r in results]

    def each(test: Any) -> list[bool | None]:
        return [bool(test(r)) for r in results]

    none: list[bool | None] = []
    rows: list[Row] = [
        (
            "channels (burst channel + others)",
            [f"{r['channels']} (1 x {r['burst_tasks']} + {r['channels'] - 1} x {r['per_channel']})" for r in results],
            "",
            none,
        ),
        (
            "delivered / left in flight / duplicate results",
            [f"{r['delivered']} / {r['left_in_flight']} / {r['duplicate_results']}" for r in results],
            "all / 0 / 0",
            each(lambda r: r["left_in_flight"] == 0 and r["duplicate_results"] == 0),
        ),
        (
            "upstream requests per cycle: mean / max",
            [f"{r['requests_per_cycle_mean']:.1f} / {r['requests_per_cycle_max']}" for r in results],
            f"max <= ceil(N/{batch})",
            each(lambda r: r["requests_per_cycle_max"] <= r["request_target"]),
        ),
        ("  ceil(N/batch)", col("{}", "request_target"), "", none),
        ("  naive per-task fetch, per cycle", col("{:.0f}", "naive_requests_per_cycle"), "", none),
        (
            "  ratio naive / tracker (max cycle)",
            [f"{r['naive_requests_per_cycle'] / max(r['requests_per_cycle_max'], 1):.0f}x" for r in results],
            ">= 50x",
            each(lambda r: r["naive_requests_per_cycle"] / max(r["requests_per_cycle_max"], 1) >= 50),
        ),
        (
            "CPU per cycle, whole bot process (s)",
            [f"{r['cpu_per_cycle']:.3f} ({100 * r['cpu_share']:.0f}% of a core)" for r in results],
            "",
            none,
        ),
        ("  of which in the tracker's cycle code (s)", col("{:.4f}", "tracker_cpu_per_cycle"), "", none),
        ("  naive poller, polling only (s)", col("{:.3f}", "naive_cpu_per_cycle"), "", none),
        ("  naive poller, wall time per cycle (s)", col("{:.1f}", "naive_wall_per_cycle"), "", none),
        (
            "  ratio naive / tracker",
            [f"{r['naive_cpu_per_cycle'] / max(r['cpu_per_cycle'], 1e-9):.1f}x" for r in results],
            "",
            none,
        ),
        (
            "results: completion-to-edit p50 / p95 / p99, all tasks (s)",
            [f"{r['all_p50']:.2f} / {r['all_p95']:.2f} / {r['all_p99']:.2f}" for r in results],
            "",
            none,
        ),
        (
            "  p95 of tasks younger than 14 min at completion (s)",
            [f"{r['young_p95']:.2f} ({r['young_count']} tasks)" for r in results],
            f"<= {interval + 1:g}",
            each(lambda r: not r["young_count"] or r["young_p95"] <= r["poll_interval"] + 1),
        ),
        (
            "  lower bound: Discord's limits, ideal poller, p50 / p95 / p99 (s)",
            [f"{r['bound_p50']:.2f} / {r['bound_p95']:.2f} / {r['bound_p99']:.2f}" for r in results],
            "",
            none,
        ),
        (
            "  measured p95 / lower-bound p95",
            [f"{r['all_p95'] / max(r['bound_p95'], 1e-9):.2f}x" for r in results],
            "<= 1.5x",
            each(lambda r: r["all_p95"] <= 1.5 * r["bound_p95"]),
        ),
        (
            "  tasks not in the burst: p50 / p95 / p99 (s)",
            [f"{r['latency_p50']:.2f} / {r['latency_p95']:.2f} / {r['latency_p99']:.2f}" for r in results],
            "",
            none,
        ),
        (
            "burst channel: results / p50 / last (s)",
            [f"{r['burst_size']} / {r['burst_p50']:.1f} / {r['burst_max']:.1f}" for r in results],
            "paced",
            none,
        ),
        (
            "tasks that showed a progress state",
            [f"{r['progress_shown']} of {r['finished']}" for r in results],
            "all",
            each(lambda r: r["progress_shown"] == r["finished"]),
        ),
        (
            "Discord writes sent / reads skipped unchanged / coalesced",
            [f"{r['edits_sent']} / {r['edits_skipped']} / {r['progress_coalesced']}" for r in results],
            "",
            none,
        ),
        (
            "  edits that changed nothing (checked by the sink)",
            col("{}", "unchanged_edits"),
            "0",
            each(lambda r: r["unchanged_edits"] == 0),
        ),
        (
            "  through interaction tokens / with the bot token",
            [f"{r['token_writes']} / {r['bot_token_requests']}" for r in results],
            "",
            none,
        ),
        (
            "  peak bot-token writes in one second (budget)",
            [f"{r['peak_bot_token_per_second']} ({r['budget']})" for r in results],
            "<= budget",
            each(lambda r: r["peak_bot_token_per_second"] <= r["budget"]),
        ),
        (
            "429s: global / channel / interaction token; 401s",
            [
                f"{r['limited_global']} / {r['limited_channel']} / {r['limited_token']}; {r['unauthorized']}"
                for r in results
            ],
            "0; 0",
            each(lambda r: r["rate_limited"] == 0 and r["unauthorized"] == 0),
        ),
        (
            "  invalid requests (401/403/429), most in 10 minutes",
            col("{}", "invalid_per_10_minutes"),
            "0 (ban: 10,000)",
            each(lambda r: r["invalid_per_10_minutes"] == 0),
        ),
        (
            "peak RSS of the bot process, MB (before resume)",
            [f"{r['peak_rss_mb']:.0f} ({r['rss_before_mb']:.0f})" for r in results],
            "<= 200",
            each(lambda r: r["peak_rss_mb"] <= 200),
        ),
        (
            "resume N tasks at start-up (s)",
            [f"{r['resume_seconds']:.2f}" for r in results],
            "<= 2",
            each(lambda r: r["resume_seconds"] <= 2),
        ),
        ("cycles / wall time (s)", [f"{r['cycles']} / {r['wall_seconds']:.0f}" for r in results], "", none),
        (
            "simulator + sink process: CPU (s) / peak RSS (MB)",
            [f"{r['world_cpu_seconds']:.0f} / {r['world_peak_rss_mb']:.0f}" for r in results],
            "",
            none,
        ),
    ]
    return render_table(["", *[f"N={r['n']:,}" for r in results]], rows, markdown=markdown)


def burst_table(paced: dict[str, Any], unpaced: dict[str, Any] | None, *, markdown: bool) -> str:
    results = [paced] if unpaced is None else [paced, unpaced]
    none: list[bool | None] = []
    rows: list[Row] = [
        (
            "delivered / duplicate results",
            [f"{r['delivered']} of {r['n']} / {r['duplicate_results']}" for r in results],
            "all / 0",
            [paced["left_in_flight"] == 0 and paced["duplicate_results"] == 0],
        ),
        ("429s received", [f"{r['rate_limited']}" for r in results], "0 (paced)", [paced["rate_limited"] == 0]),
        ("Discord writes (accepted by the sink)", [f"{r['sink_writes']}" for r in results], "", none),
        (
            "results: p50 / last after completion (s)",
            [f"{r['burst_p50']:.1f} / {r['burst_max']:.1f}" for r in results],
            "",
            none,
        ),
    ]
    header = ["", f"{paced['n']} tasks, 1 channel, tracker pacing"]
    if unpaced is not None:
        header.append("control: pacing off")
    return render_table(header, rows, markdown=markdown)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--tasks",
        help="comma-separated N values (default 1000,10000; '' for the burst only; with --processes one N, 2000)",
    )
    parser.add_argument("--time-factor", type=float, default=1.0, help="divides the 30-90 s lifecycles")
    parser.add_argument("--stagger", type=float, default=30.0, help="starts spread over this many seconds")
    parser.add_argument("--burst", type=int, default=100, help="tasks in one channel that finish together")
    parser.add_argument("--per-channel", type=int, default=10, help="other tasks per channel")
    parser.add_argument("--poll-interval", type=float, default=TRACKER_DEFAULTS.poll_interval)
    parser.add_argument("--batch-size", type=int, default=TRACKER_DEFAULTS.batch_size)
    parser.add_argument("--channel-limit", type=int, default=5, help="Discord writes per window per channel")
    parser.add_argument("--channel-window", type=float, default=5.0)
    parser.add_argument(
        "--global-limit", type=int, default=50, help="the sink's bot-token requests per second (0: none)"
    )
    parser.add_argument("--budget", type=int, default=45, help="the tracker's bot-token writes per second")
    parser.add_argument(
        "--interaction-share", type=float, default=1.0, help="share of tasks started by a slash command (a token)"
    )
    parser.add_argument("--long-share", type=float, default=0.0, help="share of tasks that run 20 minutes")
    parser.add_argument(
        "--unlimited-scenario",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run each N with no global limit at the sink (the tracker's own cost)",
    )
    parser.add_argument(
        "--outlive-scenario",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run --outlive-tasks tasks, --outlive-share of them 20 minutes long (their tokens expire)",
    )
    parser.add_argument("--outlive-tasks", type=int, default=1000)
    parser.add_argument("--outlive-share", type=float, default=0.2)
    parser.add_argument("--outlive-time-factor", type=float, default=10.0, help="time factor of that scenario")
    parser.add_argument(
        "--ratelimit-headers",
        action="store_true",
        help="the sink announces its buckets (discord.py then holds requests back by itself)",
    )
    parser.add_argument("--baseline-cycles", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=32, help="naive poller's parallel fetches")
    parser.add_argument("--deadline", type=float, default=900.0, help="give up on one N after this many seconds")
    parser.add_argument("--resume-timeout", type=float, default=30.0, help="resume that takes longer has hung")
    parser.add_argument(
        "--burst-scenario",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run --burst tasks in one channel, paced and (control) unpaced",
    )
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument(
        "--processes",
        help="comma-separated process counts: run bench/scale.py instead (several trackers sharing the work)",
    )
    parser.add_argument("--db", default="sqlite,postgres", help="with --processes: sqlite, postgres or both")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--unpaced", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_child(args: argparse.Namespace, n: int, *extra: str) -> dict[str, Any]:
    options = [
        f"--time-factor={args.time_factor}",
        f"--stagger={args.stagger}",
        f"--per-channel={args.per_channel}",
        f"--poll-interval={args.poll_interval}",
        f"--batch-size={args.batch_size}",
        f"--channel-limit={args.channel_limit}",
        f"--channel-window={args.channel_window}",
        f"--global-limit={args.global_limit}",
        f"--budget={args.budget}",
        f"--interaction-share={args.interaction_share}",
        f"--long-share={args.long_share}",
        f"--baseline-cycles={args.baseline_cycles}",
        f"--concurrency={args.concurrency}",
        f"--deadline={args.deadline}",
        f"--resume-timeout={args.resume_timeout}",
    ]
    if args.ratelimit_headers:
        options.append("--ratelimit-headers")
    done = subprocess.run(
        [sys.executable, "-m", "bench.tracker", *options, *extra, f"--one={n}"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.processes:
        from bench import scale  # imports this module: loaded only when asked for

        tasks = [v for v in (args.tasks or "").split(",") if v.strip()]
        scale.main(["--processes", args.processes, "--db", args.db, *(["--tasks", tasks[-1]] if tasks else [])])
        return
    if args.tasks is None:
        args.tasks = "1000,10000"
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(logging.ERROR)
    logging.getLogger("bot.tracking").setLevel(logging.ERROR)  # 429 retries would flood the control run
    if args.one is not None:
        print(json.dumps(asyncio.run(run_one(args))), flush=True)
        return
    counts = [int(v) for v in args.tasks.split(",") if v.strip()]
    tables: list[tuple[str, list[dict[str, Any]]]] = []
    results = []
    for n in counts:
        print(f"N={n:,}: running...", file=sys.stderr, flush=True)
        results.append(run_child(args, n, f"--burst={args.burst}"))
    if results:
        tables.append((f"Discord's limits (global {args.global_limit}/s, tracker budget {args.budget}/s)", results))
    if args.unlimited_scenario and args.global_limit > 0 and counts:
        unlimited = []
        for n in counts:
            print(f"N={n:,}, no global limit: running...", file=sys.stderr, flush=True)
            unlimited.append(run_child(args, n, f"--burst={args.burst}", "--global-limit=0"))
        tables.append(("No global limit at the sink (the tracker's own cost)", unlimited))
    if args.outlive_scenario and args.outlive_tasks > 0:
        factor = args.outlive_time_factor
        print(f"{args.outlive_tasks:,} tasks outliving their tokens: running...", file=sys.stderr, flush=True)
        outlive = run_child(
            args,
            args.outlive_tasks,
            f"--burst={args.burst}",
            f"--long-share={args.outlive_share}",
            f"--time-factor={factor}",
            f"--stagger={args.stagger / factor}",
        )
        title = (
            f"Tasks outliving their tokens: {100 * args.outlive_share:.0f}% run 20 minutes, the rest 30-90 s,"
            f" every duration (tokens' 15 minutes too) divided by {factor:g}"
        )
        tables.append((title, [outlive]))
    paced = unpaced = None
    if args.burst_scenario and args.burst > 0:
        print(f"burst of {args.burst} in one channel: running (paced, then unpaced)...", file=sys.stderr, flush=True)
        extra = (f"--burst={args.burst}", "--interaction-share=0")  # the bot token's channel pacing
        paced = run_child(args, args.burst, *extra)
        unpaced = run_child(args, args.burst, *extra, "--unpaced")
    for title, rows in tables:
        print(f"### {title}\n" if args.markdown else f"{title}:")
        print(table(rows, markdown=args.markdown))
        print()
    if paced is not None:
        print(burst_table(paced, unpaced, markdown=args.markdown))


if __name__ == "__main__":
    main()
