"""Faults on both sides, end to end: the real bot between the fake Discord and the simulated API.

Every test ends with the task in its true final state and its result posted exactly once: one
message carries it, and exactly one successful Discord request uploaded its file.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

from bot.bot import MJBot
from bot.models import FAILURE, SUCCESS, TaskRecord
from bot.storage.sqlite import Store
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done, log_text
from tests.fakes.discord import FakeDiscord, FakeMessage, InteractionHandle

# ---- helpers --------------------------------------------------------------------------------------


async def imagine(fake: FakeDiscord, prompt: str) -> FakeMessage:
    handle = await fake.slash("imagine", user=fake.member, channel=fake.channel, options={"prompt": prompt})
    return await handle.wait_original()


def newest_task(mj: SimulatedProxy) -> str:
    return next(reversed(mj.tasks))


def button_id(message: FakeMessage, label: str) -> str:
    for row in message.buttons:
        if label in (row.label, row.emoji) and row.custom_id:
            return row.custom_id
    raise AssertionError(f"no button {label!r} in {message.buttons}")


def uploads(fake: FakeDiscord, task_id: str) -> list[Any]:
    """Successful Discord requests that uploaded this task's result file."""
    return [
        r for r in fake.requests if 200 <= r.status < 300 and any(f"mj_{task_id}." in name for _, name, _ in r.files)
    ]


async def final_row(bot: MJBot, task_id: str) -> TaskRecord:
    """The task's row once it says delivered (written right after the Discord write landed)."""
    for _ in range(250):
        row = await bot.store.get_task(task_id)
        if row is not None and row.delivered:
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"task {task_id} is not marked delivered: {row}")


async def delivered_once(bot: MJBot, fake: FakeDiscord, task_id: str) -> FakeMessage:
    """The task's one result message, after checking it is the only one and its row is final."""
    row = await final_row(bot, task_id)
    assert row.status == SUCCESS and task_id not in bot.tracker.active_ids
    results = [m for m in fake.bot_messages() if not m.deleted and task_id in m.text() and m.attachments]
    assert len(results) == 1, [m.id for m in results]
    assert len(uploads(fake, task_id)) == 1
    return results[0]


async def finished(fake: FakeDiscord, message: FakeMessage) -> FakeMessage:
    return await fake.wait_for(lambda: is_done(message) and message, timeout=20)


def ephemeral_text(handle: InteractionHandle) -> str:
    """What the clicking user was told privately (an ephemeral response or followup)."""
    messages = [handle.original, *handle.followups]
    return "\n".join(m.text() for m in messages if m is not None and m.ephemeral)


@pytest.fixture
def bot_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO, logger="bot")
    yield caplog


# ---- the relay fails for a while, then recovers ---------------------------------------------------


