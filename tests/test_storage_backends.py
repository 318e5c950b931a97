"""SQLite and PostgreSQL behind one interface: the same schema, the same answers with the same types,
and PostgreSQL's own concerns (concurrent starts, lost connections, several processes at once)."""

from __future__ import annotations

import asyncio
import calendar
import os
import sqlite3
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.config import ConfigError
from bot.models import NewApiKey, TaskKey, TaskRecord
from bot.preferences import UserPrefs
from bot.storage.common import migrations
from bot.storage.factory import open_store
from bot.storage.protocols import Storage
from bot.storage.sqlite import Store
from tests.pg import (  # noqa: F401  (fixtures)
    Backend,
    PostgresServer,
    backend_fixture,
    postgres_server_fixture,
    require_asyncpg,
)

GUILD = 33


def make(task_id: str, **kw: Any) -> TaskRecord:
    base: dict[str, Any] = dict(id=task_id, action="IMAGINE", user_id=11, channel_id=22, guild_id=GUILD)
    base.update(kw)
    return TaskRecord(**base)


def task_key(task_id: str) -> TaskKey:
    return TaskKey("default", task_id)


def utc(text: str) -> float:
    """Unix seconds of a UTC 'YYYY-MM-DD HH:MM:SS'."""
    return float(calendar.timegm(time.strptime(text, "%Y-%m-%d %H:%M:%S")))


async def add_key(store: Any, label: str = "main", guild_id: int | None = GUILD, **kw: Any) -> int:
    values: dict[str, Any] = dict(
        guild_id=guild_id,
        label=label,
        base_url="https://relay.example",
        auth_style="bearer",
        mode="",
        priority=0,
        token="gAAAA-token",
        last4="cdef",
        added_by=7,
    )
    values.update(kw)
    return int(await store.insert_api_key(NewApiKey(**values)))


SETTINGS: dict[str, Any] = dict(
    daily_quota=5,
    user_concurrent=2,
    guild_concurrent=0,
    cooldown=30,
    allowed_channels=(1380000000000000001, 1380000000000000002),
    button_access="owner",
    default_mode="relax",
    banned_words=["gore", "blood"],
    nsfw_only=True,
)


# ---- the same behaviour on both backends ---------------------------------------------------------


async def test_both_backends_provide_the_storage_protocol(backend: Backend) -> None:
    store = await backend.open("me", lease_seconds=12.5)
    assert isinstance(store, Storage)
    assert store.owner == "me" and store.lease_seconds == 12.5
    assert await store.schema_version() == max(v for v, _ in migrations())


async def test_tasks_update_count_and_list(backend: Backend) -> None:
    store = await backend.open()
    await store.insert_many([make(f"t{i}", created_at=100.0 + i, user_id=11 if i % 2 else 12) for i in range(6)])
    await store.update_many(
        {
            task_key("t0"): {"delivered": True, "status": "SUCCESS"},
            task_key("t1"): {"progress": 50, "status": "IN_PROGRESS"},
            task_key("t2"): {"delivered": True, "status": "FAILURE", "fail_reason": "banned"},
            task_key("t3"): {},
        }
    )
    assert await store.count_tasks() == 6
    assert await store.count_tasks(delivered=True) == 2
    assert await store.count_tasks(delivered=False) == 4
    assert [r.id for r in await store.in_flight()] == ["t1", "t3", "t4", "t5"]
    assert [r.id for r in await store.recent_tasks(11, limit=2)] == ["t5", "t3"]
    t1 = await store.get_task("t1")
    assert t1 is not None and t1.progress == 50 and t1.status == "IN_PROGRESS" and t1.updated_at > 100
    t0 = await store.get_task("t0")
    assert t0 is not None and t0.delivered is True
    with pytest.raises(ValueError):
        await store.update_many({task_key("t1"): {"lease_owner": "x"}})
    with pytest.raises(ValueError):
        await store.update_task(task_key("t1"), id="other")
    assert await store.get_task("missing") is None
    assert await store.task_for_message(1) is None


