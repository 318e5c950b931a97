"""Discord's bot-wide limits as the bot keeps them (bot/tracking/limits.py)."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest
from aiohttp import web

from bot.tracking.limits import FIRST_POST, INVALID_WINDOW, RESULT, InvalidRequests, WriteBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_share_is_the_budget_divided_among_live_processes() -> None:
    budget = WriteBudget(45)
    assert budget.share == 45
    budget.set_processes(4)
    assert budget.share == 11
    budget.set_processes(0)
    assert budget.share == 45


def test_budget_never_grants_more_than_its_share_in_a_window() -> None:
    clock = Clock()
    budget = WriteBudget(10, window=1.0, margin=0.1, clock=clock)
    granted: list[float] = []
    for _ in range(400):  # try a write every 10 ms for 4 s
        if budget.try_take():
            granted.append(clock.now)
        clock.now += 0.01
    assert granted
    for i, at in enumerate(granted):
        assert sum(1 for other in granted[i:] if other - at < 1.1) <= 10
    assert len(granted) >= 30  # and it does grant: about 10 per 1.1 s


async def test_results_go_before_first_posts_and_progress_is_skipped_when_short() -> None:
    budget = WriteBudget(2, window=0.05, margin=0.0)
    await budget.take()
    await budget.take()
    assert not budget.try_take()  # progress: skipped, not queued
    served: list[str] = []

    async def wait(name: str, priority: int) -> None:
        await budget.take(priority)
        served.append(name)

    post = asyncio.create_task(wait("first post", FIRST_POST))
    await asyncio.sleep(0)
    result = asyncio.create_task(wait("result", RESULT))
    await asyncio.sleep(0)
    assert budget.waiting == 2 and not budget.try_take()  # progress never jumps the queue
    await asyncio.gather(post, result)
    assert served == ["result", "first post"]


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    budget = WriteBudget(1, window=0.05, margin=0.0)
    await budget.take()
    waiter = asyncio.create_task(budget.take(FIRST_POST))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(budget.take(RESULT), 5)
    assert budget.waiting == 0


def test_invalid_requests_warn_long_before_the_ban(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    invalid = InvalidRequests(warn_at=100, clock=clock)
    with caplog.at_level(logging.WARNING, logger="bot.tracking.limits"):
        for _ in range(99):
            invalid.note(429, "user")
        invalid.note(200)
        invalid.note(404)
        invalid.note(429, "shared")  # Discord does not count another app's shared limit
        assert invalid.count() == 99 and not caplog.records
        invalid.note(401)
        invalid.note(403)
        assert invalid.count() == 101
        assert len(caplog.records) == 1  # once, not per request
        assert "answered 100 invalid requests" in caplog.records[0].getMessage()
        clock.now += INVALID_WINDOW
        assert invalid.count() == 0


async def test_invalid_requests_count_every_response_of_a_traced_session() -> None:
    """Through a real aiohttp session, as discord.Client(http_trace=...) uses it."""
    statuses = iter([429, 401, 200, 403, 429])

    async def answer(request: web.Request) -> web.Response:
        status = next(statuses)
        headers = {"X-RateLimit-Scope": "shared"} if status == 429 and request.path == "/shared" else {}
        return web.json_response({}, status=status, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    invalid = InvalidRequests()
    try:
        async with aiohttp.ClientSession(trace_configs=[invalid.trace_config()]) as http:
            for path in ("/a", "/b", "/c", "/d", "/shared"):
                async with http.get(f"http://{host}:{port}{path}") as response:
                    await response.read()
    finally:
        await runner.cleanup()
    assert invalid.count() == 3  # 429, 401, 403; not the 200 nor the shared-scope 429
