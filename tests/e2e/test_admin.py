"""Issue 4, end to end: /mjadmin keys, limits, rules and stats, /mj me and /mj history.

The real bot runs between the fake Discord and one or two simulated APIs; nothing of ours is mocked.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.__main__ import setup_logging
from bot.bot import MJBot
from bot.config import ConfigError
from bot.upstream.keys import KeyCipher
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done, log_text
from tests.fakes.discord import MANAGE_GUILD, FakeChannel, FakeDiscord, FakeMember, FakeMessage, InteractionHandle

FERNET = KeyCipher.generate()
GOOD_SECRET = "sk-second-proxy-secret-7f3a9c"
BAD_SECRET = "sk-wrong-key-never-valid-1111"


#: host:port of the second upstreams running now: the operator allows them (KEY_ALLOWED_HOSTS).
LOCAL_UPSTREAMS: list[str] = []


@pytest.fixture
async def mj2() -> AsyncIterator[SimulatedProxy]:
    """A second upstream with its own key: where a good admin-added key points."""
    async with SimulatedProxy(flavor="relay", api_key=GOOD_SECRET, clock="reads", progress_steps=2) as proxy:
        LOCAL_UPSTREAMS.append(f"127.0.0.1:{proxy.port}")
        try:
            yield proxy
        finally:
            LOCAL_UPSTREAMS.remove(f"127.0.0.1:{proxy.port}")


def allowed(runner: BotRunner) -> tuple[str, ...]:
    """The fake Discord's pair (conftest) plus the second upstreams' on 127.0.0.1."""
    return (*runner.settings.key_allowed_hosts, *LOCAL_UPSTREAMS)


async def start(runner: BotRunner, **changes: Any) -> MJBot:
    """Key encryption on, and the simulators on 127.0.0.1 allowed for server admins' keys."""
    return await runner.start(key_encryption_key=FERNET, key_allowed_hosts=allowed(runner), **changes)


def latest(handle: InteractionHandle) -> FakeMessage | None:
    """The newest finished, visible answer to an interaction (original or followup)."""
    answers = [m for m in (handle.original, *handle.followups) if m is not None and not m.loading and not m.deleted]
    return answers[-1] if answers else None


async def answer(fake: FakeDiscord, handle: InteractionHandle) -> FakeMessage:
    return await fake.wait_for(lambda: latest(handle), timeout=10, what="an answer")


async def admin(
    fake: FakeDiscord, subcommand: str, user: FakeMember | None = None, force: bool = False, **options: Any
) -> FakeMessage:
    handle = await fake.slash(
        "mjadmin", subcommand=subcommand, user=user or fake.admin, channel=fake.channel, options=options, force=force
    )
    return await answer(fake, handle)


async def add_key(
    fake: FakeDiscord, label: str, base_url: str, secret: str, user: FakeMember | None = None, **options: Any
) -> FakeMessage:
    handle = await fake.slash(
        "mjadmin",
        subcommand="key add",
        user=user or fake.admin,
        channel=fake.channel,
        options={"label": label, "base_url": base_url, **options},
    )
    callback = await handle.response()
    assert callback.type == 9, f"expected the key form, got {latest(handle) and latest(handle).text()}"  # type: ignore[union-attr]
    assert handle.modal is not None
    submitted = await handle.submit_modal({handle.modal.inputs[0].custom_id: secret})
    return await answer(fake, submitted)


async def imagine(
    fake: FakeDiscord, prompt: str, user: FakeMember | None = None, channel: FakeChannel | None = None
) -> InteractionHandle:
    return await fake.slash(
        "imagine", user=user or fake.member, channel=channel or fake.channel, options={"prompt": prompt}
    )


async def imagine_done(fake: FakeDiscord, prompt: str, user: FakeMember | None = None) -> FakeMessage:
    message = await (await imagine(fake, prompt, user)).wait_original()
    return await fake.wait_for(lambda: is_done(message) and message, timeout=15)


def button_id(message: FakeMessage, label: str) -> str:
    return next(row.custom_id for row in message.buttons if label in (row.label, row.emoji) and row.custom_id)


def everything_discord_saw(fake: FakeDiscord) -> str:
    """Every body the bot sent to Discord, every message version and every modal it opened."""
    parts: list[Any] = [[r.path, r.query, r.json] for r in fake.requests]
    for message in fake.messages.values():
        parts += [[v.content, v.embeds, v.components] for v in message.history]
    parts += [[m.title, m.components] for m in fake.modals]
    return json.dumps(parts, ensure_ascii=False)


def database_bytes(path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))


