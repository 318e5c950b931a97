"""The benchmark's Discord (bench/sink.py) enforces Discord's limits, and its lower bound
(bench/bound.py) follows them: the figures of README "Performance" rest on both."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bench.bound import Finished, Limits, lower_bound, percentile
from bench.sink import BOT_ID, DiscordSink, SinkStats, most_in_window

# ---- lower bound (pure) ---------------------------------------------------------------------------


def test_bound_paces_one_channel_with_the_bot_token() -> None:
    tasks = [Finished(str(i), 100.0, 1, None) for i in range(12)]
    latency = sorted(lower_bound(tasks, Limits(poll_interval=0.0)).values())
    assert latency == [0.0] * 5 + [5.0] * 5 + [10.0] * 2


def test_bound_holds_bot_token_writes_to_the_global_limit() -> None:
    tasks = [Finished(str(i), 100.0, i, None) for i in range(120)]  # one per channel
    latency = sorted(lower_bound(tasks, Limits(poll_interval=0.0, global_limit=50)).values())
    assert latency.count(0.0) == 50 and latency.count(1.0) == 50 and latency.count(2.0) == 20
    unlimited = lower_bound(tasks, Limits(poll_interval=0.0, global_limit=0))
    assert set(unlimited.values()) == {0.0}


def test_bound_uses_a_live_token_and_the_bot_token_after_it_expired() -> None:
    live = [Finished(f"live{i}", 100.0, 1, 99.0) for i in range(12)]
    expired = [Finished(f"old{i}", 100.0, 2, 100.0 - 900.0) for i in range(12)]
    latency = lower_bound(live + expired, Limits(poll_interval=0.0))
    assert {latency[t.task_id] for t in live} == {0.0}  # a token of its own each: no channel bucket
    assert max(latency[t.task_id] for t in expired) == 10.0  # 5 per 5 s in channel 2


def test_bound_charges_the_wait_for_the_next_read() -> None:
    tasks = [Finished(f"t{i}", 100.0, i, 99.0) for i in range(1000)]
    latency = list(lower_bound(tasks, Limits(poll_interval=3.0)).values())
    assert 0.0 <= min(latency) and max(latency) < 3.0
    assert 2.7 < percentile(latency, 95) < 3.0  # uniform over the interval


def test_most_in_window_counts_a_sliding_ten_minutes() -> None:
    assert most_in_window([], 600.0) == 0
    assert most_in_window([0.0, 100.0, 599.0, 600.0, 1300.0], 600.0) == 3


# ---- the sink, through real HTTP -----------------------------------------------------------------


@pytest.fixture
async def sink_url() -> AsyncIterator[tuple[DiscordSink, str]]:
    sink = DiscordSink(global_limit=3, token_seconds=0.5, channel_limit=100)
    app = web.Application()
    sink.routes(app)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield sink, f"http://{host}:{port}/api/v10"
    finally:
        await runner.cleanup()


async def test_sink_refuses_a_fourth_bot_token_write_in_one_second_but_not_token_writes(
    sink_url: tuple[DiscordSink, str],
) -> None:
    sink, base = sink_url
    async with aiohttp.ClientSession(headers={"Authorization": "Bot x"}) as http:
        for _ in range(10):  # until all four land in one whole second (a loaded machine may straddle two)
            while time.time() % 1 > 0.2:
                await _pause()
            sink.stats = SinkStats()
            statuses = []
            for _ in range(4):
                async with http.post(f"{base}/channels/7/messages", json={"content": "hi"}) as answer:
                    statuses.append(answer.status)
                    if answer.status == 429:
                        assert answer.headers["X-RateLimit-Global"] == "true"
            if len({int(at) for at in sink.stats.bot_token_at}) == 1:
                break
        token, message_id = sink.issue("1", 7)
        async with http.patch(f"{base}/webhooks/{BOT_ID}/{token}/messages/@original", json={"content": "x"}) as ok:
            assert ok.status == 200
    assert statuses == [200, 200, 200, 429]
    assert sink.stats.limited_by_scope == {"global": 1}
    assert len(sink.stats.bot_token_at) == 4 and sink.stats.token_writes == 1
    assert message_id in sink._message_task


async def test_sink_answers_401_50027_to_an_expired_token(sink_url: tuple[DiscordSink, str]) -> None:
    sink, base = sink_url
    token, _ = sink.issue("1", 7)
    async with aiohttp.ClientSession() as http:
        while time.time() - sink._interactions[token].issued_at < sink.token_seconds:
            await _pause()
        async with http.patch(f"{base}/webhooks/{BOT_ID}/{token}/messages/@original", json={"content": "x"}) as late:
            assert late.status == 401
            assert (await late.json())["code"] == 50027
    assert sink.stats.unauthorized == 1 and len(sink.stats.invalid_at) == 1


async def _pause() -> None:
    await asyncio.sleep(0.05)
