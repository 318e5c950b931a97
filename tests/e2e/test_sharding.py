"""Issue 8, one process: the auto-sharded bot holds the gateway for the shards it was given, and
/imagine works in guilds on every one of them (interactions arrive on the guild's shard)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from bot.upstream.simulator import SimulatedProxy
from tests.conftest import TOKEN, BotRunner, is_done
from tests.fakes.discord import FakeChannel, FakeDiscord, FakeMember, FakeMessage

SHARDS = 2


@pytest.fixture
async def discord_fake() -> AsyncIterator[FakeDiscord]:
    """The default guild on shard 0 (overrides conftest's fixture, whose guild id is any shard's)."""
    async with FakeDiscord(
        token=TOKEN, guild_id=FakeDiscord.snowflake_for_shard(0, SHARDS), recommended_shards=SHARDS
    ) as fake:
        yield fake


def second_guild(fake: FakeDiscord) -> tuple[FakeMember, FakeChannel]:
    """A guild on shard 1 with a member and a text channel."""
    guild = fake.add_guild("Shard One Guild", id=FakeDiscord.snowflake_for_shard(1, SHARDS, base=fake.guild.id))
    member = fake.add_member("member-1", guild=guild, global_name="Member On Shard 1")
    channel = fake.add_channel("art", guild=guild)
    return member, channel


async def imagine(fake: FakeDiscord, member: FakeMember, channel: FakeChannel, prompt: str) -> FakeMessage:
    handle = await fake.slash("imagine", user=member, channel=channel, options={"prompt": prompt})
    return await handle.wait_original()


def session_shards(fake: FakeDiscord) -> list[list[int]]:
    return sorted(list(payload["shard"]) for payload in fake.identifies)


async def test_two_shards_in_one_process_serve_guilds_on_both(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    member1, channel1 = second_guild(discord_fake)
    assert FakeDiscord.shard_for(discord_fake.guild.id, SHARDS) == 0
    assert FakeDiscord.shard_for(channel1.guild_id or 0, SHARDS) == 1
    # Commands synced globally: a dev guild would hide them from the second guild.
    # No dev guild: both servers are approved by ALLOWED_GUILDS instead.
    allowed = (discord_fake.guild.id, channel1.guild_id or 0)
    bot = await runner.start(shard_count=SHARDS, shard_ids=None, dev_guild_id=None, allowed_guilds=allowed)
    assert session_shards(discord_fake) == [[0, SHARDS], [1, SHARDS]]
    assert sorted(bot.shards) == [0, 1]
    assert {g.id for g in bot.guilds} == {discord_fake.guild.id, channel1.guild_id}
    await discord_fake.wait_for(lambda: discord_fake.command("imagine"), timeout=10, what="a global /imagine")

    on_shard0 = await imagine(discord_fake, discord_fake.member, discord_fake.channel, "a lighthouse on shard zero")
    on_shard1 = await imagine(discord_fake, member1, channel1, "a windmill on shard one")
    # Each interaction went to the session of its guild's shard only.
    by_shard = {
        sess.shard_id: [p["d"]["channel_id"] for p in sess.events("INTERACTION_CREATE")]
        for sess in discord_fake.sessions
    }
    assert by_shard == {0: [str(discord_fake.channel.id)], 1: [str(channel1.id)]}

    for message in (on_shard0, on_shard1):
        done = await discord_fake.wait_for(lambda m=message: is_done(m) and m, timeout=15)  # type: ignore[misc]
        assert done.attachments[0].content_type == "image/png"
        assert done.embed is not None and done.embed["image"]["url"].endswith(done.attachments[0].filename)
    assert "lighthouse" in on_shard0.text() and "windmill" in on_shard1.text()
    assert on_shard1.channel_id == channel1.id
    assert len(mj.submits("/submit/imagine")) == 2
    assert discord_fake.unknown_routes == [] and discord_fake.failed_requests == []


async def test_shard_ids_identifies_only_its_own_shards(runner: BotRunner, discord_fake: FakeDiscord) -> None:
    member1, channel1 = second_guild(discord_fake)
    bot = await runner.start(
        shard_count=SHARDS, shard_ids=(1,), dev_guild_id=None, allowed_guilds=(channel1.guild_id or 0,)
    )
    assert session_shards(discord_fake) == [[1, SHARDS]]
    assert list(bot.shards) == [1]
    # It sees only the guild its shard carries, and no interaction of shard 0 can reach it.
    assert [g.id for g in bot.guilds] == [channel1.guild_id]
    await discord_fake.wait_for(lambda: discord_fake.command("imagine"), timeout=10, what="a global /imagine")
    with pytest.raises(RuntimeError, match="no gateway session"):
        await discord_fake.slash(
            "imagine", user=discord_fake.member, channel=discord_fake.channel, options={"prompt": "unrouted"}
        )
    message = await imagine(discord_fake, member1, channel1, "a kite on shard one")
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
