"""Issue 15 item 4 (storage): task rows are keyed by (upstream, task id). A server that answers with
another task's id gets a row of its own; it cannot replace, update, lease or click the other task.
Each test runs on SQLite and on PostgreSQL (tests.pg.backend)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot.errors import AmbiguousTask, TaskIdTaken
from bot.models import TaskKey, TaskRecord
from bot.storage.common import migrations
from bot.storage.factory import open_store
from tests.pg import (  # noqa: F401  (fixtures)
    Backend,
    PostgresServer,
    backend_fixture,
    postgres_server_fixture,
    require_asyncpg,
)

A = TaskKey("default", "1748339100123456")  # guild 1's task on the operator's server
B = TaskKey("key:7", A.id)  # the same id, answered by guild 2's admin's key server


def make(key: TaskKey, **kw: Any) -> TaskRecord:
    base: dict[str, Any] = dict(id=key.id, upstream=key.upstream, action="IMAGINE", user_id=11, channel_id=22)
    base.update(kw)
    return TaskRecord(**base)


async def test_a_row_with_another_upstreams_id_leaves_the_first_alone(backend: Backend) -> None:
    store = await backend.open()
    first = await store.insert_task(make(A, guild_id=1, message_id=100, prompt="a lighthouse", status="SUCCESS"))
    await store.update_task(A, delivered=True, result_url="https://cdn.discordapp.com/a.png")
    assert await store.claim_click(A, "act:0", 11, window=60)

    await store.insert_task(make(B, guild_id=2, message_id=200, prompt="forged", user_id=66))
    await store.update_task(B, status="SUCCESS", image_url="https://evil.example/x.png")
    await store.update_many({B: {"progress": 100, "result_url": "https://evil.example/y.png"}})

    kept = await store.get_task(A.id, A.upstream)
    assert kept is not None and (kept.prompt, kept.guild_id, kept.message_id, kept.user_id) == (
        "a lighthouse",
        1,
        100,
        11,
    )
    assert kept.result_url == "https://cdn.discordapp.com/a.png" and kept.image_url is None and kept.delivered
    assert kept.created_at == first.created_at
    other = await store.get_task(B.id, B.upstream)
    assert other is not None and (other.prompt, other.guild_id, other.progress) == ("forged", 2, 100)
    assert not await store.claim_click(A, "act:0", 11, window=60)  # A's click survived B's insert
    assert await store.claim_click(B, "act:0", 66, window=60)  # B's clicks are its own
    assert await store.count_tasks() == 2

    # Replacing B (the same upstream and id) still forgets only B's clicks.
    await store.insert_task(make(B, guild_id=2, user_id=66, prompt="again"))  # the same submit stored again
    assert await store.claim_click(B, "act:0", 66, window=60)
    assert not await store.claim_click(A, "act:0", 11, window=60)


async def test_one_server_cannot_hand_a_stored_task_to_another_member_or_guild(backend: Backend) -> None:
    """One upstream serves several guilds (the operator's relay): an answer that reuses a stored id for
    another member's submit is refused, and nothing of the stored task changes."""
    store = await backend.open()
    await store.insert_task(make(A, guild_id=1, user_id=11, message_id=100, prompt="a lighthouse"))
    assert await store.claim_click(A, "act:0", 11, window=60)
    for guild_id, user_id in ((2, 66), (1, 66), (None, 11)):
        with pytest.raises(TaskIdTaken):
            await store.insert_task(make(A, guild_id=guild_id, user_id=user_id, prompt="forged"))
    with pytest.raises(TaskIdTaken):
        await store.insert_many([make(TaskKey("default", "new")), make(A, guild_id=2, user_id=66)])
    assert await store.get_task("new") is None  # all of the batch or nothing
    kept = await store.get_task(A.id, A.upstream)
    assert kept is not None and (kept.prompt, kept.guild_id, kept.user_id, kept.message_id) == (
        "a lighthouse",
        1,
        11,
        100,
    )
    assert not await store.claim_click(A, "act:0", 11, window=60)  # its click is still there
    await store.insert_task(make(A, guild_id=1, user_id=11, prompt="stored again"))  # the same member's: fine
    assert (await store.get_task(A.id, A.upstream)).prompt == "stored again"  # type: ignore[union-attr]


async def test_a_bare_id_names_one_task_or_is_refused(backend: Backend) -> None:
    store = await backend.open()
    await store.insert_task(make(A, message_id=100))
    assert (await store.get_task(A.id)) is not None  # one row: an old button still works
    assert await store.get_task(A.id, "key:7") is None
    await store.insert_task(make(B, message_id=200))
    with pytest.raises(AmbiguousTask):
        await store.get_task(A.id)  # a typed id, or a button whose message is not known
    with pytest.raises(AmbiguousTask):
        await store.get_task(A.id, message_id=999)
    found = await store.get_task(A.id, message_id=200)  # the button's own message decides
    assert found is not None and found.key == B
    assert (await store.get_task(A.id, A.upstream)).key == A  # type: ignore[union-attr]
    assert await store.get_task("missing") is None


async def test_leases_are_held_per_upstream_and_id(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    await a.insert_task(make(A, created_at=1.0))
    await a.release_leases()
    await b.insert_task(make(B, created_at=2.0))
    assert [r.key for r in await a.claim_tasks(10)] == [A]
    assert await a.renew_leases() == {A} and await b.renew_leases() == {B}
    assert await a.hold_leases([A, B]) == {A}
    assert await b.hold_leases([A, B]) == {B}
    await b.update_task(B, delivered=True)
    assert await a.hold_leases([A]) == {A}  # B's delivery did not touch A


def _sqlite_at_version_5(path: Path) -> None:
    with sqlite3.connect(path) as db:
        for version, script in migrations():
            if version <= 5:
                db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        db.execute(
            "INSERT INTO tasks (id, upstream, action, user_id, channel_id, prompt, created_at, updated_at) "
            "VALUES (?, 'key:3', 'IMAGINE', 11, 22, 'from before', 5.0, 5.0)",
            (A.id,),
        )
        db.execute("INSERT INTO clicks (task_id, button, user_id, created_at) VALUES (?, 'act:1', 11, 1e12)", (A.id,))


async def test_the_migration_keeps_tasks_and_clicks_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    _sqlite_at_version_5(path)
    store = await open_store(path)
    try:
        old = TaskKey("key:3", A.id)
        moved = await store.get_task(A.id)
        assert moved is not None and moved.key == old and moved.prompt == "from before"
        assert not await store.claim_click(old, "act:1", 11, window=60)  # the click came along
        await store.insert_task(make(TaskKey("default", A.id)))
        assert (await store.get_task(A.id, "key:3")).prompt == "from before"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_the_migration_keeps_tasks_and_clicks_postgres(postgres_server: PostgresServer) -> None:
    require_asyncpg()
    import asyncpg

    url = postgres_server.create_database()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
        for version, script in migrations("postgres"):
            if version <= 5:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, 0)", version)
        await conn.execute(
            "INSERT INTO tasks (id, upstream, action, user_id, channel_id, prompt, created_at, updated_at) "
            "VALUES ($1, 'key:3', 'IMAGINE', 11, 22, 'from before', 5.0, 5.0)",
            A.id,
        )
        await conn.execute(
            "INSERT INTO clicks (task_id, button, user_id, created_at) VALUES ($1, 'act:1', 11, 1e12)", A.id
        )
    finally:
        await conn.close()
    store = await open_store(url)
    try:
        old = TaskKey("key:3", A.id)
        moved = await store.get_task(A.id)
        assert moved is not None and moved.key == old and moved.prompt == "from before"
        assert not await store.claim_click(old, "act:1", 11, window=60)
        await store.insert_task(make(TaskKey("default", A.id)))
        assert (await store.get_task(A.id, "key:3")).prompt == "from before"  # type: ignore[union-attr]
    finally:
        await store.close()
