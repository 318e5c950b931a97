"""SQLite: task rows."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from bot.models import TaskKey, TaskRecord
from bot.storage.common import TASK_INSERT_COLUMNS, check_owners, insert_rows, only_task, task_changes
from bot.storage.sqlite.base import SqliteBase

_INSERT = (
    f"INSERT OR REPLACE INTO tasks ({', '.join(TASK_INSERT_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in TASK_INSERT_COLUMNS)})"
)

_UPSTREAM = TASK_INSERT_COLUMNS.index("upstream")
#: Ids bound in one `IN (...)`: well under SQLite's limit of host parameters per statement.
_ID_CHUNK = 500


class SqliteTasks(SqliteBase):
    async def _insert(self, rows: list[list[Any]]) -> None:
        """INSERT OR REPLACE (the old row's clicks go with it), after checking that no row of another
        member or guild would be replaced (TaskIdTaken, nothing written)."""

        async def work() -> None:
            ids_of: dict[str, list[str]] = {}
            for row in rows:
                ids_of.setdefault(row[_UPSTREAM], []).append(row[0])
            for upstream, ids in ids_of.items():
                for start in range(0, len(ids), _ID_CHUNK):
                    chunk = ids[start : start + _ID_CHUNK]
                    stored = await self._fetchall(
                        "SELECT upstream, id, guild_id, user_id FROM tasks "
                        f"WHERE upstream = ? AND id IN ({', '.join('?' for _ in chunk)})",
                        (upstream, *chunk),
                    )
                    check_owners(rows, stored)
            await self._db.executemany(_INSERT, rows)

        await self._write(work)

    async def insert_task(self, record: TaskRecord) -> TaskRecord:
        now = time.time()
        record = replace(record, created_at=record.created_at or now, updated_at=now)
        await self._insert(insert_rows([record], now, self.owner, now + self.lease_seconds))
        return record

    async def insert_many(self, records: Iterable[TaskRecord]) -> None:
        """Bulk insert (benchmarks, imports) in one transaction."""
        now = time.time()
        await self._insert(insert_rows(records, now, self.owner, now + self.lease_seconds))

    async def get_task(
        self, task_id: str, upstream: str | None = None, *, message_id: int | None = None
    ) -> TaskRecord | None:
        """The task `upstream` gave this id; without `upstream` (an old button, a typed id), the only
        task with this id, or the one `message_id` shows (AmbiguousTask when that does not decide)."""
        if upstream is not None:
            row = await self._fetchone("SELECT * FROM tasks WHERE upstream = ? AND id = ?", (upstream, task_id))
            return TaskRecord.from_row(row) if row else None
        rows = await self._fetchall("SELECT * FROM tasks WHERE id = ? ORDER BY created_at, upstream", (task_id,))
        return only_task([TaskRecord.from_row(row) for row in rows], task_id, message_id)

    async def task_for_message(self, message_id: int) -> TaskRecord | None:
        row = await self._fetchone(
            "SELECT * FROM tasks WHERE message_id = ? ORDER BY created_at DESC LIMIT 1", (message_id,)
        )
        return TaskRecord.from_row(row) if row else None

    async def update_task(self, key: TaskKey, **changes: Any) -> None:
        """Write only the named columns of that one row; unknown names are a programming error."""
        if not changes:
            return
        names, values = task_changes(changes)
        assignments = ", ".join(f"{name} = ?" for name in (*names, "updated_at"))
        sql = f"UPDATE tasks SET {assignments} WHERE upstream = ? AND id = ?"
        await self._write(lambda: self._db.execute(sql, [*values, time.time(), key.upstream, key.id]))

    async def update_many(self, changes: Mapping[TaskKey, Mapping[str, Any]]) -> None:
        """`update_task` for many tasks ({key: {column: value}}) in one transaction: the tracker
        saves a whole poll cycle at once instead of committing thousands of times."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        now = time.time()
        for key, columns in changes.items():
            if columns:
                names, values = task_changes(columns)
                groups.setdefault(names, []).append([*values, now, key.upstream, key.id])
        if not groups:
            return

        async def work() -> None:
            for names, rows in groups.items():
                assignments = ", ".join(f"{name} = ?" for name in (*names, "updated_at"))
                await self._db.executemany(f"UPDATE tasks SET {assignments} WHERE upstream = ? AND id = ?", rows)

        await self._write(work)

    async def in_flight(self) -> list[TaskRecord]:
        """Every task whose final state is not yet on Discord, oldest first."""
        rows = await self._fetchall("SELECT * FROM tasks WHERE delivered = 0 ORDER BY created_at")
        return [TaskRecord.from_row(row) for row in rows]

    async def recent_tasks(self, user_id: int, limit: int = 10) -> list[TaskRecord]:
        rows = await self._fetchall(
            "SELECT * FROM tasks WHERE user_id = ? ORDER BY created_at DESC LIMIT ?", (user_id, limit)
        )
        return [TaskRecord.from_row(row) for row in rows]

    async def count_tasks(self, *, delivered: bool | None = None) -> int:
        if delivered is None:
            row = await self._fetchone("SELECT COUNT(*) FROM tasks")
        else:
            row = await self._fetchone("SELECT COUNT(*) FROM tasks WHERE delivered = ?", (int(delivered),))
        return int(row[0]) if row else 0
