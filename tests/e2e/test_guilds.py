"""Issue 15 items 3, 4, 7 and 10 end to end: whose rules and key apply, and who may act on a task.

Two or three servers on the fake Discord, the real bot, one or two simulated APIs; nothing of ours
is mocked. Guild A is the fake's default server (the dev guild, approved by DEV_GUILD_ID); its
admin adds A's own key, which points at the second simulator (`mj2`), so every request that
reaches `mj2` was paid for by A.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from bot import render
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done, log_text
from tests.e2e import test_admin
from tests.e2e.test_admin import GOOD_SECRET, add_key, admin, answer, button_id, imagine, imagine_done, start
from tests.fakes.discord import FakeChannel, FakeDiscord, FakeGuild, FakeMember, FakeMessage, InteractionHandle

#: Guild A's own API server: a second simulator its admins may point a key at (KEY_ALLOWED_HOSTS).
mj2 = test_admin.mj2


def other_server(fake: FakeDiscord, name: str) -> tuple[FakeGuild, FakeMember, FakeChannel]:
    """A server whose owner (all permissions there) is a stranger to guild A."""
    owner = fake.add_user(f"{name}-owner", global_name=f"Owner of {name}")
    guild = fake.add_guild(name, owner=owner)
    return guild, guild.members[owner.id], fake.add_channel("art", guild=guild)


async def slash_in(
    fake: FakeDiscord, name: str, user: FakeMember, channel: FakeChannel, **options: Any
) -> InteractionHandle:
    """A command outside the dev guild (commands are synced to the dev guild only in tests)."""
    return await fake.slash(name, user=user, channel=channel, options=options, allow_unsynced=True)


async def last_task_id(runner: BotRunner, user: FakeMember) -> str:
    assert runner.bot is not None
    return (await runner.bot.store.recent_tasks(user.id, 1))[0].id


async def click_reply(handle: InteractionHandle) -> FakeMessage:
    """What the clicker is told: the immediate answer, or the followup after a deferred update."""
    callback = await handle.response()
    if callback.type == 4 and callback.message is not None:
        return callback.message
    return (await handle.wait_followups(1, timeout=10))[0]


def pictures_in(fake: FakeDiscord, channel: FakeChannel) -> list[FakeMessage]:
    return [m for m in fake.channel_messages(channel) if m.attachments]


async def results_in_dms(fake: FakeDiscord, member: FakeMember) -> None:
    """The member's /settings: "results in my DMs" (the panel's 📬 toggle)."""
    panel = await (await fake.slash("settings", user=member, channel=fake.channel)).wait_original()
    toggled = await fake.click(panel, "mj:tog:visibility", user=member)
    await toggled.response()


# ---- item 4: guild isolation ------------------------------------------------------------------------


async def test_an_outsider_owning_another_server_cannot_show_repost_click_or_spend_a_servers_task(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    guild_b, outsider, channel_b = other_server(discord_fake, "Guild B")
    await start(runner, allowed_guilds=(guild_b.id,))
    await add_key(discord_fake, "a-key", mj2.base_url, GOOD_SECRET)
    grid = await imagine_done(discord_fake, "a private lighthouse")
    task_id = await last_task_id(runner, discord_fake.member)
    paid_by_a = len(mj2.requests)

    shown = await answer(discord_fake, await slash_in(discord_fake, "show", outsider, channel_b, task_id=task_id))
    assert shown.ephemeral and not shown.attachments and "lighthouse" not in shown.text()
    assert pictures_in(discord_fake, channel_b) == []

    # A repost of A's result in B with live buttons, as the old /show made them: every button refuses.
    bot = runner.bot
    assert bot is not None
    record = await bot.store.get_task(task_id)
    assert record is not None
    parts = render.render_task(record)
    channel = bot.get_partial_messageable(channel_b.id, guild_id=guild_b.id)
    sent = await channel.send(content="old repost", embed=parts.embed, view=render.build_view(parts.buttons))
    repost = discord_fake.messages[sent.id]
    for label in ("U1", "V2", "🔄", "ℹ️", "🗑️"):
        refused = await click_reply(await discord_fake.click(repost, button_id(repost, label), user=outsider))
        assert refused.ephemeral and "can't be used here" in refused.text(), label
    assert not repost.deleted
    assert not grid.deleted
    assert len(mj2.requests) == paid_by_a  # A's key was never used for the outsider
    assert all(r.path.endswith("/submit/imagine") for r in mj.submits())  # nor the owner's for A's task


async def test_a_task_whose_key_was_removed_says_so_instead_of_using_the_default_key(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    bot = await start(runner)
    await add_key(discord_fake, "a-key", mj2.base_url, GOOD_SECRET)
    grid = await imagine_done(discord_fake, "a red kite")
    key = bot.keys.find("a-key", discord_fake.guild.id)
    assert key is not None
    await admin(discord_fake, "key remove", key=f"#{key.id}")

    refused = await click_reply(await discord_fake.click(grid, button_id(grid, "U1"), user=discord_fake.member))
    assert refused.ephemeral and "has been removed" in refused.text()
    assert mj.submits() == [] and mj2.submits("/submit/action") == []


async def test_a_running_task_whose_key_was_removed_is_not_read_with_the_default_key(
    runner: BotRunner,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    mj2: SimulatedProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bot = await start(runner)
    await add_key(discord_fake, "a-key", mj2.base_url, GOOD_SECRET)
    mj2.progress_steps = 10_000  # the task stays running
    await (await imagine(discord_fake, "a slow heron")).wait_original()
    mj2.hold(await last_task_id(runner, discord_fake.member))
    key = bot.keys.find("a-key", discord_fake.guild.id)
    assert key is not None
    await admin(discord_fake, "key remove", key=f"#{key.id}")

    await discord_fake.wait_for(lambda: f"No upstream '{key.upstream}'" in log_text(caplog), timeout=10)
    assert [r.path for r in mj.requests] == []  # the .env key was never asked about A's task


# ---- item 3: a guild's rules hold wherever its results go -------------------------------------------


async def test_results_in_dms_keep_the_servers_quota_words_and_key(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    bot = await start(runner)
    await add_key(discord_fake, "a-key", mj2.base_url, GOOD_SECRET)
    await admin(discord_fake, "settings set", daily_quota=1)
    await admin(discord_fake, "settings words_add", words="gore")
    member = discord_fake.member
    await results_in_dms(discord_fake, member)

    banned = await answer(discord_fake, await imagine(discord_fake, "a ｇｏ\u200bｒｅ castle"))
    assert banned.ephemeral and "does not allow" in banned.text()
    await (await imagine(discord_fake, "a quiet castle")).wait_original()
    dm = discord_fake.dm_channel(member)
    delivered = await discord_fake.wait_for(lambda: next(iter(pictures_in(discord_fake, dm)), None), timeout=15)
    record = (await bot.store.recent_tasks(member.id, 1))[0]
    assert record.guild_id == discord_fake.guild.id and record.channel_id == dm.id  # made in A, shown in DMs
    assert len(mj2.submits("/submit/imagine")) == 1 and mj.submits() == []  # on A's key

    over = await answer(discord_fake, await imagine(discord_fake, "a second castle"))
    assert over.ephemeral and "all 1 of your tasks for today" in over.text()

    # The owner acts on the delivered result in their DMs: A's rules and key still apply.
    refused = await click_reply(await discord_fake.click(delivered, button_id(delivered, "U1"), user=member))
    assert "for today" in refused.text()
    assert mj2.submits("/submit/action") == [] and mj.submits() == []


async def test_commands_in_dms_follow_the_operators_dm_rules(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await start(runner)
    member = discord_fake.member
    dm = discord_fake.dm_channel(member)
    refused = await answer(discord_fake, await slash_in(discord_fake, "imagine", member, dm, prompt="a cat"))
    assert "not in direct messages" in refused.text()
    assert mj.submits() == []

    await runner.restart(dm_commands=True, dm_daily_quota=1)
    first = await (await slash_in(discord_fake, "imagine", member, dm, prompt="a cat")).wait_original()
    await discord_fake.wait_for(lambda: is_done(first), timeout=15)
    over = await answer(discord_fake, await slash_in(discord_fake, "imagine", member, dm, prompt="a dog"))
    assert "all 1 of your tasks for today" in over.text()
    assert len(mj.submits()) == 1


async def test_servers_without_a_quota_get_the_operators_default(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await start(runner, default_daily_quota=1)
    await imagine_done(discord_fake, "a cat")
    over = await answer(discord_fake, await imagine(discord_fake, "a dog"))
    assert "all 1 of your tasks for today" in over.text()
    shown = (await admin(discord_fake, "settings show")).text()
    assert "server default: 1 a day" in shown
    await admin(discord_fake, "settings set", daily_quota=3)
    await imagine_done(discord_fake, "a dog")
    assert len(mj.submits()) == 2


# ---- item 7: operators choose who may use their key -------------------------------------------------


async def test_a_server_that_is_not_approved_is_ignored_until_a_bot_owner_approves_it(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    already_in, _, _ = other_server(discord_fake, "Guild D")
    await start(runner)
    at_start = f"1 server(s) are not approved and are ignored (e.g. {already_in.id})"
    await discord_fake.wait_for(lambda: at_start in log_text(caplog), timeout=10)
    guild_c, stranger, channel_c = other_server(discord_fake, "Guild C")
    await discord_fake.wait_for(lambda: "which is not approved" in log_text(caplog), timeout=10)

    refused = await answer(discord_fake, await slash_in(discord_fake, "imagine", stranger, channel_c, prompt="a cat"))
    assert refused.ephemeral and "isn't approved" in refused.text()
    assert mj.submits() == []

    # C's own owner cannot approve it; the bot owner can, from anywhere.
    denied = await admin(discord_fake, "server approve", user=discord_fake.admin, guild_id=str(guild_c.id))
    assert "bot owner" in denied.text()
    approved = await admin(discord_fake, "server approve", user=discord_fake.owner, guild_id=str(guild_c.id))
    assert "is approved" in approved.text() and "Guild C" in approved.text()
    message = await (await slash_in(discord_fake, "imagine", stranger, channel_c, prompt="a cat")).wait_original()
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)

    listing = (await admin(discord_fake, "server list", user=discord_fake.owner)).text()
    assert str(guild_c.id) in listing and str(discord_fake.guild.id) in listing
    await admin(discord_fake, "server revoke", user=discord_fake.owner, guild_id=str(guild_c.id))
    refused = await answer(discord_fake, await slash_in(discord_fake, "imagine", stranger, channel_c, prompt="a dog"))
    assert "isn't approved" in refused.text()
    assert len(mj.submits()) == 1


# ---- item 10: text from upstreams is shown, not obeyed ------------------------------------------------


async def test_nothing_the_bot_sends_can_ping_everyone_or_a_role(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await start(runner)
    role = discord_fake.add_role("Moderators")
    hostile = f"@everyone <@&{role.id}> [Free Nitro](https://evil.example)"
    grid = await imagine_done(discord_fake, f"a cat {hostile}")
    handle = await imagine(discord_fake, "a dog")
    message = await handle.wait_original()
    task_id = await last_task_id(runner, discord_fake.member)
    mj.fail(task_id, f"Banned prompt {hostile}\n# Your account is suspended")
    await discord_fake.wait_for(lambda: "did not finish" in message.text(), timeout=15)
    assert "evil.example" in json.dumps(message.embed)  # the server's reason is shown, as text

    for shown in (grid, message):
        text = json.dumps(shown.embed, ensure_ascii=False)
        assert "@everyone" not in text and f"<@&{role.id}>" not in text and "[Free Nitro](" not in text
    for request in discord_fake.requests:
        body = request.json if isinstance(request.json, dict) else {}
        body = body.get("data", body) if isinstance(body.get("data"), dict) else body
        if body.get("content"):
            parse = set((body.get("allowed_mentions") or {"parse": ["everyone", "roles"]}).get("parse", []))
            assert parse <= {"users"}, (request.path, body.get("allowed_mentions"))