async def test_relay_5xx_and_unreadable_answers_for_a_while_lose_nothing(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    message = await imagine(discord_fake, "a harbour in fog")
    task_id = newest_task(mj)
    mj.hold(task_id)
    # Four failures in a row exhaust the client's own retries: the tracker sees one failed read.
    for kind in ("500", "502", "garbage", "truncated", "500"):
        mj.fail_next(kind, path_prefix="/mj/task/")
    mj.fail_next("502", count=2, path_prefix="/mj/image/")  # and the result download fails twice
    mj.release(task_id)
    await finished(discord_fake, message)
    assert (await delivered_once(bot, discord_fake, task_id)).id == message.id
    logs = log_text(bot_logs)
    assert "is failing or slow" in logs and "answers normally again" in logs
    assert "Downloading the result" in logs


async def test_relay_timeouts_429_and_resets_for_a_while_lose_nothing(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    bot = await runner.start(api_timeout=0.5)
    mj.timeout_delay = 1.0
    message = await imagine(discord_fake, "a lighthouse at dusk")
    task_id = newest_task(mj)
    mj.hold(task_id)
    for kind in ("timeout", "429", "reset", "reset"):
        mj.fail_next(kind, path_prefix="/mj/task/")
    mj.release(task_id)
    await finished(discord_fake, message)
    await delivered_once(bot, discord_fake, task_id)
    logs = log_text(bot_logs)
    assert "QueueFull" in logs and "is failing or slow" in logs


async def test_relay_refusing_connections_for_a_while_loses_nothing(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    message = await imagine(discord_fake, "a quiet bay")
    task_id = newest_task(mj)
    mj.hold(task_id)
    refused = log_text(bot_logs).count("failed (TransientError)")
    await mj.stop()  # nothing listens on the port: connections are refused
    await discord_fake.wait_for(lambda: log_text(bot_logs).count("failed (TransientError)") >= refused + 2, timeout=10)
    await mj.start()  # same port
    mj.release(task_id)
    await finished(discord_fake, message)
    await delivered_once(bot, discord_fake, task_id)


# ---- the bot process dies -------------------------------------------------------------------------


async def test_a_killed_bot_resumes_the_task_and_posts_the_result_once(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start()
    message = await imagine(discord_fake, "a windmill at night")
    task_id = newest_task(mj)
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    await runner.kill()
    mj.release(task_id)  # the task goes on while the bot is down
    bot = await runner.start()
    await finished(discord_fake, message)
    assert (await delivered_once(bot, discord_fake, task_id)).id == message.id


async def test_a_kill_between_the_accepted_submit_and_its_message_gets_a_fresh_message(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    bot = await runner.start()
    dies = asyncio.Event()

    async def attach_never(*args: object, **kwargs: object) -> None:
        await dies.wait()
        raise asyncio.CancelledError  # the process is gone: this line never finishes

    monkeypatch.setattr(bot.jobs, "attach_message", attach_never)
    await discord_fake.slash(
        "imagine", user=discord_fake.member, channel=discord_fake.channel, options={"prompt": "a kite"}
    )
    await discord_fake.wait_for(lambda: mj.submits("/submit/imagine"))
    task_id = newest_task(mj)
    for _ in range(100):  # the row is written right after the upstream accepted the task
        if await bot.store.get_task(task_id) is not None:
            break
        await asyncio.sleep(0.02)
    row = await bot.store.get_task(task_id)
    assert row is not None and row.message_id is None
    await runner.kill()
    dies.set()
    bot = await runner.start()
    result = await discord_fake.wait_for_message(lambda m: task_id in m.text() and bool(m.attachments), timeout=15)
    assert result.source == "channel"  # posted fresh with the bot token
    await delivered_once(bot, discord_fake, task_id)


# ---- Discord side ---------------------------------------------------------------------------------


async def test_a_deleted_task_message_is_posted_again_and_the_loop_goes_on(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    message = await imagine(discord_fake, "a paper boat")
    task_id = newest_task(mj)
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    await discord_fake.delete_message(discord_fake.channel, message)
    mj.release(task_id)
    result = await discord_fake.wait_for_message(lambda m: task_id in m.text() and is_done(m), timeout=15)
    assert result.id != message.id
    await delivered_once(bot, discord_fake, task_id)
    assert "was deleted; posting a new one" in log_text(bot_logs)
    second = await imagine(discord_fake, "a second boat")  # the loop is still running
    await finished(discord_fake, second)


async def test_discord_429_on_edits_is_waited_out_and_the_result_lands_once(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await imagine(discord_fake, "a glass city")
    task_id = newest_task(mj)
    mj.hold(task_id)
    # /imagine's message is edited through its interaction token (issue 16): its route takes the 429s.
    discord_fake.rate_limit_next("PATCH /webhooks/", count=3, retry_after=0.2)
    mj.release(task_id)
    await finished(discord_fake, message)
    await delivered_once(bot, discord_fake, task_id)
    assert discord_fake.rate_limits_sent == 3


async def test_discord_5xx_on_the_result_edit_is_retried_and_the_result_lands_once(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    message = await imagine(discord_fake, "a copper dragon")
    task_id = newest_task(mj)
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    # The interaction token is refused (a 401: the bot token takes over), so the result's edit goes
    # through the bot token's route, where discord.py raises a 503 to the tracker.
    discord_fake.fail_next("/webhooks/", 401, count=1)
    discord_fake.fail_next("PATCH /channels/", 503, count=3)  # raised to the tracker: it retries later
    discord_fake.fail_next("PATCH /channels/", 500, count=1)  # retried inside discord.py
    mj.finish(task_id)
    mj.release(task_id)
    await finished(discord_fake, message)
    await delivered_once(bot, discord_fake, task_id)
    assert discord_fake.failures_sent == 5  # the 401 and the four 5xx
    assert "Discord refused the update" in log_text(bot_logs)


async def test_a_gateway_drop_and_resume_lose_nothing(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await imagine(discord_fake, "a night train")
    task_id = newest_task(mj)
    mj.hold(task_id)
    assert await discord_fake.drop_gateway() == 1
    mj.release(task_id)
    await finished(discord_fake, message)
    await delivered_once(bot, discord_fake, task_id)
    await discord_fake.wait_for(lambda: discord_fake.resume_count >= 1 and bot.is_ready(), timeout=10)


async def test_a_task_finishing_after_twenty_minutes_lands_through_the_bot_token(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(task_timeout=3600.0)
    message = await imagine(discord_fake, "a very long exposure")
    task_id = newest_task(mj)
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    # Twenty minutes pass: the interaction token (15 min) is dead, so Discord refuses webhook routes.
    body = {"message": "Invalid Webhook Token", "code": 50027}
    discord_fake.fail_next("/webhooks/", 401, count=1000, body=body)
    row = await bot.store.get_task(task_id)
    assert row is not None
    aged = replace(row, created_at=row.created_at - 20 * 60)
    await bot.store.update_task(aged.key, created_at=aged.created_at)
    bot.tracker.track(aged)
    mj.release(task_id)
    done = await finished(discord_fake, message)
    await delivered_once(bot, discord_fake, task_id)
    assert "20m" in done.text()  # "took 20m ...": still under the 1 h task timeout
    [upload] = uploads(discord_fake, task_id)
    assert upload.method == "PATCH" and upload.path == f"/channels/{discord_fake.channel.id}/messages/{message.id}"


# ---- buttons --------------------------------------------------------------------------------------


async def test_two_clicks_on_one_button_at_once_submit_one_action(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    grid = await finished(discord_fake, await imagine(discord_fake, "a red fox"))
    u1 = button_id(grid, "U1")
    clicks = await asyncio.gather(*(discord_fake.click(grid, u1, user=discord_fake.member) for _ in range(2)))
    await asyncio.gather(*(click.response() for click in clicks))
    told = await discord_fake.wait_for(lambda: "\n".join(ephemeral_text(c) for c in clicks))
    assert "just clicked" in told
    upscale = await discord_fake.wait_for_message(lambda m: m.reply_to is not None, timeout=10)
    await finished(discord_fake, upscale)
    assert len(mj.submits("/submit/action")) == 1
    assert len([m for m in discord_fake.bot_messages() if m.reply_to is not None]) == 1


async def test_a_click_on_a_failed_or_expired_task_gets_a_clear_message(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    running = await imagine(discord_fake, "a storm that will not end")
    failed_id = newest_task(mj)
    mj.hold(failed_id)
    await discord_fake.wait_for(lambda: failed_id in bot.tracker.active_ids)
    # The task fails upstream while Discord refuses the edit that would remove its Cancel button.
    discord_fake.fail_next(f"/messages/{running.id}", 503, count=2)  # its token's route or the bot's
    mj.fail(failed_id, "Banned prompt detected")
    await discord_fake.wait_for(lambda: discord_fake.failures_sent >= 1)
    click = await discord_fake.click(running, button_id(running, "Cancel"), user=discord_fake.member)
    assert "already finished" in await discord_fake.wait_for(lambda: ephemeral_text(click))
    await discord_fake.wait_for(lambda: "did not finish" in running.text(), timeout=10)
    await failed_once(bot, discord_fake, failed_id)

    grid = await finished(discord_fake, await imagine(discord_fake, "a blue kite"))
    del mj.tasks[newest_task(mj)]  # the relay forgot the task (expired)
    click = await discord_fake.click(grid, button_id(grid, "U1"), user=discord_fake.member)
    assert "may have expired" in await discord_fake.wait_for(lambda: ephemeral_text(click))
    assert not [m for m in discord_fake.bot_messages() if m.reply_to]


async def failed_once(bot: MJBot, fake: FakeDiscord, task_id: str) -> None:
    """A failed task: its row is final and one message says so (no result, no second message)."""
    row = await final_row(bot, task_id)
    assert row.status == FAILURE and task_id not in bot.tracker.active_ids
    shown = [m for m in fake.bot_messages() if not m.deleted and task_id in m.text()]
    assert len(shown) == 1 and "did not finish" in shown[0].text() and uploads(fake, task_id) == []


# ---- the database ---------------------------------------------------------------------------------


@pytest.fixture
def quick_db_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite waits 0.1 s for a lock (10 s in production) and the store retries every 0.05 s+."""
    monkeypatch.setattr(Store, "busy_timeout", 0.1)
    monkeypatch.setattr(Store, "write_backoff", 0.05)


async def test_a_locked_database_delays_writes_and_the_bot_stays_up(
    runner: BotRunner,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    bot_logs: pytest.LogCaptureFixture,
    quick_db_retries: None,
) -> None:
    bot = await runner.start()
    message = await imagine(discord_fake, "a locked door")
    task_id = newest_task(mj)
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    # Another program holds the write lock while the task finishes and a new task is submitted.
    locker = sqlite3.connect(runner.settings.database_path, timeout=5, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        mj.release(task_id)
        second = asyncio.create_task(imagine(discord_fake, "a second door"))
        await discord_fake.wait_for(lambda: log_text(bot_logs).count("Database write failed") >= 2, timeout=10)
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await finished(discord_fake, message)
    await finished(discord_fake, await second)
    for task in mj.tasks:
        await discord_fake.wait_for(lambda task=task: task not in bot.tracker.active_ids, timeout=10)
        await delivered_once(bot, discord_fake, task)


class FullDisk:
    """The bot's database connection, answering writes with SQLite's "database or disk is full"
    while `full` is set: a real full disk cannot be made on demand in a test."""

    def __init__(self, connection: Any) -> None:
        self._connection = connection
        self.full = True
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    def _check(self, sql: str) -> None:
        if self.full and sql.lstrip().split(None, 1)[0].upper() in ("INSERT", "UPDATE", "DELETE"):
            self.refused += 1
            raise sqlite3.OperationalError("database or disk is full")

    def execute(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._connection.execute(sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        self._check(sql)
        return self._connection.executemany(sql, *args)


async def test_a_full_disk_at_write_time_is_retried_and_nothing_is_lost(
    runner: BotRunner,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    bot_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    quick_db_retries: None,
) -> None:
    bot = await runner.start()
    message = await imagine(discord_fake, "a full cupboard")
    task_id = newest_task(mj)
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    disk = FullDisk(bot.store._db)
    monkeypatch.setattr(bot.store, "_db", disk)
    mj.release(task_id)
    await finished(discord_fake, message)  # Discord got the result; the row could not say so yet
    await discord_fake.wait_for(lambda: "will try again" in log_text(bot_logs), timeout=10)
    row = await bot.store.get_task(task_id)
    assert row is not None and not row.delivered
    disk.full = False  # space was freed
    for _ in range(200):
        row = await bot.store.get_task(task_id)
        if row is not None and row.delivered:
            break
        await asyncio.sleep(0.02)
    await delivered_once(bot, discord_fake, task_id)
    assert disk.refused >= 6 and "database or disk is full" in log_text(bot_logs)
    await finished(discord_fake, await imagine(discord_fake, "an empty cupboard"))  # still up


# ---- the bot's own timeout ------------------------------------------------------------------------


async def test_a_task_that_never_comes_back_ends_at_the_timeout_and_is_not_polled_again(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(task_timeout=1.0)
    message = await imagine(discord_fake, "a very slow snail")
    task_id = newest_task(mj)
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: "stopped waiting" in message.text(), timeout=10)
    await failed_once(bot, discord_fake, task_id)
    assert task_id not in bot.tracker.active_ids

    def reads() -> int:
        return sum(task_id in (r.json or {}).get("ids", []) for r in mj.requests if r.path.endswith("by-condition"))

    before = reads()
    mj.release(task_id)
    mj.finish(task_id)  # too late: the bot already told the user
    cycles = bot.tracker.cycles
    await discord_fake.wait_for(lambda: bot.tracker.cycles >= cycles + 5)
    assert reads() == before and uploads(discord_fake, task_id) == [] and not message.attachments
