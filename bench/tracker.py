"""Benchmark of the tracker at scale (run by hand; not a test).

    python -m bench.tracker --tasks 1000,10000

For each N, a fresh process (so peak RSS is that N's own) starts the world in a child process
(bench/sink.py: the simulated API with clock "time", and a Discord sink with real per-channel
buckets), writes N in-flight rows with Store.insert_many, times the start-up (open the store,
Tracker.resume), then runs the real Tracker loop with discord.py's real HTTP client against the
sink until every task is delivered. Lifecycles: 30-90 s divided by --time-factor, starts staggered
over --stagger seconds, one channel holding a burst of --burst tasks that all finish together, the
others --per-channel to a channel. Then a naive poller (one fetch per task per cycle, the same
client) polls the same N tasks for a few cycles as the baseline.

Prints a table (and --markdown prints it for the README).
"""

from __future__ import annotations

import argparse
import asyncio
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
from bot.client import MJClient, UpstreamConfig
from bot.images import ImageFetcher
from bot.store import Store, TaskRecord
from bot.tracker import Tracker, TrackerSettings

log = logging.getLogger(__name__)

TOKEN = "bench-token"
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
        if task["burst"]:
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
            message_id=1_500_000_000_000_000_000 + n,
            prompt=f"bench task {n}",
            status="",
            progress=0,
            created_at=now,
        )
        records.append(replace(record, shown=render.render_task(record).fingerprint()))
    return records


async def start_world(args: argparse.Namespace) -> tuple[asyncio.subprocess.Process, dict[str, str]]:
    world = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sink",
        "--channel-limit",
        str(args.channel_limit),
        "--channel-window",
        str(args.channel_window),
        "--global-limit",
        str(args.global_limit),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert world.stdout is not None
    line = await asyncio.wait_for(world.stdout.readline(), timeout=30)
    return world, json.loads(line)


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
    return {"requests_per_cycle": float(len(ids)), "cpu_per_cycle": statistics.mean(cpu), "wall_per_cycle": max(wall)}


async def run_one(args: argparse.Namespace) -> dict[str, Any]:
    n = args.one
    world, urls = await start_world(args)
    tmp = tempfile.TemporaryDirectory(prefix="mj-bench-")
    database = Path(tmp.name) / "bench.sqlite3"
    try:
        async with aiohttp.ClientSession() as http:
            spec = {
                "n": n,
                "burst": min(args.burst, n),
                "time_factor": args.time_factor,
                "stagger": args.stagger,
                "seed": 1,
            }
            async with http.post(urls["sink"] + "/bench/tasks", json=spec) as answer:
                tasks = await answer.json()
            store = await Store.open(database)
            await store.insert_many(rows_for(tasks, args.per_channel))
            await store.close()

            discord.http.Route.BASE = urls["sink"] + "/api/v10"
            client = BenchClient(intents=discord.Intents.none())
            await client.login(TOKEN)
            upstream = MJClient(UpstreamConfig(base_url=urls["sim"], api_key="", timeout=30.0))
            fetcher = ImageFetcher()
            settings = TrackerSettings(
                poll_interval=args.poll_interval,
                batch_size=args.batch_size,
                global_edits=max(1, args.global_limit - 5) if args.global_limit else 0,
            )

            # Start-up: open the database and resume every in-flight task.
            started = time.perf_counter()
            store = await Store.open(database)
            tracker = Tracker(client, store, {"default": upstream}, fetcher, settings)
            resumed = await tracker.resume()
            resume_seconds = time.perf_counter() - started
            assert resumed == n

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
            peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            async with http.get(urls["sink"] + "/bench/stats") as answer:
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
    return {
        "n": n,
        "delivered": delivered,
        "left_in_flight": n - delivered,
        "duplicate_results": stats["duplicate_results"],
        "wall_seconds": wall,
        "cycles": counters.cycles,
        "requests_per_cycle_mean": stats["upstream"].get("list", 0) / cycles,
        "requests_per_cycle_max": counters.max_cycle_requests,
        "request_target": math.ceil(n / args.batch_size),
        "cpu_per_cycle": cpu / cycles,
        "latency_p50": percentile(latency, 50),
        "latency_p95": percentile(latency, 95),
        "latency_p99": percentile(latency, 99),
        "burst_p50": percentile(burst, 50),
        "burst_max": max(burst) if burst else math.nan,
        "burst_size": len(burst),
        "edits_sent": counters.edits_sent,
        "edits_skipped": counters.edits_skipped,
        "progress_coalesced": counters.progress_coalesced,
        "sink_writes": stats["writes"],
        "rate_limited": stats["rate_limited"],
        "peak_rss_mb": peak_rss_mb,
        "resume_seconds": resume_seconds,
        "naive_requests_per_cycle": baseline["requests_per_cycle"],
        "naive_cpu_per_cycle": baseline["cpu_per_cycle"],
        "naive_wall_per_cycle": baseline["wall_per_cycle"],
        "poll_interval": args.poll_interval,
    }


