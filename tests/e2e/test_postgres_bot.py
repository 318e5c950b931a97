"""The whole bot on PostgreSQL (DATABASE_URL): a task from /imagine to its result, a restart, a click."""

from __future__ import annotations

import asyncio

from bot.storage.postgres import PostgresStore
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done
from tests.e2e.test_imagine_flow import button_id, imagine
from tests.fakes.discord import FakeDiscord
from tests.pg import PostgresServer, postgres_server_fixture, require_asyncpg  # noqa: F401


async def test_the_bot_runs_on_postgresql_and_keeps_its_buttons_across_a_restart(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, postgres_server: PostgresServer
) -> None:
    require_asyncpg()
    bot = await runner.start(database_url=postgres_server.create_database())
    assert isinstance(bot.store, PostgresStore)
    message = await imagine(discord_fake, "a harbour at dawn")
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    for _ in range(200):  # the delivered flag is saved in the background, just after the last edit
        record = await bot.store.task_for_message(message.id)
        if record is not None and record.delivered:
            break
        await asyncio.sleep(0.05)
    assert record is not None and record.delivered and record.status == "SUCCESS"

    await runner.restart()
    await (await discord_fake.click(message, button_id(message, "U2"), user=discord_fake.member)).response()
    upscale = await discord_fake.wait_for_message(lambda m: m.reply_to == message.id)
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    assert mj.submits("/submit/action")[0].json["customId"].startswith("MJ::JOB::upsample::2::")