async def test_task_values_come_back_with_their_types(backend: Backend) -> None:
    store = await backend.open()
    record = make(
        "t1",
        message_id=1380000000000000123,
        guild_id=1380000000000000456,
        user_id=1380000000000000789,
        parent_id="p1",
        queue_position=3,
        image_url="https://x/y.png",
        extra={"n": 1, "ü": "✓"},
        finished_at=123.5,
        created_at=100.25,
    )
    stored = await store.insert_task(record)
    loaded = await store.get_task("t1")
    assert loaded == stored
    assert loaded is not None
    assert type(loaded.message_id) is int and type(loaded.created_at) is float and type(loaded.delivered) is bool
    assert loaded.extra == {"n": 1, "ü": "✓"}
    assert (await store.task_for_message(1380000000000000123)) == stored


async def test_replacing_a_task_forgets_its_clicks(backend: Backend) -> None:
    """SQLite's INSERT OR REPLACE deletes the old row (and, by cascade, its clicks): same on PostgreSQL."""
    store = await backend.open()
    await store.insert_task(make("t1"))
    assert await store.claim_click(task_key("t1"), "act:0", 1, window=60)
    assert not await store.claim_click(task_key("t1"), "act:0", 2, window=60)
    await store.insert_task(make("t1", prompt="again"))
    assert await store.claim_click(task_key("t1"), "act:0", 2, window=60)
    assert not await store.claim_click(task_key("t1"), "act:0", 2, window=60)
    assert await store.claim_click(task_key("t1"), "act:0", 3, window=0)  # window over: claimable again


async def test_prefs_and_meta(backend: Backend) -> None:
    store = await backend.open()
    assert await store.get_prefs(5) == UserPrefs(5)
    prefs = UserPrefs(5, version="6.1", stylize=250, speed="fast", remix=True, aspect="3:2", suffix="--q 2")
    prefs = replace(prefs, option_sets={"cinematic": "--ar 21:9"})
    await store.save_prefs(prefs)
    loaded = await store.get_prefs(5)
    assert loaded == prefs and loaded.option_sets == {"cinematic": "--ar 21:9"} and loaded.remix is True
    await store.save_prefs(replace(prefs, remix=False, stylize=None))
    again = await store.get_prefs(5)
    assert again.remix is False and again.stylize is None
    assert await store.get_meta("k") is None
    await store.set_meta("k", "v1")
    await store.set_meta("k", "v2")
    assert await store.get_meta("k") == "v2"


async def test_choices_made_at_once_are_all_kept(backend: Backend) -> None:
    """Issue 17 item 2: each choice writes its own column, so none is lost to another's read-modify-write
    (two stores: two processes, or one with its own connection each)."""
    a = await backend.open("a")
    b = await backend.open("b")
    await a.save_prefs(UserPrefs(5, suffix="--q 2", option_sets={"keep": "--ar 1:1"}))
    returned = await asyncio.gather(
        a.update_prefs(5, version="7"),
        b.update_prefs(5, aspect="16:9"),
        a.update_prefs(5, stylize=250),
        b.update_prefs(5, remix=True),
        a.set_option_set(5, "wide", "--ar 21:9", limit=20),
        b.set_option_set(5, "tall", "--ar 9:16", limit=20),
    )
    prefs = await a.get_prefs(5)
    assert (prefs.version, prefs.aspect, prefs.stylize, prefs.remix, prefs.suffix) == ("7", "16:9", 250, True, "--q 2")
    assert prefs.option_sets == {"keep": "--ar 1:1", "wide": "--ar 21:9", "tall": "--ar 9:16"}
    assert returned[4:] == [True, True] and all(isinstance(p, UserPrefs) for p in returned[:4])
    assert (await b.update_prefs(6, speed="relax")) == UserPrefs(6, speed="relax")  # a new member's first choice
    assert await b.update_prefs(6, stylize=None) == UserPrefs(6, speed="relax")
    with pytest.raises(ValueError):
        await a.update_prefs(5, option_sets={})  # whole-dict writes would lose a concurrent set


