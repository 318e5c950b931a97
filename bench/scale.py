"""Benchmark of the tracker shared by several OS processes through task leases (run by hand; not a test).

    python -m bench.scale --processes 1,2,4 --db sqlite,postgres --tasks 2000

For each (db, P): a fresh database (a SQLite file, or a new database on one private PostgreSQL
started once from bench/pg.py); this process runs the fake midjourney-proxy (clock "time", tasks of
5-15 s) and the Discord sink of bench/sink.py; N undelivered rows are written, each worker's slice
leased to it (as if each process had submitted the tasks of its own shards' channels); then P worker
processes (`python -m bench.scale --worker ...`: own store, discord.py client, MJClient, Tracker)
resume their tasks and track them. With P >= 2, worker w0 is SIGKILLed a few seconds in and the
others must take its tasks over through lease expiry.

Measured: tasks delivered per second (N / seconds from all workers ready to the last final result
at the sink), completion-to-edit p95 (simulator finish time vs. the sink's arrival of the result,
one wall clock), takeover (kill -> every task w0 held is leased by another worker / -> first final
result of one of them), duplicates (a task's result uploaded more than once) and lost tasks (no
final result at the sink). Writes the Markdown table to /tmp/scale_table.md too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import random
import signal
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import discord
from aiohttp import web

from bench.bound import Finished, Limits, lower_bound
from bench.sink import DiscordSink, peak_per_second
from bench.tracker import TOKEN, BenchClient, percentile, rows_for
from bot.net.addresses import AddressPolicy
from bot.net.fetcher import result_fetcher
from bot.storage.factory import open_store
from bot.tracking.settings import TrackerSettings
from bot.tracking.tracker import Tracker
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.simulator import SimulatedProxy

log = logging.getLogger(__name__)

TABLE_PATH = Path("/tmp/scale_table.md")
SEED_LEASE = 120.0  # the seeded slices stay with their worker until it renews them with its own lease


# ---- worker process -------------------------------------------------------------------------------


async def worker(spec: dict[str, Any]) -> None:
    """One bot process's tracking: resume our leased slice, track until the parent closes stdin."""
    fmt = f"%(asctime)s {spec['owner']} %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=spec["log_level"], format=fmt, force=True)
    logging.getLogger("discord").setLevel(logging.ERROR)
    discord.http.Route.BASE = spec["sink"] + "/api/v10"
    client = BenchClient(intents=discord.Intents.none())
    await client.login(TOKEN)
    upstream = MJClient(UpstreamConfig(base_url=spec["sim"], api_key="", timeout=30.0))
    store = await open_store(spec["target"], owner=spec["owner"], lease_seconds=spec["lease_seconds"])
    # claim_batch above the slice: a survivor takes a dead worker's whole slice in one claim.
    settings = TrackerSettings(poll_interval=spec["poll_interval"], claim_batch=spec["claim_batch"])
    fetcher = result_fetcher(AddressPolicy.trusting(spec["sim"]), settings.download_concurrency)  # as MJBot does
    tracker = Tracker(client, store, {"default": upstream}, fetcher, settings)
    started = time.monotonic()
    resumed = await tracker.resume()
    tracker.start()
    print(json.dumps({"ready": resumed}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent says stop
    with contextlib.suppress(TimeoutError):  # as MJBot.close does: let the writes in flight land first
        await asyncio.wait_for(tracker.drain(), 10.0)
    await tracker.flush()
    await tracker.stop()
    counters = tracker.counters
    print(
        json.dumps(
            {
                "owner": spec["owner"],
                "resumed": resumed,
                "edits_sent": counters.edits_sent,
                "write_failures": counters.write_failures,
                "cycles": counters.cycles,
                "cpu_seconds": time.process_time(),
                "wall_seconds": time.monotonic() - started,
            }
        ),
        flush=True,
    )
    await store.close()
    await fetcher.aclose()
    await upstream.aclose()
    await client.close()


# ---- database probes (the parent's own view, independent of the bot's store) ----------------------


class Probe:
    """Reads lease owners straight from the database, to time the takeover."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self.target.startswith("postgresql://"):
            import asyncpg

            self._pg = await asyncpg.connect(self.target)
        else:
            self._sqlite = sqlite3.connect(self.target, timeout=10.0)

    async def rows(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            return [tuple(r) for r in await self._pg.fetch(sql.replace("?", "$1"), *params)]
        assert self._sqlite is not None
        return self._sqlite.execute(sql, params).fetchall()

    async def held_by(self, owner: str) -> set[str]:
        found = await self.rows("SELECT id FROM tasks WHERE delivered = 0 AND lease_owner = ?", owner)
        return {str(r[0]) for r in found}

    async def delivered(self) -> int:
        return int((await self.rows("SELECT count(*) FROM tasks WHERE delivered = 1"))[0][0])

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._sqlite is not None:
            self._sqlite.close()


# ---- one configuration ----------------------------------------------------------------------------


async def start_world(args: argparse.Namespace) -> tuple[SimulatedProxy, DiscordSink, web.AppRunner, str, str]:
    """Simulator and sink in this process, so the parent sees each task's finish and arrival times."""
    sim = SimulatedProxy(flavor="relay", clock="time", progress_steps=3, image_size=64, seed=7)
    sim_url = await sim.start()
    sink = DiscordSink(channel_limit=args.channel_limit, channel_window=args.channel_window)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    sink.routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return sim, sink, runner, sim_url, f"http://{host}:{port}"


async def seed(target: str, tasks: list[dict[str, Any]], processes: int, per_channel: int) -> None:
    """N undelivered rows; worker i's contiguous slice (whole channels) leased to owner w<i>."""
    records = rows_for(tasks, per_channel)
    size = math.ceil(len(records) / processes)
    for i in range(processes):
        store = await open_store(target, owner=f"w{i}", lease_seconds=SEED_LEASE)
        await store.insert_many(records[i * size : (i + 1) * size])
        await store.close()


async def spawn(spec: dict[str, Any]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.scale",
        "--worker",
        json.dumps(spec),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def run_config(db: str, processes: int, args: argparse.Namespace, pg: Any) -> dict[str, Any]:
    n = args.tasks
    tmp = tempfile.TemporaryDirectory(prefix="mj-scale-")
    target = pg.create_database() if db == "postgres" else str(Path(tmp.name) / "bench.sqlite3")
    world_cpu0 = time.process_time()  # this process: the simulator, the sink and the probe
    sim, sink, runner, sim_url, sink_url = await start_world(args)
    rng = random.Random(1)
    steps = sim.progress_steps + 2  # NOT_START -> SUBMITTED -> progress... -> SUCCESS
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        duration = rng.uniform(args.min_seconds, args.max_seconds)
        start_in = args.startup + rng.uniform(0.0, args.stagger)
        task_id = sim.add_task(f"bench task {i}", step_seconds=duration / steps, start_in=start_in)
        task: dict[str, Any] = {"id": task_id, "burst": False, "channel": 1000 + i // max(1, args.per_channel)}
        if rng.random() < args.interaction_share:  # started by a slash command: its token edits the message
            task["token"], task["message_id"] = sink.issue(task_id, task["channel"])
            task["token_at"] = time.time()
        else:
            task["message_id"] = sink.message_for(task_id, task["channel"])
        tasks.append(task)
    await seed(target, tasks, processes, args.per_channel)

    spec = {"sink": sink_url, "sim": sim_url, "target": target, "lease_seconds": args.lease_seconds}
    spec["poll_interval"] = args.poll_interval
    spec["claim_batch"] = max(1000, n + 1)
    spec["log_level"] = args.worker_log
    workers = [await spawn({**spec, "owner": f"w{i}"}) for i in range(processes)]
    probe = Probe(target)
    await probe.open()
    result: dict[str, Any] = {"db": db, "processes": processes, "tasks": n}
    try:
        for proc in workers:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
            json.loads(line)
        ready = time.time()
        kill_at = ready + args.kill_after if processes >= 2 else math.inf
        killed_at: float | None = None
        held: set[str] = set()
        claimed_after: float | None = None
        deadline = ready + args.deadline
        while time.time() < deadline and len(sink.stats.final_at) < n:
            await asyncio.sleep(0.1)
            sim.requests.clear()  # the simulator's request log would grow without end
            now = time.time()
            if killed_at is None and now >= kill_at:
                held = await probe.held_by("w0")
                workers[0].send_signal(signal.SIGKILL)
                killed_at = time.time()
            elif killed_at is not None and claimed_after is None:
                if not await probe.held_by("w0"):
                    claimed_after = time.time() - killed_at
        last_final = max(sink.stats.final_at.values(), default=time.time())
        result["seconds"] = last_final - ready

        # Let the live workers save what they delivered, then read their totals.
        reports = []
        for proc in workers[1:] if killed_at is not None else workers:
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.close()
            with contextlib.suppress(TimeoutError):
                out = await asyncio.wait_for(proc.stdout.read(), timeout=30)
                reports += [json.loads(x) for x in out.decode().splitlines() if x.startswith("{")]
        result["db_delivered"] = await probe.delivered()
    finally:
        for proc in workers:
            if proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), timeout=10)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await probe.close()
        await runner.cleanup()
        await sim.stop()
        tmp.cleanup()

    stats = sink.stats
    latency = []
    finished = []
    made = {t["id"]: t for t in tasks}
    for task_id, sim_task in sim.tasks.items():
        arrived = stats.final_at.get(task_id)
        if sim_task.finish_time is not None and arrived is not None:
            latency.append(max(0.0, arrived - sim_task.finish_time / 1000))
            info = made[task_id]
            finished.append(Finished(task_id, sim_task.finish_time / 1000, info["channel"], info.get("token_at")))
    limits = Limits(
        poll_interval=args.poll_interval,
        global_limit=sink.global_limit,
        channel_limit=sink.channel_limit,
        channel_window=sink.channel_window,
        token_seconds=sink.token_seconds,
    )
    bound = list(lower_bound(finished, limits).values())
    others = [
        stats.final_at[t] - killed_at for t in held if killed_at is not None and stats.final_at.get(t, 0) > killed_at
    ]
    result.update(
        {
            "per_second": n / max(result["seconds"], 1e-9),
            "p95": percentile(latency, 95),
            "held": len(held),
            "claimed_after": claimed_after,
            "first_edit_after": min(others) if others else None,
            "duplicates": sum(1 for count in stats.result_uploads.values() if count > 1),
            "lost": n - len(stats.final_at),
            "rate_limited": stats.rate_limited,
            "unauthorized": stats.unauthorized,
            "bound_p95": percentile(bound, 95),
            "peak_bot_token_per_second": peak_per_second(stats.bot_token_at),
            "token_writes": stats.token_writes,
            "bot_token_requests": len(stats.bot_token_at),
            "reports": reports,
            "world_cpu": time.process_time() - world_cpu0,
        }
    )
    return result


# ---- table and main -------------------------------------------------------------------------------


def takeover(r: dict[str, Any]) -> str:
    if r["processes"] < 2:
        return "n/a"
    claimed = "never" if r["claimed_after"] is None else f"{r['claimed_after']:.1f} s"
    edit = "none" if r["first_edit_after"] is None else f"{r['first_edit_after']:.1f} s"
    return f"{r['held']} tasks: claimed {claimed}, first edit {edit}"


def cpu_shares(r: dict[str, Any]) -> str:
    shares = [100 * p["cpu_seconds"] / max(p["wall_seconds"], 1e-9) for p in r["reports"] if "cpu_seconds" in p]
    return ", ".join(f"{share:.0f}%" for share in shares) or "n/a"


def table(results: list[dict[str, Any]]) -> str:
    header = (
        "| db | processes | tasks | tasks/s | completion-to-edit p95 (lower bound, ratio) | takeover after kill "
        "| duplicates | lost | marked delivered | 429s / 401s | writes: interaction / bot token (peak per second) "
        "| CPU per surviving process (% of a core) / simulator + sink |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = r["p95"] / max(r["bound_p95"], 1e-9)
        lines.append(
            f"| {r['db']} | {r['processes']} | {r['tasks']} | {r['per_second']:.0f} "
            f"| {r['p95']:.2f} s ({r['bound_p95']:.2f} s, {ratio:.2f}x) "
            f"| {takeover(r)} | {r['duplicates']} | {r['lost']} | {r['db_delivered']} "
            f"| {r['rate_limited']} / {r['unauthorized']} "
            f"| {r['token_writes']} / {r['bot_token_requests']} ({r['peak_bot_token_per_second']}) "
            f"| {cpu_shares(r)} / {r['world_cpu']:.0f} s |"
        )
    return "\n".join(lines)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processes", default="1,2,4", help="comma-separated worker counts")
    parser.add_argument("--db", default="sqlite,postgres", help="comma-separated: sqlite, postgres")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--per-channel", type=int, default=5, help="tasks per channel (Discord pacing per channel)")
    parser.add_argument(
        "--interaction-share", type=float, default=1.0, help="share of tasks started by a slash command (a token)"
    )
    parser.add_argument("--min-seconds", type=float, default=5.0, help="shortest task lifecycle")
    parser.add_argument("--max-seconds", type=float, default=15.0, help="longest task lifecycle")
    parser.add_argument("--startup", type=float, default=5.0, help="tasks start this long after creation")
    parser.add_argument("--stagger", type=float, default=3.0, help="then spread over this many seconds")
    parser.add_argument("--lease-seconds", type=float, default=3.0)
    parser.add_argument("--poll-interval", type=float, default=1.0)
    parser.add_argument("--kill-after", type=float, default=8.0, help="SIGKILL w0 this long after all are ready")
    parser.add_argument("--channel-limit", type=int, default=5)
    parser.add_argument("--channel-window", type=float, default=5.0)
    parser.add_argument("--deadline", type=float, default=75.0, help="give up on one configuration after this")
    parser.add_argument("--worker-log", default="ERROR", help="workers' log level (their stderr is ours)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


async def run_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    dbs = [d.strip() for d in args.db.split(",") if d.strip()]
    counts = [int(p) for p in args.processes.split(",") if p.strip()]
    pg = None
    if "postgres" in dbs:
        from bench.pg import PostgresServer

        pg = PostgresServer().start()
    results = []
    try:
        for db in dbs:
            for processes in counts:
                print(f"{db} x{processes}: running...", file=sys.stderr, flush=True)
                began = time.monotonic()
                result = await run_config(db, processes, args, pg)
                extra = {k: result[k] for k in ("seconds", "db_delivered", "rate_limited", "reports")}
                print(f"  done in {time.monotonic() - began:.0f} s: {json.dumps(extra)}", file=sys.stderr, flush=True)
                results.append(result)
    finally:
        if pg is not None:
            pg.stop()
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.worker is not None:
        asyncio.run(worker(json.loads(args.worker)))
        return
    logging.getLogger("aiohttp.server").setLevel(logging.CRITICAL)  # the killed worker's cut-off upload
    text = table(asyncio.run(run_all(args)))
    TABLE_PATH.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
