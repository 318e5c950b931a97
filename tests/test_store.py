"""Store behaviours, each run on SQLite and on PostgreSQL (tests.pg.backend)."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from bot.models import MJButton, TaskKey, TaskRecord
from bot.storage.sqlite import Store
from tests.pg import Backend, backend_fixture, postgres_server_fixture  # noqa: F401


@pytest.fixture
async def store(backend: Backend) -> Any:
    return await backend.open()


def make(task_id: str = "1748339100123456", **kw) -> TaskRecord:
    base = dict(id=task_id, action="IMAGINE", user_id=11, channel_id=22, guild_id=33, prompt="a cat")
    base.update(kw)
    return TaskRecord(**base)


async def test_migrations_set_the_schema_version(store: Any) -> None:
    assert await store.schema_version() >= 1


async def test_round_trip_keeps_buttons_and_extra(store: Any) -> None:
    buttons = (MJButton("MJ::JOB::upsample::1::" + "a" * 36, "U1"), MJButton("MJ::CustomZoom::x", "Custom Zoom", "🔍"))
    await store.insert_task(make(buttons=buttons, extra={"candidates": ["one", "two"]}))
    loaded = await store.get_task("1748339100123456")
    assert loaded is not None
    assert loaded.buttons == buttons
    assert loaded.extra == {"candidates": ["one", "two"]}
    assert loaded.created_at > 0


async def test_in_flight_lists_only_undelivered_oldest_first(store: Any) -> None:
    await store.insert_task(make("2", created_at=200.0))
    await store.insert_task(make("1", created_at=100.0))
    await store.insert_task(make("3", created_at=50.0, delivered=True))
    assert [r.id for r in await store.in_flight()] == ["1", "2"]
    await store.update_task(TaskKey("default", "1"), delivered=True, status="SUCCESS", progress=100)
    assert [r.id for r in await store.in_flight()] == ["2"]
    done = await store.get_task("1")
    assert done is not None and done.status == "SUCCESS" and done.progress == 100


async def test_update_refuses_unknown_columns(store: Any) -> None:
    await store.insert_task(make())
    with pytest.raises(ValueError):
        await store.update_task(TaskKey("default", "1748339100123456"), nope=1)


async def test_data_survives_reopening(backend: Backend) -> None:
    first = await backend.open()
    await first.insert_task(make(message_id=999))
    await first.set_meta("k", "v")
    await first.close()
    second = await backend.open()
    loaded = await second.get_task("1748339100123456")
    assert loaded is not None and loaded.message_id == 999
    assert await second.get_meta("k") == "v"
    assert (await second.task_for_message(999)).id == "1748339100123456"  # type: ignore[union-attr]


async def test_sqlite_creates_the_database_folder(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "db" / "bot.sqlite3")
    try:
        assert (tmp_path / "db" / "bot.sqlite3").exists()
        assert await store.schema_version() >= 1
    finally:
        await store.close()


async def test_concurrent_clicks_claim_once(store: Any) -> None:
    await store.insert_task(make())
    results = await asyncio.gather(
        *(store.claim_click(TaskKey("default", "1748339100123456"), "act:0", user, window=10) for user in (1, 2, 3))
    )
    assert sorted(results) == [False, False, True]
    await store.release_click(TaskKey("default", "1748339100123456"), "act:0")
    assert await store.claim_click(TaskKey("default", "1748339100123456"), "act:0", 1, window=10)


async def test_a_new_database_file_and_its_wal_and_shm_are_private(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 15 item 11: only the bot's user may read the database (prompts, settings, encrypted keys)."""
    old_umask = os.umask(0o022)  # the usual umask, which would leave the files readable by everyone
    try:
        store = await Store.open(tmp_path / "data" / "bot.sqlite3")
        try:
            await store.insert_task(make())
            files = sorted(p.name for p in (tmp_path / "data").iterdir())
            assert {"bot.sqlite3", "bot.sqlite3-wal", "bot.sqlite3-shm"} <= set(files)
            modes = {name: stat.S_IMODE(os.stat(tmp_path / "data" / name).st_mode) for name in files}
            assert modes == dict.fromkeys(files, 0o600)
        finally:
            await store.close()
        shared = tmp_path / "shared.sqlite3"
        shared.touch(mode=0o644)  # an operator's existing file keeps its mode, with a warning
        await (await Store.open(shared)).close()
        assert stat.S_IMODE(shared.stat().st_mode) == 0o644
        assert "can be read by other users (mode 644)" in caplog.text
    finally:
        os.umask(old_umask)
