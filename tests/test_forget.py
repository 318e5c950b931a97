"""`mj-bot forget USER_ID` deletes what the bot stores about one member, on both backends, and
nothing about anyone else."""

from __future__ import annotations

import dataclasses
import socket
from pathlib import Path

import pytest

from bot import cli
from bot.config import Settings
from bot.models import TaskKey, TaskRecord
from bot.preferences import UserPrefs
from tests.pg import (  # noqa: F401  (fixtures)
    Backend,
    PostgresServer,
    backend_fixture,
    postgres_server_fixture,
)

LEAVING, STAYING, GUILD = 1001, 1002, 77


def task(task_id: str, user_id: int) -> TaskRecord:
    return TaskRecord(id=task_id, action="IMAGINE", user_id=user_id, channel_id=5, guild_id=GUILD, prompt="a cat")


async def test_forget_deletes_one_members_tasks_clicks_settings_and_usage(backend: Backend) -> None:
    store = await backend.open()
    for task_id, user in (("t1", LEAVING), ("t2", LEAVING), ("t3", STAYING)):
        await store.insert_task(task(task_id, user))
    await store.claim_click(TaskKey("default", "t3"), "U1", LEAVING, window=10)  # their click on someone else's grid
    await store.claim_click(TaskKey("default", "t1"), "U2", STAYING, window=10)  # someone's click on their grid
    for user in (LEAVING, STAYING):
        await store.save_prefs(dataclasses.replace(UserPrefs(user_id=user), suffix="--ar 3:2"))
        await store.add_submit_slot(GUILD, user)
    await store.close()

    settings = Settings.from_env({"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", "DATABASE_URL": backend.target})
    lines = await cli.forget(settings, LEAVING)

    assert lines[0].startswith(f"deleted 5 row(s) about user {LEAVING}: "), lines  # + any later table's rows
    for counted in ("clicks 1", "submit_slots 1", "tasks 2", "user_prefs 1"):
        assert counted in lines[0]
    assert await backend.sql("SELECT id FROM tasks ORDER BY id") == [("t3",)]
    assert await backend.sql("SELECT user_id FROM clicks") == []  # theirs, and the one on their deleted grid
    assert await backend.sql("SELECT user_id FROM user_prefs") == [(STAYING,)]
    assert await backend.sql("SELECT user_id FROM submit_slots") == [(STAYING,)]


async def test_a_file_that_is_not_a_database_is_one_clear_line(tmp_path: Path) -> None:
    (tmp_path / "bot.sqlite3").write_bytes(b"not a database, just a file someone pointed DATABASE_PATH at" * 20)
    settings = Settings.from_env(
        {"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", "DATABASE_PATH": str(tmp_path / "bot.sqlite3")}
    )
    with pytest.raises(cli.StartupFailure, match="cannot delete") as failed:
        await cli.forget(settings, LEAVING)
    assert failed.value.exit_code == cli.EXIT_DATABASE


async def test_an_unreachable_postgresql_is_one_clear_line_without_the_password() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    target = f"postgresql://bot:pw-secret@127.0.0.1:{port}/mj"
    settings = Settings.from_env({"DISCORD_TOKEN": "t", "MJ_API_BASE": "simulator", "DATABASE_URL": target})
    with pytest.raises(cli.StartupFailure, match="cannot delete") as failed:
        await cli.forget(settings, LEAVING)
    assert failed.value.exit_code == cli.EXIT_DATABASE and "pw-secret" not in str(failed.value)