async def test_option_sets_one_at_a_time_with_a_limit(backend: Backend) -> None:
    store = await backend.open()
    assert await store.set_option_set(7, "a", "--ar 1:1", limit=2)  # the member's first row
    assert await store.set_option_set(7, "b", "--ar 2:3", limit=2)
    assert not await store.set_option_set(7, "c", "--ar 3:2", limit=2)  # full: nothing written
    assert await store.set_option_set(7, "a", "--ar 4:5 ü", limit=2)  # changing one is always allowed
    assert (await store.get_prefs(7)).option_sets == {"a": "--ar 4:5 ü", "b": "--ar 2:3"}
    assert await store.delete_option_set(7, "b")
    assert not await store.delete_option_set(7, "b")
    assert not await store.delete_option_set(8, "a")  # no row at all
    assert await store.set_option_set(7, "c", "--ar 3:2", limit=2)
    assert (await store.get_prefs(7)).option_sets == {"a": "--ar 4:5 ü", "c": "--ar 3:2"}


async def test_api_keys(backend: Backend) -> None:
    store = await backend.open()
    first = await add_key(store, "Main")
    second = await add_key(store, "global", guild_id=None, priority=5)
    assert second > first
    rows = await store.api_key_rows()
    assert [r["id"] for r in rows] == [first, second]
    row = await store.api_key_row(first)
    assert row is not None
    assert row["enabled"] == 1 and row["healthy"] == 1 and row["failures"] == 0 and row["guild_id"] == GUILD
    await store.update_api_key(first, enabled=False, healthy=False, failures=3, last_error="401", priority=9)
    row = await store.api_key_row(first)
    assert row is not None and (row["enabled"], row["healthy"], row["failures"], row["priority"]) == (0, 0, 3, 9)
    assert row["last_error"] == "401"
    await store.update_api_key(first, token="gAAAA-rotated")  # re-encrypted with a new KEY_ENCRYPTION_KEY
    assert (await store.api_key_row(first) or {})["token"] == "gAAAA-rotated"
    with pytest.raises(ValueError):
        await store.update_api_key(first, guild_id=None)  # a key never moves to another server
    await store.update_api_key(first)  # nothing to change
    await store.delete_api_key(first)
    assert await store.api_key_row(first) is None
    assert [r["id"] for r in await store.api_key_rows()] == [second]


@pytest.mark.parametrize(
    ("guild_a", "guild_b", "label_b", "clash"),
    [
        (GUILD, GUILD, "MAIN", True),  # labels are case-insensitive within a guild
        (GUILD, 44, "main", False),  # another guild may reuse a label
        (None, None, "Main", True),  # global keys clash with each other
        (None, GUILD, "main", False),
    ],
)
async def test_api_key_labels_are_unique_per_guild(
    backend: Backend, guild_a: int | None, guild_b: int | None, label_b: str, clash: bool
) -> None:
    store = await backend.open()
    await add_key(store, "main", guild_id=guild_a)
    if not clash:
        await add_key(store, label_b, guild_id=guild_b)
        return
    errors: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,)
    if backend.name == "postgres":
        import asyncpg

        errors = (asyncpg.UniqueViolationError,)
    with pytest.raises(errors):
        await add_key(store, label_b, guild_id=guild_b)
    assert len(await store.api_key_rows()) == 1


