"""Issue 15 item 4, end to end: a guild admin's key server that answers with another guild's task id
gets a row of its own. The first task's row, its message and its buttons stay as they were; the real
bot, the real API client and the real store run between the fake Discord and two simulated APIs."""

from __future__ import annotations

import pytest

from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done
from tests.e2e.test_admin import (  # noqa: F401  (mj2: a fixture)
    GOOD_SECRET,
    add_key,
    answer,
    button_id,
    imagine,
    imagine_done,
    mj2,
    start,
)
from tests.fakes.discord import FakeDiscord


async def test_a_server_answering_with_another_tasks_id_cannot_overwrite_its_row(
    runner: BotRunner,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    mj2: SimulatedProxy,  # noqa: F811  (the fixture imported above)
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bot = await start(runner)
    member = discord_fake.member
    first = await imagine_done(discord_fake, "a lighthouse")  # on the operator's server (default)
    original = (await bot.store.recent_tasks(member.id, 1))[0]
    assert original.upstream == "default"

    # An admin's own key server answers every submit with that task's id.
    await add_key(discord_fake, "own", mj2.base_url, GOOD_SECRET)
    monkeypatch.setattr(mj2, "_new_id", lambda: original.id)
    second = await imagine_done(discord_fake, "a storm at sea")

    rows = {r.prompt: r for r in await bot.store.recent_tasks(member.id, 10)}
    assert set(rows) == {"a lighthouse", "a storm at sea"}  # two rows: the first was not replaced
    kept, forged = rows["a lighthouse"], rows["a storm at sea"]
    assert kept.id == forged.id == original.id and forged.upstream.startswith("key:")
    assert kept.upstream == "default" and kept.message_id == first.id and kept.status == "SUCCESS"
    assert forged.message_id == second.id

    # The first grid's button still acts on the first task, on its own server.
    await (await discord_fake.click(first, button_id(first, "U1"), user=member)).response()
    upscale = await discord_fake.wait_for_message(lambda m: m.reply_to == first.id)
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    assert [r.json["taskId"] for r in mj.submits("/submit/action")] == [original.id]
    assert mj2.submits("/submit/action") == []

    # A bare id that two servers share is refused in plain words, not guessed.
    handle = await discord_fake.slash("show", user=member, channel=discord_fake.channel, options={"task_id": kept.id})
    assert "More than one image service has a task with this id" in (await answer(discord_fake, handle)).text()


async def test_one_server_answering_another_members_submit_with_a_stored_id_is_refused(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The operator's server serves every guild: it cannot hand one member's stored task to another."""
    bot = await runner.start()
    member, other = discord_fake.member, discord_fake.admin
    first = await imagine_done(discord_fake, "a lighthouse")
    original = (await bot.store.recent_tasks(member.id, 1))[0]

    monkeypatch.setattr(mj, "_new_id", lambda: original.id)
    handle = await imagine(discord_fake, "a storm at sea", user=other)
    assert "answered with the id of a task that is not yours" in (await answer(discord_fake, handle)).text()

    kept = await bot.store.recent_tasks(member.id, 10)
    assert [(r.prompt, r.message_id, r.status) for r in kept] == [("a lighthouse", first.id, "SUCCESS")]
    assert await bot.store.recent_tasks(other.id, 10) == []
    assert "a storm" not in first.text() and "a lighthouse" in first.text()