@contextlib.contextmanager
def production_logging_at_debug(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """LOG_LEVEL=DEBUG exactly as __main__ sets it up, with pytest's capture handler attached."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    quiet = ("discord.http", "discord.gateway", "httpx")
    levels = {name: logging.getLogger(name).level for name in quiet}
    setup_logging("DEBUG")
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.handlers[:], root.level = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


# ---- who may administer ---------------------------------------------------------------------------


async def test_member_without_manage_server_is_refused_even_with_a_forged_interaction(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await start(runner)
    command = discord_fake.command("mjadmin", guild=discord_fake.guild)
    assert command is not None and int(command["default_member_permissions"]) == MANAGE_GUILD
    with pytest.raises(PermissionError):  # Discord's client hides it from them
        await discord_fake.slash(
            "mjadmin", subcommand="settings set", user=discord_fake.member, channel=discord_fake.channel
        )

    refused = await admin(discord_fake, "settings set", user=discord_fake.member, force=True, daily_quota=1)
    assert refused.ephemeral and "not allowed" in refused.text()
    assert (await bot.policy.settings(discord_fake.guild.id)).daily_quota == 0

    handle = await discord_fake.slash(
        "mjadmin",
        subcommand="key add",
        user=discord_fake.member,
        channel=discord_fake.channel,
        options={"label": "mine", "base_url": mj.base_url},
        force=True,
    )
    assert (await handle.response()).type == 4  # a refusal, not the key form
    assert handle.modal is None and bot.keys.visible(discord_fake.guild.id) == []

    allowed = await admin(discord_fake, "settings set", daily_quota=1)
    assert "Saved" in allowed.text()


async def test_only_the_bot_owner_adds_keys_for_all_servers(
    runner: BotRunner, discord_fake: FakeDiscord, mj2: SimulatedProxy
) -> None:
    bot = await start(runner)
    refused = await admin(discord_fake, "key add", label="everywhere", base_url=mj2.base_url, scope="global")
    assert "bot owner" in refused.text()

    saved = await add_key(
        discord_fake, "everywhere", mj2.base_url, GOOD_SECRET, user=discord_fake.owner, scope="global"
    )
    assert "all servers" in saved.text()
    assert [k.is_global for k in bot.keys.visible(discord_fake.guild.id)] == [True]
    # A server admin can see that it exists, but not change it.
    removed = await admin(discord_fake, "key remove", key="everywhere")
    assert "bot owner" in removed.text() and bot.keys.visible(discord_fake.guild.id)


async def test_owner_ids_make_extra_bot_owners(
    runner: BotRunner, discord_fake: FakeDiscord, mj2: SimulatedProxy
) -> None:
    bot = await start(runner, owner_ids=(discord_fake.admin.id,))
    saved = await add_key(discord_fake, "everywhere", mj2.base_url, GOOD_SECRET, scope="global")
    assert "all servers" in saved.text() and bot.keys.visible(None)[0].label == "everywhere"


async def test_server_admins_cannot_point_keys_at_private_addresses(
    runner: BotRunner, discord_fake: FakeDiscord, mj2: SimulatedProxy
) -> None:
    bot = await runner.start(key_encryption_key=FERNET)  # no KEY_ALLOWED_HOSTS
    refused = await admin(discord_fake, "key add", label="local", base_url=mj2.base_url)
    assert "127.0.0.1" in refused.text() and "KEY_ALLOWED_HOSTS" in refused.text()
    assert await add_key(discord_fake, "local", mj2.base_url, GOOD_SECRET, user=discord_fake.owner)
    assert [k.label for k in bot.keys.visible(discord_fake.guild.id)] == ["local"]


async def test_adding_a_key_without_an_encryption_key_tells_the_admin_how_to_fix_it(
    runner: BotRunner, discord_fake: FakeDiscord, mj2: SimulatedProxy
) -> None:
    await runner.start()
    handle = await discord_fake.slash(
        "mjadmin",
        subcommand="key add",
        user=discord_fake.admin,
        channel=discord_fake.channel,
        options={"label": "main", "base_url": mj2.base_url},
    )
    message = await answer(discord_fake, handle)
    assert handle.modal is None
    assert message.ephemeral and "KEY_ENCRYPTION_KEY" in message.text()


# ---- keys: secrecy, test, failover, health --------------------------------------------------------


async def test_a_key_added_through_the_form_is_used_and_its_secret_never_leaks(
    runner: BotRunner,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    mj2: SimulatedProxy,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with production_logging_at_debug(caplog):
        bot = await start(runner)
        # The command itself has no option for the secret: only the form asks for it.
        key_add = next(
            o for o in discord_fake.command("mjadmin", guild=discord_fake.guild)["options"] if o["name"] == "key"
        )
        add_options = next(o for o in key_add["options"] if o["name"] == "add")["options"]
        assert {o["name"] for o in add_options} == {"label", "base_url", "auth_style", "mode", "priority", "scope"}

        saved = await add_key(discord_fake, "relay main", mj2.base_url, GOOD_SECRET, priority=5)
        assert saved.ephemeral and "relay main" in saved.text() and GOOD_SECRET[-4:] in saved.text()
        listing = await admin(discord_fake, "key list")
        assert "relay main" in listing.text() and "127.0.0.1" in listing.text() and "healthy" in listing.text()
        tested = await admin(discord_fake, "key test", key="relay main")
        assert "works" in tested.text()

        await imagine_done(discord_fake, "a quiet harbour")

    assert mj.submits("/submit/imagine") == []
    submitted = mj2.submits("/submit/imagine")
    assert len(submitted) == 1 and submitted[0].headers["authorization"] == f"Bearer {GOOD_SECRET}"
    assert any(r.path.endswith("/task/list-by-condition") for r in mj2.requests)  # tracked on the same key
    record = (await bot.store.recent_tasks(discord_fake.member.id, 1))[0]
    assert record.upstream == f"key:{bot.keys.visible(discord_fake.guild.id)[0].id}"

    assert GOOD_SECRET not in everything_discord_saw(discord_fake)
    logs = log_text(caplog)
    assert "relay main" in logs  # the log did capture the bot at DEBUG...
    assert GOOD_SECRET not in logs  # ...and never the secret
    await runner.stop()
    stored = database_bytes(runner.settings.database_path)
    assert b"relay main" in stored and GOOD_SECRET.encode() not in stored


async def test_test_reports_a_rejected_key_in_plain_words(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await start(runner)
    await add_key(discord_fake, "typo", mj.base_url, BAD_SECRET)
    tested = await admin(discord_fake, "key test", key="typo")
    assert "rejected the key" in tested.text()
    assert not bot.keys.visible(discord_fake.guild.id)[0].healthy


async def test_a_refused_submit_fails_over_to_the_next_key_and_the_task_stays_on_it(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    bot = await start(runner)
    await add_key(discord_fake, "stale", mj.base_url, BAD_SECRET, priority=10)
    await add_key(discord_fake, "good", mj2.base_url, GOOD_SECRET, priority=1)

    grid = await imagine_done(discord_fake, "a red fox")
    refused = mj.submits("/submit/imagine")
    assert len(refused) == 1 and refused[0].headers["authorization"] == f"Bearer {BAD_SECRET}"
    assert len(mj2.submits("/submit/imagine")) == 1

    await (await discord_fake.click(grid, button_id(grid, "U1"), user=discord_fake.member)).response()
    upscale = await discord_fake.wait_for_message(lambda m: m.reply_to is not None)
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    # The click went to the key that made the task, with no new try on the refused key.
    assert len(mj2.submits("/submit/action")) == 1 and mj.submits("/submit/action") == []
    assert len(mj.submits()) == 1
    good = bot.keys.find("good", discord_fake.guild.id)
    assert good is not None
    assert {r.upstream for r in await bot.store.recent_tasks(discord_fake.member.id)} == {good.upstream}


async def test_a_key_refused_three_times_is_skipped_and_its_admin_is_told_once(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    bot = await start(runner)
    await add_key(discord_fake, "stale", mj.base_url, BAD_SECRET, priority=10)
    await add_key(discord_fake, "good", mj2.base_url, GOOD_SECRET)
    dm = discord_fake.dm_channel(discord_fake.admin)

    for n in range(4):
        await (await imagine(discord_fake, f"a lighthouse {n}")).wait_original()
    assert len(mj.submits("/submit/imagine")) == 3  # the 4th skipped the unhealthy key
    assert len(mj2.submits("/submit/imagine")) == 4

    notice = await discord_fake.wait_for_message(channel=dm)
    assert "stale" in notice.text() and "/mjadmin key" in notice.text()
    listing = await admin(discord_fake, "key list")
    assert "unhealthy" in listing.text()
    assert len(discord_fake.channel_messages(dm)) == 1
    assert BAD_SECRET not in everything_discord_saw(discord_fake)

    # Enabling is the admin's "try it again": it is back at the front of the line.
    await admin(discord_fake, "key enable", key="stale")
    stale = bot.keys.find("stale", discord_fake.guild.id)
    assert stale is not None and stale.healthy and stale.failures == 0


async def test_disabled_and_removed_keys_are_not_used_for_new_tasks(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    bot = await start(runner)
    await add_key(discord_fake, "good", mj2.base_url, GOOD_SECRET)
    assert "disabled" in (await admin(discord_fake, "key disable", key="good")).text()
    assert "disabled" in (await admin(discord_fake, "key list")).text()
    await imagine_done(discord_fake, "a first owl")
    assert len(mj.submits()) == 1 and mj2.submits() == []  # fell through to the .env key

    await admin(discord_fake, "key enable", key="good")
    await imagine_done(discord_fake, "a second owl")
    assert len(mj2.submits()) == 1

    key_id = bot.keys.visible(discord_fake.guild.id)[0].id
    assert "erased" in (await admin(discord_fake, "key remove", key=f"#{key_id}")).text()
    assert await bot.store.api_key_rows() == [] and "good" not in (await admin(discord_fake, "key list")).text()
    await imagine_done(discord_fake, "a third owl")
    assert len(mj2.submits()) == 1 and len(mj.submits()) == 2


async def test_settings_keys_and_running_tasks_survive_a_restart(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    first = await start(runner)
    await add_key(discord_fake, "good", mj2.base_url, GOOD_SECRET)
    await admin(discord_fake, "settings set", daily_quota=5, cooldown=0, buttons="owner")
    await admin(discord_fake, "settings words_add", words="gore, Blood Bath")
    message = await (await imagine(discord_fake, "a slow sunrise")).wait_original()
    task = next(iter(mj2.tasks.values()))
    mj2.hold(task.id)
    # Stop only once the message is tied to the task (tracked), so the restart resumes this message.
    await discord_fake.wait_for(lambda: task.id in first.tracker.active_ids, timeout=10)

    bot = await runner.restart(key_encryption_key=FERNET, key_allowed_hosts=allowed(runner))
    shown = (await admin(discord_fake, "settings show")).text()
    assert "Tasks per member per day: 5" in shown and "`blood bath`" in shown and "only the member" in shown
    assert "good" in (await admin(discord_fake, "key list")).text()

    mj2.release(task.id)  # the resumed task is polled on its own key after the restart
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    await imagine_done(discord_fake, "a second sunrise")
    assert len(mj2.submits("/submit/imagine")) == 2 and mj.submits() == []
    assert bot.keys.find("good", discord_fake.guild.id) is not None


async def test_stored_keys_without_the_encryption_key_stop_the_start_with_a_clear_error(
    runner: BotRunner, discord_fake: FakeDiscord, mj2: SimulatedProxy
) -> None:
    await start(runner)
    await add_key(discord_fake, "good", mj2.base_url, GOOD_SECRET)
    await runner.stop()
    with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY"):
        await runner.start(key_encryption_key="")
    with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY does not match"):
        await runner.start(key_encryption_key=KeyCipher.generate())


async def test_a_new_encryption_key_listed_first_takes_over_the_stored_keys(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    await start(runner)
    await add_key(discord_fake, "good", mj2.base_url, GOOD_SECRET)
    await runner.stop()
    new = KeyCipher.generate()
    await runner.start(key_encryption_key=f"{new},{FERNET}", key_allowed_hosts=allowed(runner))
    await runner.stop()
    with pytest.raises(ConfigError, match="KEY_ENCRYPTION_KEY does not match"):
        await runner.start(key_encryption_key=FERNET)  # the stored keys moved to the new one
    bot = await runner.start(key_encryption_key=new, key_allowed_hosts=allowed(runner))
    await imagine_done(discord_fake, "an owl after the rotation")
    assert len(mj2.submits("/submit/imagine")) == 1 and mj.submits() == []
    assert bot.keys.find("good", discord_fake.guild.id) is not None


# ---- limits and rules -----------------------------------------------------------------------------


async def test_an_exhausted_daily_quota_gets_a_clear_message_and_nothing_is_submitted(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await start(runner)
    await admin(discord_fake, "settings set", daily_quota=1)
    await imagine_done(discord_fake, "a first cat")

    refused = await answer(discord_fake, await imagine(discord_fake, "a second cat"))
    assert refused.ephemeral
    assert "all 1 of your tasks for today" in refused.text() and "resets <t:" in refused.text()
    assert len(mj.submits()) == 1
    # Another member still has their own quota.
    await imagine_done(discord_fake, "a third cat", user=discord_fake.admin)
    assert len(mj.submits()) == 2


async def test_a_banned_word_is_named_and_nothing_is_submitted(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await start(runner)
    await admin(discord_fake, "settings words_add", words="Gore, blood bath")

    refused = await answer(discord_fake, await imagine(discord_fake, "a castle, GORE everywhere --ar 3:2"))
    assert refused.ephemeral and "“gore”" in refused.text()
    refused = await answer(discord_fake, await imagine(discord_fake, "after the blood   bath"))
    assert "“blood bath”" in refused.text()
    assert mj.submits() == []
    await imagine_done(discord_fake, "a gorge at dawn")  # whole words only
    assert len(mj.submits()) == 1


async def test_the_running_task_limit_counts_tasks_from_before_a_restart(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await start(runner)
    await admin(discord_fake, "settings set", user_concurrent=1)
    await (await imagine(discord_fake, "a long task")).wait_original()
    mj.hold(next(iter(mj.tasks.values())).id)

    await runner.restart()
    refused = await answer(discord_fake, await imagine(discord_fake, "one more"))
    assert "You already have 1 task(s) running" in refused.text()
    assert len(mj.submits()) == 1


async def test_only_allowed_and_nsfw_channels_when_the_server_says_so(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    adult = discord_fake.add_channel("adult-art")
    adult.nsfw = True  # before the bot starts, so its cache has it
    await start(runner)
    await admin(discord_fake, "settings channel_add", channel=discord_fake.channel)
    await admin(discord_fake, "settings channel_add", channel=adult)

    refused = await answer(discord_fake, await imagine(discord_fake, "a cat", channel=discord_fake.channel2))
    assert "can't be used in this channel" in refused.text() and f"<#{discord_fake.channel.id}>" in refused.text()

    await admin(discord_fake, "settings set", nsfw_only=True)
    refused = await answer(discord_fake, await imagine(discord_fake, "a cat", channel=discord_fake.channel))
    assert "age-restricted" in refused.text()
    assert mj.submits() == []
    message = await (await imagine(discord_fake, "a cat", channel=adult)).wait_original()
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    assert len(mj.submits()) == 1


async def test_owner_only_buttons_refuse_other_members(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await start(runner)
    other = discord_fake.add_member("other", global_name="Other Member")
    await admin(discord_fake, "settings set", buttons="owner")
    grid = await imagine_done(discord_fake, "a blue bird")

    click = await discord_fake.click(grid, button_id(grid, "U1"), user=other)
    refused = await answer(discord_fake, click)
    assert refused.ephemeral and "Only the member who started this task" in refused.text()
    assert mj.submits("/submit/action") == []

    await (await discord_fake.click(grid, button_id(grid, "U1"), user=discord_fake.member)).response()
    await discord_fake.wait_for(lambda: mj.submits("/submit/action"), timeout=10)


async def test_the_default_speed_mode_applies_to_submits_and_reads(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await start(runner)
    await admin(discord_fake, "settings set", default_mode="relax")
    await imagine_done(discord_fake, "a red kite")
    assert mj.submits("/submit/imagine")[0].path.startswith("/mj-relax/mj/")
    record = (await bot.store.recent_tasks(discord_fake.member.id, 1))[0]
    assert record.upstream == "default@relax"
    assert any(r.path.startswith("/mj-relax/mj/task/") for r in mj.requests)


# ---- usage ----------------------------------------------------------------------------------------


async def test_me_history_and_stats_show_usage(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, mj2: SimulatedProxy
) -> None:
    await start(runner)
    await add_key(discord_fake, "good", mj2.base_url, GOOD_SECRET)
    await admin(discord_fake, "settings set", daily_quota=5)
    grid = await imagine_done(discord_fake, "a paper boat")
    await imagine_done(discord_fake, "a paper plane")

    me = await answer(
        discord_fake,
        await discord_fake.slash("mj", subcommand="me", user=discord_fake.member, channel=discord_fake.channel),
    )
    assert me.ephemeral and "Tasks today: 2 of 5" in me.text() and "Left today: 3" in me.text()

    history = await answer(
        discord_fake,
        await discord_fake.slash("mj", subcommand="history", user=discord_fake.member, channel=discord_fake.channel),
    )
    link = f"https://discord.com/channels/{discord_fake.guild.id}/{discord_fake.channel.id}/{grid.id}"
    assert "a paper boat" in history.text() and link in history.text()

    stats = (await admin(discord_fake, "stats")).text()
    assert "2 task(s): 2 succeeded, 0 failed" in stats
    assert f"<@{discord_fake.member.id}>: 2" in stats
    assert "good: 2" in stats
