"""Issue 16: the tracker writes through a task's interaction token while it lives, then with the bot
token, and keeps its bot-token writes within one budget.

Real discord.py (its HTTP client and its webhook adapter) against the fake Discord, which refuses an
interaction token once it is `interaction_token_seconds` old (401, code 50027) and logs every
request; the simulated API (clock "reads": each read advances a task one step); the real store.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import discord
import pytest

from bot.logs import install_redaction
from bot.models import TaskRecord
from bot.net.addresses import AddressPolicy
from bot.net.fetcher import Fetcher
from bot.storage.factory import open_store
from bot.storage.sqlite import Store
from bot.tracking.tracker import Tracker, TrackerSettings
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.simulator import SimulatedProxy
from tests.fakes.discord import FakeDiscord, InteractionHandle, RecordedRequest

TOKEN = "fake-bot-token"


class World:
    """The fake Discord, the simulated API, a logged-in discord.py client and a store."""

    def __init__(self, fake: FakeDiscord, proxy: SimulatedProxy, client: discord.Client, store: Store) -> None:
        self.fake = fake
        self.proxy = proxy
        self.client = client
        self.store = store
        self.upstream = MJClient(UpstreamConfig(base_url=proxy.base_url, api_key=""))
        self.fetcher = Fetcher(AddressPolicy.trusting(proxy.base_url))

    async def command(self) -> InteractionHandle:
        """A slash command answered with the task's message (callback type 4), as /imagine does."""
        handle = await self.fake.open_interaction(user=self.fake.member, channel=self.fake.channel)
        url = f"{self.fake.api_base}/interactions/{handle.id}/{handle.token}/callback"
        async with aiohttp.ClientSession() as http, http.post(url, json={"type": 4, "data": {"content": "…"}}) as ok:
            assert ok.status in (200, 204)
        assert handle.original is not None
        return handle

    def row(self, task_id: str, handle: InteractionHandle | None, *, age: float = 0.0) -> TaskRecord:
        """The task's row as the cogs leave it; `age`: seconds since the interaction was created."""
        if handle is not None:
            handle.created_at -= age  # the fake's clock for the token's life
        return TaskRecord(
            id=task_id,
            action="IMAGINE",
            user_id=self.fake.member.id,
            channel_id=self.fake.channel.id,
            guild_id=self.fake.guild.id,
            message_id=handle.original.id if handle is not None and handle.original is not None else None,
            prompt="a cat",
            created_at=time.time(),
            interaction_token=handle.token if handle is not None else None,
            interaction_at=time.time() - age if handle is not None else None,
        )

    def tracker(self, **settings: Any) -> Tracker:
        config = TrackerSettings(poll_interval=0.05, **settings)
        return Tracker(self.client, self.store, {"default": self.upstream}, self.fetcher, config)

    async def run_until(self, tracker: Tracker, done: Callable[[], bool], timeout: float = 20.0) -> None:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while not done():
                await tracker.run_cycle()
                await asyncio.sleep(0.05)

    def writes(self, message_id: int | None = None) -> list[RecordedRequest]:
        """Message writes (posts, edits, followups), oldest first; those of one message if given."""
        found = [
            r
            for r in self.fake.requests
            if r.method in ("POST", "PATCH") and ("/messages" in r.path or r.path.startswith("/webhooks/"))
        ]
        if message_id is None:
            return found
        return [r for r in found if r.path.endswith(f"/messages/{message_id}") or r.path.endswith("/@original")]


def through_token(request: RecordedRequest) -> bool:
    return request.path.startswith("/webhooks/")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with (
        FakeDiscord(token=TOKEN) as fake,
        SimulatedProxy(flavor="relay", clock="reads", progress_steps=3, image_size=64) as proxy,
    ):
        store = await Store.open(tmp_path / "bot.sqlite3")
        client = discord.Client(intents=discord.Intents.none())
        await client.login(TOKEN)
        world = World(fake, proxy, client, store)
        try:
            yield world
        finally:
            await client.close()
            await world.upstream.aclose()
            await world.fetcher.aclose()
            await store.close()


async def test_a_commands_message_is_edited_through_its_interaction_token_while_it_lives(world: World) -> None:
    handle = await world.command()
    task_id = world.proxy.add_task("a cat")
    await world.store.insert_many([world.row(task_id, handle)])
    tracker = world.tracker()
    await tracker.resume()
    await world.run_until(tracker, lambda: not tracker.active_ids)
    await tracker.stop()

    writes = world.writes()
    assert len(writes) >= 2 and all(through_token(r) for r in writes)  # progress and the result
    assert writes[-1].files  # the result's picture, uploaded once
    assert handle.original is not None and handle.original.attachments and handle.original.buttons
    assert world.fake.failed_requests == []
    stored = await world.store.get_task(task_id)
    assert stored is not None and stored.delivered and stored.interaction_token is None  # forgotten once done


async def test_the_bot_token_takes_over_before_the_interaction_token_expires(world: World) -> None:
    """Tokens live 1 s here and the tracker trusts them for 0.5 s: the switch comes before any 401."""
    world.fake.interaction_token_seconds = 1.0
    young, old = await world.command(), await world.command()
    young_id, old_id = world.proxy.add_task("young"), world.proxy.add_task("old")
    await world.store.insert_many([world.row(young_id, young), world.row(old_id, old, age=0.7)])
    tracker = world.tracker(interaction_seconds=0.5)
    await tracker.resume()
    await world.run_until(tracker, lambda: any(through_token(r) for r in world.writes(young.original.id)))  # type: ignore[union-attr]
    await asyncio.sleep(1.0)  # now the young token is past its life on the fake too
    await world.run_until(tracker, lambda: not tracker.active_ids)
    await tracker.stop()

    young_writes = world.writes(young.original.id)  # type: ignore[union-attr]
    assert through_token(young_writes[0]) and not through_token(young_writes[-1]) and young_writes[-1].files
    assert not any(through_token(r) for r in world.writes(old.original.id))  # type: ignore[union-attr]
    assert world.fake.failed_requests == []  # no 401
    for handle in (young, old):
        assert handle.original is not None and handle.original.attachments