async def test_guild_settings(backend: Backend) -> None:
    store = await backend.open()
    assert await store.guild_settings_row(GUILD) is None
    await store.save_guild_settings(GUILD, SETTINGS)
    row = await store.guild_settings_row(GUILD)
    assert row is not None
    assert row["allowed_channels"] == "[1380000000000000001, 1380000000000000002]"
    assert row["banned_words"] == '["gore", "blood"]' and row["nsfw_only"] == 1 and row["cooldown"] == 30
    await store.save_guild_settings(GUILD, {**SETTINGS, "nsfw_only": False, "daily_quota": 0})
    row = await store.guild_settings_row(GUILD)
    assert row is not None and row["nsfw_only"] == 0 and row["daily_quota"] == 0
    with pytest.raises(ValueError):
        await store.save_guild_settings(GUILD, {**SETTINGS, "colour": "red"})


async def test_approved_servers(backend: Backend) -> None:
    store = await backend.open()
    assert await store.approved_guild_ids() == []
    await store.approve_guild(GUILD, approved_by=7)
    await store.approve_guild(GUILD, approved_by=8)  # approving twice keeps one row
    await store.approve_guild(5, approved_by=7)
    assert await store.approved_guild_ids() == [5, GUILD]
    assert await store.revoke_guild(GUILD) is True
    assert await store.revoke_guild(GUILD) is False
    assert await store.approved_guild_ids() == [5]


async def test_tasks_made_in_dms_are_counted_apart_and_dm_deliveries_keep_their_server(backend: Backend) -> None:
    store = await backend.open()
    await store.insert_many(
        [
            make("a", guild_id=None, created_at=100.0),
            make("b", guild_id=None, created_at=200.0, delivered=True),
            make("c", created_at=300.0, in_dm=True),  # made in GUILD, shown in the member's DMs
        ]
    )
    assert await store.count_guild_tasks(None, user_id=11) == 2
    assert await store.count_guild_tasks(None, user_id=11, running=True) == 1
    assert await store.count_guild_tasks(None, user_id=12) == 0
    assert await store.last_task_time(None, 11) == 200.0
    assert await store.count_guild_tasks(GUILD, user_id=11) == 1
    stored = await store.get_task("c")
    assert stored is not None and stored.in_dm is True and stored.guild_id == GUILD
    assert stored.message_guild_id is None
    assert (await store.get_task("a")).in_dm is False  # type: ignore[union-attr]


async def test_usage_statistics(backend: Backend) -> None:
    store = await backend.open()
    day1 = utc("2026-03-01 23:59:59")
    day2 = utc("2026-03-02 00:00:00")
    await store.insert_many(
        [
            make("a", created_at=day1 - 86400 * 3, status="SUCCESS"),  # before `since`
            make("b", created_at=day1, status="SUCCESS", upstream="key:1"),
            make("c", created_at=day1 - 60, status="FAILURE", user_id=12),
            make("d", created_at=day2, status="CANCEL", upstream="key:1@relax"),
            make("e", created_at=day2 + 5, status="SUCCESS", user_id=12, delivered=True),
            make("f", created_at=day2 + 9, status="IN_PROGRESS", user_id=13),
            make("x", created_at=day2, guild_id=99, upstream="key:1"),
        ]
    )
    since = day1 - 86400
    assert await store.daily_task_counts(GUILD, since) == [("2026-03-01", 2, 1, 1), ("2026-03-02", 3, 1, 1)]
    assert await store.daily_task_counts(GUILD, day2 + 100) == []
    assert await store.top_users(GUILD, since) == [(11, 2), (12, 2), (13, 1)]
    assert await store.top_users(GUILD, since, limit=1) == [(11, 2)]
    assert await store.tasks_by_upstream(GUILD) == {"default": 4, "key:1": 1, "key:1@relax": 1}
    assert await store.tasks_by_upstream(None, since=day2) == {"key:1@relax": 1, "default": 2, "key:1": 1}
    assert await store.count_guild_tasks(GUILD) == 6
    assert await store.count_guild_tasks(GUILD, user_id=12) == 2
    assert await store.count_guild_tasks(GUILD, since=day2) == 3
    assert await store.count_guild_tasks(GUILD, user_id=11, since=since, running=True) == 2
    assert await store.count_guild_tasks(GUILD, running=True) == 5
    assert await store.last_task_time(GUILD, 12) == day2 + 5
    assert await store.last_task_time(GUILD, 999) is None


