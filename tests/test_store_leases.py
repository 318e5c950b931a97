"""Task leases: several bot processes on one database share the tracking work without ever tracking
(or delivering) the same task twice. Every test opens two or more stores on the same database, as two
processes would; each test runs on SQLite and on PostgreSQL (tests.pg.backend)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bot.models import TaskKey, TaskRecord
from tests.pg import Backend, backend_fixture, postgres_server_fixture  # noqa: F401
from tests.test_storage_backends import add_key


async def lease_of(backend: Backend, task_id: str) -> tuple[str | None, float | None]:
    """The lease columns behind the interface (TaskRecord does not carry them)."""
    rows = await backend.sql("SELECT lease_owner, lease_expires FROM tasks WHERE id = ?", task_id)
    return rows[0][0], rows[0][1]


async def expire_all(backend: Backend) -> None:
    """Every lease ran out (as if its process died a while ago)."""
    await backend.sql("UPDATE tasks SET lease_expires = ? WHERE lease_owner IS NOT NULL", time.time() - 1)


def key(task_id: str) -> TaskKey:
    return TaskKey("default", task_id)


def make(task_id: str, created_at: float, **kw: Any) -> TaskRecord:
    return TaskRecord(id=task_id, action="IMAGINE", user_id=11, channel_id=22, created_at=created_at, **kw)


async def free_tasks(store: Any, count: int) -> list[str]:
    """`count` undelivered tasks nobody holds, ids in creation order."""
    ids = [f"t{i:03d}" for i in range(count)]
    await store.insert_many(make(task_id, 1000.0 + i) for i, task_id in enumerate(ids))
    assert await store.release_leases() == count
    return ids


async def test_insert_leases_the_task_to_its_submitter(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    before = time.time()
    await a.insert_task(make("t1", 100.0))
    owner, expires = await lease_of(backend, "t1")
    assert owner == "a" and expires is not None and before + 29 < expires < time.time() + 31
    assert await b.claim_tasks(10) == []
    assert await a.claim_tasks(10) == []  # held, not expired: not claimable even by its owner
    assert [r.id for r in await a.claim_tasks(10, include_own=True)] == ["t1"]
    await a.insert_many([make("t2", 200.0)])
    assert (await lease_of(backend, "t2"))[0] == "a"


async def test_task_record_ignores_the_lease_columns(backend: Backend) -> None:
    a = await backend.open("a")
    await a.insert_task(make("t1", 100.0, prompt="a cat"))
    loaded = await a.get_task("t1")
    assert loaded is not None and loaded.prompt == "a cat"
    assert not hasattr(loaded, "lease_owner")
    assert [r.id for r in await a.in_flight()] == ["t1"]


async def test_claims_are_oldest_first_limited_and_never_shared(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    ids = await free_tasks(a, 5)
    first = await a.claim_tasks(2)
    assert [r.id for r in first] == ids[:2]
    assert all(isinstance(r, TaskRecord) and r.action == "IMAGINE" for r in first)
    second = await b.claim_tasks(10)
    assert [r.id for r in second] == ids[2:]
    assert await a.claim_tasks(10) == [] and await b.claim_tasks(10) == []
    assert {(await lease_of(backend, i))[0] for i in ids[:2]} == {"a"}
    assert {(await lease_of(backend, i))[0] for i in ids[2:]} == {"b"}


async def test_lease_census_counts_undelivered_tasks_and_the_other_live_holders(backend: Backend) -> None:
    a, b, c = [await backend.open(owner) for owner in "abc"]
    await c.insert_many([make("c1", 1.0), make("c2", 2.0)])
    await backend.sql("UPDATE tasks SET lease_expires = ? WHERE lease_owner = 'c'", time.time() - 1)  # c died
    await a.insert_many([make("a1", 3.0), make("a2", 4.0)])
    await b.insert_task(make("b1", 5.0))
    await a.insert_task(make("done", 6.0, delivered=True))
    assert await a.lease_census() == (5, 1)  # b only: c's leases ran out, a does not count itself
    assert await b.lease_census() == (5, 1)
    assert await c.lease_census() == (5, 2)


async def test_delivered_tasks_are_never_claimed(backend: Backend) -> None:
    a = await backend.open("a")
    await a.insert_task(make("done", 50.0, delivered=True))
    await a.insert_task(make("open", 60.0))
    await a.release_leases()
    await expire_all(backend)
    assert [r.id for r in await a.claim_tasks(10)] == ["open"]


async def test_an_expired_lease_is_taken_over(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    ids = await free_tasks(a, 3)
    assert len(await a.claim_tasks(10)) == 3
    assert await b.claim_tasks(10) == []
    await expire_all(backend)
    taken = await b.claim_tasks(2)
    assert [r.id for r in taken] == ids[:2]
    # a learns it lost them: renew keeps only the one it still holds, and the fence refuses the others.
    assert await a.renew_leases() == {key(ids[2])}
    assert await a.hold_leases([key(i) for i in ids]) == {key(ids[2])}
    assert await b.hold_leases([key(i) for i in ids]) == {key(i) for i in ids[:2]}


async def test_short_leases_run_out_by_themselves(backend: Backend) -> None:
    a = await backend.open("a", lease_seconds=0.2)
    b = await backend.open("b")
    await free_tasks(a, 1)
    assert len(await a.claim_tasks(1)) == 1
    assert await b.claim_tasks(1) == []
    await asyncio.sleep(0.25)
    assert [r.id for r in await b.claim_tasks(1)] == ["t000"]


async def test_include_own_takes_back_our_tasks_after_a_restart(backend: Backend) -> None:
    a = await backend.open("host-1")
    ids = await free_tasks(a, 2)
    await a.claim_tasks(10)
    restarted = await backend.open("host-1")  # same name, leases still look alive
    other = await backend.open("host-2")
    assert await restarted.claim_tasks(10) == []
    assert await other.claim_tasks(10, include_own=True) == []
    assert [r.id for r in await restarted.claim_tasks(10, include_own=True)] == ids


async def test_renew_extends_only_our_undelivered_leases(backend: Backend) -> None:
    a = await backend.open("a", lease_seconds=5.0)
    b = await backend.open("b")
    ids = await free_tasks(a, 3)
    await a.claim_tasks(2)
    await b.claim_tasks(1)
    await a.update_task(key(ids[1]), delivered=True)
    before = {i: (await lease_of(backend, i))[1] for i in ids}
    a.lease_seconds = 60.0
    assert await a.renew_leases() == {key(ids[0])}
    after = {i: (await lease_of(backend, i))[1] for i in ids}
    assert after[ids[0]] > before[ids[0]] + 50  # type: ignore[operator]
    assert after[ids[1]] == before[ids[1]]  # delivered: left alone
    assert after[ids[2]] == before[ids[2]]  # b's
    assert await b.renew_leases() == {key(ids[2])}


async def test_hold_leases_leaves_out_delivered_missing_and_others(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    await a.insert_task(make("t1", 1.0))
    await a.insert_task(make("t2", 2.0))
    assert await a.hold_leases([key("t1"), key("t2"), key("t1")]) == {key("t1"), key("t2")}
    assert await b.hold_leases([key("t1")]) == set()
    assert await a.hold_leases([key("missing"), key("t2")]) == {key("t2")}
    assert await a.hold_leases([TaskKey("key:1", "t2")]) == set()  # the same id on another upstream
    assert await a.hold_leases([]) == set()
    await a.update_task(key("t1"), delivered=True)
    assert await a.hold_leases([key("t1"), key("t2")]) == {key("t2")}


async def test_hold_leases_binds_more_ids_than_one_statement_takes(backend: Backend) -> None:
    a = await backend.open("a")
    ids = await free_tasks(a, 1200)
    assert len(await a.claim_tasks(2000)) == 1200
    assert await a.hold_leases([*map(key, ids), key("missing")]) == set(map(key, ids))


async def test_release_lets_others_take_over_at_once(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    await a.insert_task(make("t1", 1.0))
    await a.insert_task(make("t2", 2.0))
    await a.insert_task(make("t3", 3.0, delivered=True))
    assert await b.claim_tasks(10) == []
    assert await a.release_leases() == 2
    assert await lease_of(backend, "t1") == (None, None)
    assert (await lease_of(backend, "t3"))[0] == "a"  # delivered: not counted, not touched
    assert [r.id for r in await b.claim_tasks(10)] == ["t1", "t2"]
    assert await a.release_leases() == 0


async def test_concurrent_claims_from_two_stores_are_disjoint_and_cover_all(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    ids = await free_tasks(a, 60)
    batches = await asyncio.gather(*(store.claim_tasks(4) for _ in range(10) for store in (a, b)))
    claimed = [r.id for batch in batches for r in batch]
    assert len(claimed) == len(set(claimed)), "a task was claimed twice"
    assert sorted(claimed) == ids
    for store, batch in zip((a, b) * 10, batches, strict=True):
        for record in batch:
            assert (await lease_of(backend, record.id))[0] == store.owner


async def test_failure_counts_lose_no_increment(backend: Backend) -> None:
    a = await backend.open("a")
    b = await backend.open("b")
    key_id = await add_key(a, "k", guild_id=None)
    counts = await asyncio.gather(*(store.bump_api_key_failure(key_id, f"r{i}") for i in range(10) for store in (a, b)))
    assert sorted(counts) == list(range(1, 21))
    row = await b.api_key_row(key_id)
    assert row is not None and row["failures"] == 20 and row["last_error"].startswith("r")
    assert await a.bump_api_key_failure(key_id + 99, "gone") == 0


def test_processes_opening_one_new_sqlite_file_at_once_all_start(tmp_path: Path) -> None:
    path = tmp_path / "fresh.sqlite3"
    code = (
        "import asyncio, sys\n"
        "from bot.storage.sqlite import Store\n"
        "async def main():\n"
        "    store = await Store.open(sys.argv[1])\n"
        "    print(await store.schema_version())\n"
        "    await store.close()\n"
        "asyncio.run(main())\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(6)
    ]
    results = [proc.communicate(timeout=60) for proc in procs]
    assert all(proc.returncode == 0 for proc in procs), [err.decode()[-300:] for _, err in results]
    assert len({out.strip() for out, _ in results}) == 1  # every one sees the whole schema
