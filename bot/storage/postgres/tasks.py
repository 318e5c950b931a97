"""PostgreSQL: task rows."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import asyncpg

from bot.models import TaskKey, TaskRecord
from bot.storage.common import TASK_INSERT_COLUMNS, check_owners, insert_rows, only_task, task_changes
from bot.storage.postgres.base import PostgresBase, assignments, placeholders

_INSERT = (
    f"INSERT INTO tasks ({', '.join(TASK_INSERT_COLUMNS)}) VALUES ({placeholders(len(TASK_INSERT_COLUMNS))}) "
    "ON CONFLICT (upstream, id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in TASK_INSERT_COLUMNS if c not in ("upstream", "id"))
)
#: Rows named by two arrays ($1 upstreams, $2 ids). The `id = ANY` probe lets the planner use the id
#: index however stale its statistics are (the pairs alone can make it walk every task in flight).
_KEYS = "id = ANY($2::text[]) AND (upstream, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
_CLICK_KEYS = "task_id = ANY($2::text[]) AND (upstream, task_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"
_UPSTREAM = TASK_INSERT_COLUMNS.index("upstream")


class PostgresTasks(PostgresBase):
    async def _replace_tasks(self, rows: list[list[Any]]) -> None:
        """SQLite's INSERT OR REPLACE deletes the old row, whose clicks go with it (ON DELETE CASCADE):
        do the same, then upsert (safe against another process inserting the same id at once). No row
        of another member or guild is replaced (TaskIdTaken, nothing written)."""
        if not rows:
            return
        upstreams, ids = [row[_UPSTREAM] for row in rows], [row[0] for row in rows]

        async def work(conn: asyncpg.Connection) -> None:
            stored = await conn.fetch(
                f"SELECT upstream, id, guild_id, user_id FROM tasks WHERE {_KEYS} FOR UPDATE", upstreams, ids
            )
            check_owners(rows, stored)
            await conn.execute(f"DELETE FROM clicks WHERE {_CLICK_KEYS}", upstreams, ids)
            await conn.executemany(_INSERT, rows)

        await self._run(work, write=True)

    async def insert_task(self, record: TaskRecord) -> TaskRecord:
        now = time.time()
        record = replace(record, created_at=record.created_at or now, updated_at=now)
        await self._replace_tasks(insert_rows([record], now, self.owner, now + self.lease_seconds))
        return record

    async def insert_many(self, records: Iterable[TaskRecord]) -> None:
        """Bulk insert (benchmarks, imports) in one transaction."""
        now = time.time()
        await self._replace_tasks(insert_rows(records, now, self.owner, now + self.lease_seconds))

    async def get_task(
        self, task_id: str, upstream: str | None = None, *, message_id: int | None = None
    ) -> TaskRecord | None:
        """The task `upstream` gave this id; without `upstream` (an old button, a typed id), the only
        task with this id, or the one `message_id` shows (AmbiguousTask when that does not decide)."""
        if upstream is not None:
            row = await self._fetchrow("SELECT * FROM tasks WHERE upstream = $1 AND id = $2", upstream, task_id)
            return TaskRecord.from_row(row) if row else None
        rows = await self._fetch("SELECT * FROM tasks WHERE id = $1 ORDER BY created_at, upstream", task_id)
        return only_task([TaskRecord.from_row(row) for row in rows], task_id, message_id)

    async def task_for_message(self, message_id: int) -> TaskRecord | None:
        row = await self._fetchrow(
            "SELECT * FROM tasks WHERE message_id = $1 ORDER BY created_at DESC LIMIT 1", message_id
        )
        return TaskRecord.from_row(row) if row else None

    async def update_task(self, key: TaskKey, **changes: Any) -> None:
        """Write only the named columns of that one row; unknown names are a programming error."""
        if not changes:
            return
        names, values = task_changes(changes)
        where = f"upstream = ${len(names) + 2} AND id = ${len(names) + 3}"
        sql = f"UPDATE tasks SET {assignments((*names, 'updated_at'))} WHERE {where}"
        await self._execute(sql, *values, time.time(), key.upstream, key.id)

    async def update_many(self, changes: Mapping[TaskKey, Mapping[str, Any]]) -> None:
        """`update_task` for many tasks ({key: {column: value}}) in one transaction."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        now = time.time()
        for key, columns in changes.items():
            if columns:
                names, values = task_changes(columns)
                groups.setdefault(names, []).append([*values, now, key.upstream, key.id])
        if not groups:
            return
        keys = sorted(key for key, columns in changes.items() if columns)

        async def work(conn: asyncpg.Connection) -> None:
            # Lock the rows in one order (upstream, id) first, as renew_leases does: two transactions of
            # one process (the tracker's save and its lease renewal) must never wait on each other in a cycle.
            await conn.execute(
                f"SELECT 1 FROM tasks WHERE {_KEYS} ORDER BY upstream, id FOR UPDATE",
                [k.upstream for k in keys],
                [k.id for k in keys],
            )
            for names, rows in groups.items():
                where = f"upstream = ${len(names) + 2} AND id = ${len(names) + 3}"
                await conn.executemany(f"UPDATE tasks SET {assignments((*names, 'updated_at'))} WHERE {where}", rows)

        await self._run(work, write=True)

    async def in_flight(self) -> list[TaskRecord]:
        """Every task whose final state is not yet on Discord, oldest first."""
        rows = await self._fetch("SELECT * FROM tasks WHERE delivered = 0 ORDER BY created_at")
        return [TaskRecord.from_row(row) for row in rows]

    async def recent_tasks(self, user_id: int, limit: int = 10) -> list[TaskRecord]:
        rows = await self._fetch(
            "SELECT * FROM tasks WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2", user_id, limit
        )
        return [TaskRecord.from_row(row) for row in rows]

    async def count_tasks(self, *, delivered: bool | None = None) -> int:
        if delivered is None:
            return int(await self._fetchval("SELECT COUNT(*) FROM tasks"))
        return int(await self._fetchval("SELECT COUNT(*) FROM tasks WHERE delivered = $1", int(delivered)))