async def test_concurrent_clicks_from_two_processes_claim_once(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    await a.insert_task(make("t1"))
    results = await asyncio.gather(
        *(s.claim_click(task_key("t1"), "act:1", u, window=30) for u in range(6) for s in (a, b))
    )
    assert sorted(results) == [False] * 11 + [True]


# ---- the two backends answer alike ---------------------------------------------------------------


async def scenario(store: Any) -> dict[str, Any]:
    """Everything a caller can read back after one fixed set of writes, timestamps left out."""
    await store.insert_task(make("t1", created_at=utc("2026-01-05 10:00:00"), buttons=(), extra={"a": [1]}))
    await store.insert_task(make("t2", created_at=utc("2026-01-05 11:00:00"), message_id=5, status="SUCCESS"))
    await store.update_task(task_key("t2"), delivered=True, progress=100, finished_at=utc("2026-01-05 11:01:00"))
    await store.claim_tasks(1)
    key = await add_key(store, "k1")
    await store.bump_api_key_failure(key, "refused")
    await store.save_guild_settings(GUILD, SETTINGS)
    await store.save_prefs(UserPrefs(11, stylize=100, remix=True, option_sets={"x": "--ar 1:1"}))

    def strip(row: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if row is None else {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}

    def task(record: TaskRecord | None) -> dict[str, Any] | None:
        return None if record is None else strip({f: getattr(record, f) for f in record.__dataclass_fields__})

    return {
        "t1": task(await store.get_task("t1")),
        "t2": task(await store.get_task("t2")),
        "by_message": task(await store.task_for_message(5)),
        "in_flight": [r.id for r in await store.in_flight()],
        "keys": [strip(r) for r in await store.api_key_rows()],
        "settings": strip(await store.guild_settings_row(GUILD)),
        "prefs": await store.get_prefs(11),
        "daily": await store.daily_task_counts(GUILD, 0),
        "top": await store.top_users(GUILD, 0),
        "upstreams": await store.tasks_by_upstream(GUILD),
        "counts": (await store.count_tasks(), await store.count_guild_tasks(GUILD, running=True)),
        "last": await store.last_task_time(GUILD, 11),
        "version": await store.schema_version(),
        "leases": (
            await store.renew_leases(),
            await store.hold_leases([task_key("t1"), task_key("t2")]),
            await store.release_leases(),
        ),
    }


def typed(value: Any) -> Any:
    """`value` with the type of every leaf next to it, so 1 and 1.0 and True differ."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [typed(v) for v in sorted(value)] if isinstance(value, set) else [typed(v) for v in value]
    return (type(value).__name__, value)


async def test_both_backends_give_identical_answers(tmp_path: Path, postgres_server: PostgresServer) -> None:
    require_asyncpg()
    sqlite = await open_store(tmp_path / "parity.sqlite3", owner="p")
    postgres = await open_store(postgres_server.create_database(), owner="p")
    try:
        expected = await scenario(sqlite)
        assert expected["t1"]["extra"] == {"a": [1]} and expected["keys"][0]["failures"] == 1
        assert typed(await scenario(postgres)) == typed(expected)
    finally:
        await sqlite.close()
        await postgres.close()


# ---- schema parity -------------------------------------------------------------------------------

_TYPES = {
    "integer": "int",
    "bigint": "int",
    "smallint": "int",
    "real": "float",
    "double precision": "float",
    "text": "text",
}


async def sqlite_schema(path: Path) -> tuple[dict[str, dict[str, tuple[str, bool]]], set[str], int]:
    store = await Store.open(path)
    try:
        db = store._db
        async with db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'") as c:
            tables = [row[0] for row in await c.fetchall()]
        schema: dict[str, dict[str, tuple[str, bool]]] = {}
        for table in tables:
            async with db.execute(f"PRAGMA table_info({table})") as c:
                columns = await c.fetchall()
            # (name, normalized type, nullable); a primary key counts as NOT NULL, as in PostgreSQL.
            schema[table] = {
                col["name"]: (_TYPES[col["type"].lower()], not (col["notnull"] or col["pk"])) for col in columns
            }
        async with db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL") as c:
            indexes = {row[0] for row in await c.fetchall()}
        return schema, indexes, await store.schema_version()
    finally:
        await store.close()


async def postgres_schema(url: str) -> tuple[dict[str, dict[str, tuple[str, bool]]], set[str], int]:
    from bot.storage.postgres import PostgresStore

    store = await PostgresStore.open(url)
    try:
        async with store._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_schema = 'public' AND table_name <> 'schema_migrations' "
                "ORDER BY table_name, ordinal_position"
            )
            index_rows = await conn.fetch(
                "SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
                "JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = 'public' AND NOT x.indisprimary "
                "AND i.relname NOT LIKE 'schema_migrations%'"
            )
        schema: dict[str, dict[str, tuple[str, bool]]] = {}
        for row in rows:
            kind = _TYPES[row["data_type"]]
            schema.setdefault(row["table_name"], {})[row["column_name"]] = (kind, row["is_nullable"] == "YES")
        return schema, {row[0] for row in index_rows}, await store.schema_version()
    finally:
        await store.close()


async def test_sqlite_and_postgres_schemas_match(tmp_path: Path, postgres_server: PostgresServer) -> None:
    require_asyncpg()
    assert [v for v, _ in migrations()] == [v for v, _ in migrations("postgres")], "a migration in one dialect only"
    lite, lite_indexes, lite_version = await sqlite_schema(tmp_path / "schema.sqlite3")
    pg, pg_indexes, pg_version = await postgres_schema(postgres_server.create_database())
    assert lite_version == pg_version == max(v for v, _ in migrations())
    assert sorted(lite) == sorted(pg)
    for table in lite:
        assert list(lite[table]) == list(pg[table]), f"columns of {table} differ (or are in another order)"
        assert lite[table] == pg[table], f"column types or nullability of {table} differ"
    assert lite_indexes == pg_indexes
    assert {"tasks", "clicks", "meta", "api_keys", "guild_settings", "user_prefs"} <= set(lite)
    assert {"lease_owner", "lease_expires"} <= set(lite["tasks"])


def test_the_sqlite_loader_ignores_the_postgres_folder() -> None:
    lite = dict(migrations())
    pg = dict(migrations("postgres"))
    assert lite.keys() == pg.keys()
    assert "AUTOINCREMENT" in lite[2] and not any("AUTOINCREMENT" in script for script in pg.values())
    assert "IDENTITY" in pg[2] and not any("DOUBLE PRECISION" in script for script in lite.values())


# ---- PostgreSQL only -----------------------------------------------------------------------------


async def test_concurrent_starts_migrate_once(postgres_server: PostgresServer) -> None:
    require_asyncpg()
    from bot.storage.postgres import PostgresStore

    url = postgres_server.create_database()
    stores = await asyncio.gather(*(PostgresStore.open(url, owner=f"p{i}") for i in range(4)))
    try:
        async with stores[0]._pool.acquire() as conn:
            versions = [row[0] for row in await conn.fetch("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == [v for v, _ in migrations("postgres")]
        assert {await s.schema_version() for s in stores} == {versions[-1]}
    finally:
        for store in stores:
            await store.close()


async def test_many_processes_claim_disjoint_tasks(postgres_server: PostgresServer) -> None:
    require_asyncpg()
    from bot.storage.postgres import PostgresStore

    url = postgres_server.create_database()
    stores = [await PostgresStore.open(url, owner=f"p{i}") for i in range(4)]
    try:
        await stores[0].insert_many(make(f"t{i:03d}", created_at=float(i)) for i in range(300))
        await stores[0].release_leases()
        batches = await asyncio.gather(*(s.claim_tasks(10) for _ in range(10) for s in stores))
        claimed = [r.id for batch in batches for r in batch]
        assert len(claimed) == len(set(claimed)) == 300
        assert all(batch == sorted(batch, key=lambda r: r.created_at) for batch in batches)
        held = [await s.renew_leases() for s in stores]
        assert sum(len(h) for h in held) == 300 and {k.id for k in set().union(*held)} == set(claimed)
    finally:
        for store in stores:
            await store.close()


async def test_a_lost_connection_is_retried(postgres_server: PostgresServer) -> None:
    require_asyncpg()
    from bot.storage.postgres import PostgresStore

    url = postgres_server.create_database()
    store = await PostgresStore.open(url)
    store.write_backoff = 0.01
    try:
        await store.insert_task(make("t1"))
        database = url.rsplit("/", 1)[1]
        postgres_server.psql(
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}' "
            "AND pid <> pg_backend_pid()"
        )
        await store.update_task(task_key("t1"), status="SUCCESS")  # the pooled connection is dead: retried on a new one
        loaded = await store.get_task("t1")
        assert loaded is not None and loaded.status == "SUCCESS"
    finally:
        await store.close()


async def test_other_errors_raise_at_once(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> None:
    require_asyncpg()
    import asyncpg

    from bot.storage.postgres import PostgresStore

    store = await PostgresStore.open(postgres_server.create_database())
    sleeps: list[float] = []

    async def no_sleep(delay: float) -> None:
        sleeps.append(delay)

    try:
        await add_key(store, "dup")
        monkeypatch.setattr(asyncio, "sleep", no_sleep)
        with pytest.raises(asyncpg.UniqueViolationError):
            await add_key(store, "DUP")
        assert sleeps == []
    finally:
        monkeypatch.undo()
        await store.close()


# ---- choosing a backend --------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["plain", "relative_url", "absolute_url"])
async def test_open_store_opens_sqlite_targets(form: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    target = {
        "plain": str(tmp_path / "a" / "bot.sqlite3"),
        "relative_url": "sqlite:///a/bot.sqlite3",
        "absolute_url": f"sqlite:///{tmp_path}/a/bot.sqlite3",
    }[form]
    store = await open_store(target, owner="me", lease_seconds=3.0)
    try:
        assert isinstance(store, Store) and store.owner == "me" and store.lease_seconds == 3.0
        assert (tmp_path / "a" / "bot.sqlite3").exists()
    finally:
        await store.close()


async def test_open_store_in_memory_and_default_owner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = await open_store("sqlite:///:memory:")
    try:
        assert isinstance(store, Store) and store.owner.startswith("pid-") and store.lease_seconds == 30.0
        await store.insert_task(make("t1"))
        assert await store.count_tasks() == 1
    finally:
        await store.close()
    assert os.listdir(tmp_path) == []  # nothing written to disk


async def test_open_store_refuses_a_malformed_sqlite_url() -> None:
    with pytest.raises(ConfigError):
        await open_store("sqlite:/data/bot.sqlite3")


@pytest.mark.parametrize("scheme", ["postgres", "postgresql"])
async def test_open_store_opens_postgres(scheme: str, postgres_server: PostgresServer) -> None:
    require_asyncpg()
    from bot.storage.postgres import PostgresStore

    url = postgres_server.create_database().replace("postgresql://", f"{scheme}://", 1)
    store = await open_store(url, owner="pg", lease_seconds=4.0)
    try:
        assert isinstance(store, PostgresStore) and store.owner == "pg" and store.lease_seconds == 4.0
    finally:
        await store.close()


async def test_open_store_without_asyncpg_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)  # import asyncpg -> ModuleNotFoundError
    monkeypatch.delitem(sys.modules, "bot.storage.postgres", raising=False)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[postgres\]'"):
        await open_store("postgresql://nobody@127.0.0.1:1/none")