def table(results: list[dict[str, Any]], *, markdown: bool) -> str:
    """One column per N; the targets are for N = 10,000 on a 2-core machine."""
    interval = results[0]["poll_interval"] if results else 3.0

    def col(fmt: str, key: str) -> list[str]:
        return [fmt.format(r[key]) for r in results]

    lines: list[tuple[str, list[str], str]] = [
        (
            "delivered / left in flight / duplicate results",
            [f"{r['delivered']} / {r['left_in_flight']} / {r['duplicate_results']}" for r in results],
            "all / 0 / 0",
        ),
        (
            "upstream requests per cycle: mean / max",
            [f"{r['requests_per_cycle_mean']:.1f} / {r['requests_per_cycle_max']}" for r in results],
            "<= ceil(N/100)",
        ),
        ("  naive per-task fetch, per cycle", col("{:.0f}", "naive_requests_per_cycle"), ""),
        (
            "  ratio naive / tracker (mean)",
            [f"{r['naive_requests_per_cycle'] / max(r['requests_per_cycle_mean'], 1e-9):.0f}x" for r in results],
            ">= 50x",
        ),
        ("CPU per cycle, whole bot process (s)", col("{:.3f}", "cpu_per_cycle"), ""),
        ("  naive poller, polling only (s)", col("{:.3f}", "naive_cpu_per_cycle"), ""),
        (
            "  ratio naive / tracker",
            [f"{r['naive_cpu_per_cycle'] / max(r['cpu_per_cycle'], 1e-9):.1f}x" for r in results],
            "",
        ),
        (
            "completion-to-edit latency p50 / p95 / p99 (s)",
            [f"{r['latency_p50']:.2f} / {r['latency_p95']:.2f} / {r['latency_p99']:.2f}" for r in results],
            f"p95 <= {interval + 1:g}",
        ),
        (
            "burst channel: results / p50 / last (s)",
            [f"{r['burst_size']} / {r['burst_p50']:.1f} / {r['burst_max']:.1f}" for r in results],
            "paced, no 429",
        ),
        (
            "Discord writes sent / skipped unchanged / coalesced",
            [f"{r['edits_sent']} / {r['edits_skipped']} / {r['progress_coalesced']}" for r in results],
            "0 unchanged edits",
        ),
        ("429s received", col("{}", "rate_limited"), "0"),
        ("peak RSS (MB)", col("{:.0f}", "peak_rss_mb"), "<= 200"),
        ("resume N tasks at start-up (s)", col("{:.2f}", "resume_seconds"), "<= 2"),
        ("cycles / wall time (s)", [f"{r['cycles']} / {r['wall_seconds']:.0f}" for r in results], ""),
    ]
    header = ["", *[f"N={r['n']:,}" for r in results], "target at 10,000"]
    body = [[name, *values, target] for name, values, target in lines]
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(out)
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in [header, *body]
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="1000,10000", help="comma-separated N values (default 1000,10000)")
    parser.add_argument("--time-factor", type=float, default=1.0, help="divides the 30-90 s lifecycles")
    parser.add_argument("--stagger", type=float, default=30.0, help="starts spread over this many seconds")
    parser.add_argument("--burst", type=int, default=100, help="tasks in one channel that finish together")
    parser.add_argument("--per-channel", type=int, default=10, help="other tasks per channel")
    parser.add_argument("--poll-interval", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--channel-limit", type=int, default=5, help="Discord writes per window per channel")
    parser.add_argument("--channel-window", type=float, default=5.0)
    parser.add_argument("--global-limit", type=int, default=0, help="bot-wide writes per second (0: none)")
    parser.add_argument("--baseline-cycles", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32, help="naive poller's parallel fetches")
    parser.add_argument("--deadline", type=float, default=900.0, help="give up on one N after this many seconds")
    parser.add_argument("--markdown", action="store_true")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("discord").setLevel(logging.ERROR)
    if args.one is not None:
        print(json.dumps(asyncio.run(run_one(args))), flush=True)
        return
    options = [
        f"--time-factor={args.time_factor}",
        f"--stagger={args.stagger}",
        f"--burst={args.burst}",
        f"--per-channel={args.per_channel}",
        f"--poll-interval={args.poll_interval}",
        f"--batch-size={args.batch_size}",
        f"--channel-limit={args.channel_limit}",
        f"--channel-window={args.channel_window}",
        f"--global-limit={args.global_limit}",
        f"--baseline-cycles={args.baseline_cycles}",
        f"--concurrency={args.concurrency}",
        f"--deadline={args.deadline}",
    ]
    results = []
    for n in (int(v) for v in args.tasks.split(",") if v.strip()):
        print(f"N={n:,}: running...", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "bench.tracker", *options, f"--one={n}"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        results.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(table(results, markdown=args.markdown))


if __name__ == "__main__":
    main()
