"""bot/access.py: which place may act on a task, and whether the task's own key may still be used."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.access import Approval, GuildGate, KeyGone, Place, check_task_access, check_task_key
from bot.errors import NotAllowed
from bot.storage.common import migrations
from bot.storage.sqlite import Store

GUILD_A, GUILD_B = 100, 200
OWNER, OUTSIDER = 1, 2
CHANNEL_A, DM_OF_OWNER, DM_OF_OUTSIDER = 10, 11, 12


@dataclass(frozen=True)
class Task:
    user_id: int = OWNER
    guild_id: int | None = GUILD_A
    channel_id: int = CHANNEL_A
    in_dm: bool = False


@dataclass(frozen=True)
class Key:
    guild_id: int | None


class Keys:
    def __init__(self, **keys: Key) -> None:
        self.keys = {name.replace("_", ":"): key for name, key in keys.items()}

    def for_upstream(self, upstream: str) -> Key | None:
        return self.keys.get(upstream.partition("@")[0])


def refused(task: Task, place: Place) -> str:
    with pytest.raises(NotAllowed) as caught:
        check_task_access(task, place)
    return caught.value.key


def test_a_server_task_is_used_in_its_own_server_by_anyone() -> None:
    check_task_access(Task(), Place(OUTSIDER, GUILD_A, 99))


def test_a_server_task_cannot_be_used_from_another_server_even_by_its_owner() -> None:
    assert refused(Task(), Place(OUTSIDER, GUILD_B, 20)) == "access.other_place"
    assert refused(Task(), Place(OWNER, GUILD_B, 20)) == "access.other_place"


def test_a_server_task_delivered_to_dms_works_there_for_its_owner_only() -> None:
    delivered = Task(channel_id=DM_OF_OWNER, in_dm=True)
    check_task_access(delivered, Place(OWNER, None, DM_OF_OWNER))
    assert refused(delivered, Place(OUTSIDER, None, DM_OF_OUTSIDER)) == "access.other_place"
    # ... and not from some other DM of the owner's (a group DM, say): only where it was delivered.
    assert refused(delivered, Place(OWNER, None, 77)) == "access.other_place"
    # A task shown in the server is not pulled into the owner's DMs either.
    assert refused(Task(), Place(OWNER, None, DM_OF_OWNER)) == "access.other_place"


def test_a_dm_task_works_only_for_its_owner_and_only_in_dms() -> None:
    made_in_dm = Task(guild_id=None, channel_id=DM_OF_OWNER)
    check_task_access(made_in_dm, Place(OWNER, None, DM_OF_OWNER))
    assert refused(made_in_dm, Place(OUTSIDER, None, DM_OF_OUTSIDER)) == "access.not_yours"
    assert refused(made_in_dm, Place(OWNER, GUILD_A, CHANNEL_A)) == "access.dm_task_in_server"
    assert refused(made_in_dm, Place(OUTSIDER, GUILD_A, CHANNEL_A)) == "access.not_yours"


def test_the_env_key_and_its_modes_are_always_there() -> None:
    for upstream in ("default", "default@fast"):
        check_task_key(upstream, GUILD_A, Keys(), ["default"])


def test_a_removed_key_is_reported_not_replaced() -> None:
    with pytest.raises(KeyGone) as caught:
        check_task_key("key:7", GUILD_A, Keys(), ["default"])
    assert caught.value.key == "access.key_gone"
    with pytest.raises(KeyGone):  # a mode variant of a removed key
        check_task_key("key:7@fast", GUILD_A, Keys(), ["default"])


def test_a_task_uses_its_own_servers_key_or_a_global_one_never_anothers() -> None:
    keys = Keys(key_1=Key(GUILD_A), key_2=Key(None), key_3=Key(GUILD_B))
    known = ["default", "key:1", "key:2", "key:3"]
    check_task_key("key:1", GUILD_A, keys, known)
    check_task_key("key:2@relax", GUILD_A, keys, known)
    with pytest.raises(KeyGone):
        check_task_key("key:3", GUILD_A, keys, known)
    with pytest.raises(KeyGone):  # a DM task never spends a server's key
        check_task_key("key:1", None, keys, known)


def test_approved_servers() -> None:
    approval = Approval(listed=frozenset({GUILD_A}))
    assert approval.allows(GUILD_A) and not approval.allows(GUILD_B)
    assert approval.allows(GUILD_B, approved={GUILD_B})
    assert Approval(everyone=True).allows(GUILD_B)


async def test_upgrading_approves_the_servers_that_already_used_the_bot(tmp_path: Path) -> None:
    """A database from before approvals: its servers with tasks, settings or keys keep working."""
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for version, script in migrations():
            if version < 8:
                db.executescript(f"{script}\nPRAGMA user_version = {version};")
        task = "INSERT INTO tasks (id, action, user_id, channel_id, guild_id, created_at, updated_at) VALUES "
        db.execute(task + "('t1', 'IMAGINE', 1, 2, 100, 0, 0), ('t2', 'IMAGINE', 1, 3, NULL, 0, 0)")
        db.execute("INSERT INTO guild_settings (guild_id, updated_at) VALUES (200, 0)")
        db.execute(
            "INSERT INTO api_keys (guild_id, label, base_url, token, added_by, created_at, updated_at) "
            "VALUES (300, 'k', 'https://a.example', 't', 1, 0, 0), (NULL, 'g', 'https://b.example', 't', 1, 0, 0)"
        )
    store = await Store.open(path)
    try:
        assert await store.approved_guild_ids() == [100, 200, 300]
        gate = GuildGate(Approval(), store)
        assert await gate.allows(100) and not await gate.allows(400)
        await gate.approve(400, approved_by=1)
        assert await gate.allows(400)  # at once in this process (others within APPROVALS_TTL)
        assert await gate.revoke(400) and not await gate.allows(400)
    finally:
        await store.close()
