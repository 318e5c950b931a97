"""PostgreSQL: task rows."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

import asyncpg

from bot.models import TaskRecord
from bot.storage.common import TASK_INSERT_COLUMNS, insert_rows, task_changes
from bot.storage.postgres.base import PostgresBase, assignments, placeholders

_INSERT = (
    f"INSERT INTO tasks ({', '.join(TASK_INSERT_COLUMNS)}) VALUES ({placeholders(len(TASK_INSERT_COLUMNS))}) "
    f"ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in TASK_INSERT_COLUMNS if c != 'id')}"
)


class PostgresTasks(PostgresBase):
    async def _replace_tasks(self, rows: list[list[Any]]) -> None:
        """SQLite's INSERT OR REPLACE deletes the old row, whose clicks go with it (ON DELETE CASCADE):
        do the same, then upsert (safe against another process inserting the same id at once)."""
        if not rows:
            return
        ids = [row[0] for row in rows]

        async def work(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM clicks WHERE task_id = ANY($1::text[])", ids)
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

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        return TaskRecord.from_row(row) if row else None

    async def task_for_message(self, message_id: int) -> TaskRecord | None:
        row = await self._fetchrow(
            "SELECT * FROM tasks WHERE message_id = $1 ORDER BY created_at DESC LIMIT 1", message_id
        )
        return TaskRecord.from_row(row) if row else None

    async def update_task(self, task_id: str, **changes: Any) -> None:
        """Write only the named columns; unknown names are a programming error."""
        if not changes:
            return
        names, values = task_changes(changes)
        sql = f"UPDATE tasks SET {assignments((*names, 'updated_at'))} WHERE id = ${len(names) + 2}"
        await self._execute(sql, *values, time.time(), task_id)

    async def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> None:
        """`update_task` for many tasks ({task id: {column: value}}) in one transaction."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        now = time.time()
        for task_id, columns in changes.items():
            if columns:
                names, values = task_changes(columns)
                groups.setdefault(names, []).append([*values, now, task_id])
        if not groups:
            return
        ids = sorted({str(task_id) for task_id, columns in changes.items() if columns})

        async def work(conn: asyncpg.Connection) -> None:
            # Lock the rows in one order (by id) first, as renew_leases does: two transactions of one
            # process (the tracker's save and its lease renewal) must never wait on each other in a cycle.
            await conn.execute("SELECT 1 FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids)
            for names, rows in groups.items():
                sql = f"UPDATE tasks SET {assignments((*names, 'updated_at'))} WHERE id = ${len(names) + 2}"
                await conn.executemany(sql, rows)

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
