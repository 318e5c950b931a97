"""bot/policy.py: the pure pre-submit checks, and the Policy service over a real SQLite store."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from bot.errors import NotAllowed
from bot.i18n import SUPPORTED, catalog, t
from bot.models import TaskRecord
from bot.policy import (
    DAY,
    ChannelInfo,
    GuildSettings,
    OwnerRules,
    Policy,
    Usage,
    banned_word_in,
    check_channel,
    check_limits,
    day_start,
    may_click,
    normalize_words,
    split_words,
)
from bot.storage.sqlite import Store
from tests.pg import Backend, backend_fixture, postgres_server_fixture  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
GUILD = 10
NOON = 1_750_000_000.0 - (1_750_000_000.0 % DAY) + DAY / 2


def reason(call: object) -> NotAllowed:
    assert callable(call)
    with pytest.raises(NotAllowed) as caught:
        call()
    return caught.value


# ---- banned words ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "found"),
    [
        ("a castle, GORE everywhere", "gore"),
        ("gore.", "gore"),
        ("a gorge at dawn", None),
        ("a class photo", None),
        ("after the blood bath --ar 3:2", "blood bath"),
        ("一只可爱的血腥猫", "血腥"),
    ],
)
def test_banned_words_match_whole_words_in_any_case(prompt: str, found: str | None) -> None:
    assert banned_word_in(prompt, ("ass", "gore", "blood bath", "血腥")) == found


@pytest.mark.parametrize(
    "prompt",
    [
        "a castle, ｇｏｒｅ everywhere",  # fullwidth letters
        "a castle, go\u200bre everywhere",  # zero-width space inside the word
        "a castle, g\u00ado\u200dr\u2060e",  # soft hyphen, joiner, word joiner
        "a castle, \u202egore\u202c",  # direction override around it
        "a castle, GＯRE",
        "the blood\u3000bath",  # ideographic space between the words
        "一只\u200b血\u200b腥的猫",
    ],
)
def test_banned_words_are_matched_after_nfkc_with_invisible_characters_removed(prompt: str) -> None:
    assert banned_word_in(prompt, ("gore", "blood bath", "血腥")) is not None


def test_banned_words_saved_with_fullwidth_or_invisible_characters_still_match() -> None:
    assert banned_word_in("a gore scene", ("ｇｏｒｅ",)) == "ｇｏｒｅ"
    assert banned_word_in("a gore scene", ("go\u200bre",)) == "go\u200bre"
    assert normalize_words(["ＧＯ\u200bＲＥ", "gore"]) == ("gore",)


def test_admin_word_lists_are_cleaned() -> None:
    assert normalize_words(split_words("Gore,  blood   Bath ;gore\n\n")) == ("gore", "blood bath")


# ---- limits ---------------------------------------------------------------------------------------


def test_under_every_limit_passes() -> None:
    settings = GuildSettings(GUILD, daily_quota=3, user_concurrent=2, guild_concurrent=5, cooldown=30)
    check_limits(settings, Usage(today=2, running=1, guild_running=4, last_submit=NOON - 31), NOON)


def test_the_quota_message_says_when_it_resets() -> None:
    error = reason(lambda: check_limits(GuildSettings(GUILD, daily_quota=3), Usage(today=3), NOON))
    assert error.key == "policy.quota"
    assert error.params["when"] == f"<t:{int(day_start(NOON) + DAY)}:R>"
    assert "resets <t:" in t(error.key, "en", **error.params)


def test_cooldown_says_when_the_next_submit_is_allowed() -> None:
    error = reason(lambda: check_limits(GuildSettings(GUILD, cooldown=60), Usage(last_submit=NOON - 10), NOON))
    assert error.key == "policy.cooldown" and error.params["when"] == f"<t:{int(NOON + 50)}:R>"


def test_concurrency_limits_per_user_and_per_guild() -> None:
    error = reason(lambda: check_limits(GuildSettings(GUILD, user_concurrent=1), Usage(running=1), NOON))
    assert error.key == "policy.user_busy" and error.params == {"detail": "", "count": 1, "limit": 1}
    error = reason(lambda: check_limits(GuildSettings(GUILD, guild_concurrent=4), Usage(guild_running=4), NOON))
    assert error.key == "policy.guild_busy"


def test_zero_means_no_limit() -> None:
    check_limits(GuildSettings(GUILD), Usage(today=10_000, running=500, guild_running=900, last_submit=NOON), NOON)


# ---- channels and buttons -------------------------------------------------------------------------


def test_allowed_channels_include_their_threads() -> None:
    settings = GuildSettings(GUILD, allowed_channels=(1, 2))
    check_channel(settings, 2, None)
    check_channel(settings, 77, ChannelInfo(parent_id=1))
    error = reason(lambda: check_channel(settings, 3, ChannelInfo()))
    assert error.key == "policy.channel_not_allowed" and error.params["channels"] == "<#1> <#2>"


def test_nsfw_only_fails_closed_for_unknown_channels() -> None:
    settings = GuildSettings(GUILD, nsfw_only=True)
    check_channel(settings, 5, ChannelInfo(nsfw=True))
    assert reason(lambda: check_channel(settings, 5, ChannelInfo(nsfw=False))).key == "policy.nsfw_only"
    assert reason(lambda: check_channel(settings, 5, None)).key == "policy.nsfw_only"


def test_who_may_click() -> None:
    owner_only = GuildSettings(GUILD, button_access="owner")
    assert may_click(GuildSettings(GUILD), user_id=2, owner_id=1, manager=False)
    assert may_click(owner_only, user_id=1, owner_id=1, manager=False)
    assert may_click(owner_only, user_id=2, owner_id=1, manager=True)
    assert not may_click(owner_only, user_id=2, owner_id=1, manager=False)


# ---- the service over SQLite ----------------------------------------------------------------------


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = await Store.open(tmp_path / "bot.sqlite3")
    yield store
    await store.close()


def task(task_id: str, *, user_id: int = 1, delivered: bool = False, created_at: float = 0.0) -> TaskRecord:
    return TaskRecord(
        id=task_id,
        action="IMAGINE",
        user_id=user_id,
        channel_id=3,
        guild_id=GUILD,
        delivered=delivered,
        created_at=created_at or time.time(),
    )


async def test_settings_persist_across_a_reopen(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "bot.sqlite3")
    await Policy(store).update(
        GUILD, daily_quota=4, allowed_channels=(7, 8), banned_words=("gore",), button_access="owner", nsfw_only=True
    )
    await store.close()
    store = await Store.open(tmp_path / "bot.sqlite3")
    try:
        settings = await Policy(store).settings(GUILD)
        assert settings == GuildSettings(
            GUILD, daily_quota=4, allowed_channels=(7, 8), banned_words=("gore",), button_access="owner", nsfw_only=True
        )
        assert await Policy(store).settings(GUILD + 1) == GuildSettings(GUILD + 1)
    finally:
        await store.close()


async def test_usage_counts_the_tasks_table(store: Store) -> None:
    now = time.time()
    await store.insert_task(task("1"))
    await store.insert_task(task("2", delivered=True))
    await store.insert_task(task("3", created_at=day_start(now) - 60, delivered=True))  # yesterday
    await store.insert_task(task("4", user_id=2))
    usage = await Policy(store).usage(GUILD, 1, now)
    assert usage.today == 2 and usage.running == 1 and usage.guild_running == 2
    assert usage.last_submit is not None and now - usage.last_submit < 60


async def test_submits_in_flight_hold_their_slot(store: Store) -> None:
    policy = Policy(store)
    await policy.update(GUILD, user_concurrent=1)
    entered = asyncio.Event()
    release = asyncio.Event()

    async def first() -> None:
        async with policy.admit(guild_id=GUILD, user_id=1, channel_id=3, prompt="a cat"):
            entered.set()
            await release.wait()

    running = asyncio.create_task(first())
    await entered.wait()
    with pytest.raises(NotAllowed) as caught:
        async with policy.admit(guild_id=GUILD, user_id=1, channel_id=3, prompt="a dog"):
            pass
    assert caught.value.key == "policy.user_busy"
    release.set()
    await running
    async with policy.admit(guild_id=GUILD, user_id=1, channel_id=3, prompt="a dog"):
        pass


async def test_commands_in_direct_messages_are_refused_unless_the_operator_allows_them(store: Store) -> None:
    with pytest.raises(NotAllowed) as refused:
        async with Policy(store).admit(guild_id=None, user_id=1, channel_id=3, prompt="a cat"):
            pass
    assert refused.value.key == "policy.dm_off"
    allowed = Policy(store, owner_rules=OwnerRules(dm_commands=True, dm_daily_quota=2))
    async with allowed.admit(guild_id=None, user_id=1, channel_id=3, prompt="a cat") as rules:
        assert rules.daily_quota == 2


async def test_commands_in_direct_messages_count_against_the_daily_cap(store: Store) -> None:
    policy = Policy(store, owner_rules=OwnerRules(dm_commands=True, dm_daily_quota=2))
    for task_id in ("1", "2"):
        await store.insert_task(replace(task(task_id), guild_id=None))
    await store.insert_task(task("3"))  # made in a server: not counted against the DM cap
    with pytest.raises(NotAllowed) as refused:
        async with policy.admit(guild_id=None, user_id=1, channel_id=3, prompt="a cat"):
            pass
    assert refused.value.key == "policy.quota"
    async with policy.admit(guild_id=None, user_id=2, channel_id=3, prompt="a cat"):
        pass  # another member's count is their own


async def test_servers_that_set_no_quota_get_the_operators_default(store: Store) -> None:
    policy = Policy(store, owner_rules=OwnerRules(default_daily_quota=1))
    await store.insert_task(task("1", delivered=True))
    with pytest.raises(NotAllowed) as refused:
        async with policy.admit(guild_id=GUILD, user_id=1, channel_id=3, prompt="a cat"):
            pass
    assert refused.value.key == "policy.quota" and refused.value.params["limit"] == 1
    await policy.update(GUILD, daily_quota=5)  # the server's own quota wins over the default
    async with policy.admit(guild_id=GUILD, user_id=1, channel_id=3, prompt="a cat"):
        pass
    assert (await policy.settings(GUILD)).daily_quota == 5


async def test_banned_words_apply_to_the_modal_step_in_every_place(store: Store) -> None:
    policy = Policy(store, owner_rules=OwnerRules(dm_commands=False))
    await policy.update(GUILD, banned_words=("gore",))
    with pytest.raises(NotAllowed):
        await policy.check_prompt(GUILD, "ｇｏ\u200bｒｅ")
    with pytest.raises(NotAllowed) as refused:
        await policy.check_prompt(None, "a cat")  # DMs are off: nothing reaches the API from there
    assert refused.value.key == "policy.dm_off"


def test_every_policy_admin_and_me_message_exists_in_every_language() -> None:
    used: set[str] = set()
    pattern = re.compile(r"""["']((?:policy|admin|me)\.[a-z_]+)["']""")
    for name in ("bot/policy.py", "bot/upstream/keys.py", "cogs/admin.py", "cogs/me.py"):
        used |= set(pattern.findall(ROOT.joinpath(name).read_text(encoding="utf-8")))
    # Keys built at runtime from a fixed set of values.
    used |= {f"admin.reason_{r}" for r in ("unauthorized", "quota")}
    used |= {f"admin.test_{s}" for s in ("reachable", "unauthorized", "quota", "error")}
    used |= {f"admin.access_{a}" for a in ("anyone", "owner")}
    assert len(used) > 40
    for language in SUPPORTED:
        assert sorted(used - set(catalog(language))) == [], language


async def test_a_settings_change_in_one_process_reaches_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.policy as policy_module

    path = tmp_path / "shared.sqlite3"
    store_a, store_b = await Store.open(path, owner="a"), await Store.open(path, owner="b")
    try:
        policy_a, policy_b = Policy(store_a), Policy(store_b)
        assert (await policy_b.settings(7)).daily_quota == 0
        await policy_a.update(7, daily_quota=3)
        assert (await policy_b.settings(7)).daily_quota == 0  # b trusts its copy for SETTINGS_TTL
        monkeypatch.setattr(policy_module, "SETTINGS_TTL", 0.0)
        assert (await policy_b.settings(7)).daily_quota == 3
    finally:
        await store_a.close()
        await store_b.close()


async def test_limits_count_a_submit_in_flight_in_another_process(backend: Backend) -> None:
    store_a, store_b = await backend.open("a"), await backend.open("b")
    policy_a, policy_b = Policy(store_a), Policy(store_b)
    await policy_a.update(7, user_concurrent=1, guild_concurrent=2)
    admit = {"guild_id": 7, "channel_id": 70, "prompt": "a cat"}
    async with policy_a.admit(user_id=1, **admit):
        # a's submit is on its way to the API and not stored yet: b still counts it.
        with pytest.raises(NotAllowed) as refused:
            async with policy_b.admit(user_id=1, **admit):
                pass
        assert refused.value.key == "policy.user_busy"
        async with policy_b.admit(user_id=2, **admit):  # another user fills the guild's second place
            with pytest.raises(NotAllowed) as full:
                async with policy_a.admit(user_id=3, **admit):
                    pass
            assert full.value.key == "policy.guild_busy"
    async with policy_b.admit(user_id=1, **admit):  # a's slot is gone once its submit ended
        pass
    assert (await policy_b.usage(7, 1)).running == 0  # and no slot is left behind, refused or not
