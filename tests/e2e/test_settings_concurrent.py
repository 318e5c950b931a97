"""Issue 17 item 2: /settings choices made at the same moment are all kept, on both storage backends."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import BotRunner
from tests.fakes.discord import FakeDiscord
from tests.pg import PostgresServer, postgres_server_fixture, require_asyncpg  # noqa: F401

CHOICES = {"mj:set:version": "7", "mj:set:aspect": "16:9", "mj:set:speed": "relax", "mj:set:stylize": "250"}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_choices_made_at_the_same_moment_are_all_kept(
    backend: str, runner: BotRunner, discord_fake: FakeDiscord, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        require_asyncpg()
        server: PostgresServer = request.getfixturevalue("postgres_server")
        bot = await runner.start(database_url=server.create_database())
    else:
        bot = await runner.start()
    member = discord_fake.member
    panel = await (await discord_fake.slash("settings", user=member, channel=discord_fake.channel)).wait_original()

    handles = await asyncio.gather(
        *(discord_fake.select(panel, custom_id, [value], user=member) for custom_id, value in CHOICES.items())
    )
    await asyncio.gather(*(handle.response() for handle in handles))

    prefs = await bot.store.get_prefs(member.id)
    assert (prefs.version, prefs.aspect, prefs.speed, prefs.stylize) == ("7", "16:9", "relax", 250)


async def test_option_sets_added_at_the_same_moment_are_all_kept(runner: BotRunner, discord_fake: FakeDiscord) -> None:
    bot = await runner.start()
    member = discord_fake.member
    handles = await asyncio.gather(
        *(
            discord_fake.slash(
                "prefer",
                subcommand="option set",
                user=member,
                channel=discord_fake.channel,
                options={"name": f"set{i}", "value": "--ar 1:1"},
            )
            for i in range(3)
        )
    )
    await asyncio.gather(*(handle.wait_original() for handle in handles))
    prefs = await bot.store.get_prefs(member.id)
    assert sorted(prefs.option_sets) == ["set0", "set1", "set2"]