async def test_a_restart_with_a_live_token_goes_on_using_it(world: World, tmp_path: Path) -> None:
    handle = await world.command()
    task_id = world.proxy.add_task("a cat")
    await world.store.insert_many([world.row(task_id, handle)])
    first = world.tracker()
    await first.resume()
    await world.run_until(first, lambda: len(world.writes()) >= 1)
    await first.stop()
    await world.store.close()

    world.store = await Store.open(tmp_path / "bot.sqlite3")  # a new process: only the row remembers
    second = world.tracker()
    assert await second.resume() == 1
    before = len(world.writes())
    await world.run_until(second, lambda: not second.active_ids)
    await second.stop()

    after = world.writes()[before:]
    assert after and all(through_token(r) for r in after) and after[-1].files
    assert world.fake.failed_requests == []


async def test_the_interaction_token_never_reaches_a_log(world: World, caplog: pytest.LogCaptureFixture) -> None:
    """Every logger at DEBUG, with the bot's own log setup (bot/logs.py redacts what libraries print):
    the token shows nowhere, not even when Discord refuses it."""
    world.fake.interaction_token_seconds = 1.0
    handle = await world.command()
    task_id = world.proxy.add_task("a cat")
    record = world.row(task_id, handle)
    assert handle.token not in repr(record)
    await world.store.insert_many([record])
    tracker = world.tracker(interaction_seconds=0.3)
    factory = logging.getLogRecordFactory()
    install_redaction()
    try:
        with caplog.at_level(logging.DEBUG):
            await tracker.resume()
            await world.run_until(tracker, lambda: len(world.writes()) >= 1)
            world.fake.fail_next("/webhooks/", 401)  # a refused token is logged by status, not by URL
            await world.run_until(tracker, lambda: not tracker.active_ids)
            await tracker.stop()
    finally:
        logging.setLogRecordFactory(factory)
    assert any(r.name.startswith("discord.webhook") for r in caplog.records)  # the library did log its requests
    leaked = {r.name for r in caplog.records if handle.token in f"{r.getMessage()} {r.exc_text or ''}"}
    assert leaked == set()


async def test_bot_token_writes_stay_within_the_budget_in_every_second(world: World) -> None:
    """Forty tasks without a token, one per channel (no channel bucket in the way): the budget of 5
    per second holds in every second, and every result lands."""
    channels = [world.fake.add_channel(f"c{i}") for i in range(40)]
    rows = []
    for channel in channels:
        task_id = world.proxy.add_task(f"task in {channel.name}")
        rows.append(replace(world.row(task_id, None), channel_id=channel.id))
    await world.store.insert_many(rows)
    tracker = world.tracker(write_budget=5)
    await tracker.resume()
    await world.run_until(tracker, lambda: not tracker.active_ids, timeout=60)
    await tracker.stop()

    assert sum(1 for r in world.writes() if r.files) == 40
    # Never a sixth write within one window, and no bot-token write without a grant. Judged on the
    # budget's own grants: arrival times at the fake would also measure the machine's load.
    budget = tracker.write_budget
    assert budget.peak == 5 and budget.granted >= len([r for r in world.writes() if not through_token(r)]) >= 40
    assert world.fake.rate_limits_sent == 0 and world.fake.failed_requests == []


async def test_processes_split_the_bot_token_budget(world: World, tmp_path: Path) -> None:
    """Each process takes an even share of DISCORD_WRITE_BUDGET: the lease census counts the live
    processes, from the first write on."""
    other = await open_store(str(tmp_path / "bot.sqlite3"), owner="another-process")
    try:
        await other.insert_many([world.row(world.proxy.add_task("theirs"), None)])
        await world.store.insert_many([world.row(world.proxy.add_task("ours"), None)])
        tracker = world.tracker(write_budget=45)
        assert await tracker.resume() == 1
        assert tracker.write_share == 22
    finally:
        await other.close()


async def test_a_result_posted_just_before_a_crash_is_not_uploaded_again(world: World) -> None:
    """The process that held the task posted its result and died before storing `delivered`: the
    one that takes the task over sees the result on the message and only marks it delivered."""
    handle = await world.command()
    assert handle.original is not None
    task_id = world.proxy.add_task("a cat")
    world.proxy.finish(task_id)
    done = await world.upstream.fetch(task_id)
    assert done is not None and done.image_url
    image = await world.fetcher.fetch(done.image_url, max_bytes=1 << 20)
    webhook = discord.Webhook.partial(world.client.application_id or 0, handle.token, client=world.client)
    await webhook.edit_message(  # what the dead process sent
        handle.original.id, attachments=[discord.File(io.BytesIO(image), filename=f"mj_{task_id}.png")]
    )
    row = replace(world.row(task_id, handle), status="SUCCESS", progress=100, image_url=done.image_url)
    await world.store.insert_many([row])
    tracker = world.tracker()
    assert await tracker.resume() == 1
    await world.run_until(tracker, lambda: not tracker.active_ids)
    await tracker.stop()

    assert sum(1 for r in world.writes() if r.files) == 1  # the dead process's upload only
    stored = await world.store.get_task(task_id)
    assert stored is not None and stored.delivered and stored.result_url
