"""SQLite: task leases (issue 8: several processes share the tracking work)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from bot.models import TaskKey, TaskRecord
from bot.storage.sqlite.base import SqliteBase

#: Ids bound in one `IN (...)`: well under SQLite's limit of host parameters per statement.
_ID_CHUNK = 500


class SqliteLeases(SqliteBase):
    async def claim_tasks(self, limit: int, *, include_own: bool = False) -> list[TaskRecord]:
        """Lease up to `limit` undelivered tasks whose lease is free (or, with `include_own`, held by
        this owner: a restarted process takes its own tasks back at once), oldest first.

        One UPDATE ... RETURNING under SQLite's write lock, so two processes never get the same task.
        """
        if limit <= 0:
            return []
        now = time.time()
        own = " OR lease_owner = ?" if include_own else ""
        sql = (
            "UPDATE tasks SET lease_owner = ?, lease_expires = ? WHERE (upstream, id) IN "
            "(SELECT upstream, id FROM tasks WHERE delivered = 0 AND (lease_owner IS NULL OR lease_expires IS NULL "
            f"OR lease_expires < ?{own}) "
            "ORDER BY created_at, id, upstream LIMIT ?) RETURNING *"
        )
        params: list[Any] = [self.owner, now + self.lease_seconds, now]
        if include_own:
            params.append(self.owner)
        params.append(limit)

        async def claim() -> list[TaskRecord]:
            async with self._db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
            return [TaskRecord.from_row(row) for row in rows]

        claimed = await self._write(claim)
        return sorted(claimed, key=lambda r: (r.created_at, r.id, r.upstream))

    async def lease_census(self) -> tuple[int, int]:
        """(undelivered tasks, other owners holding a live lease on one): a process taking over
        orphans takes its fair share, not all of them."""
        row = await self._fetchone(
            "SELECT COUNT(*), COUNT(DISTINCT CASE WHEN lease_owner != ? AND lease_expires >= ? THEN lease_owner END) "
            "FROM tasks WHERE delivered = 0",
            (self.owner, time.time()),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def renew_leases(self) -> set[TaskKey]:
        """Extend every lease this owner holds on an undelivered task; the tasks it still holds (a task
        missing here was taken over by another process after our lease ran out)."""
        sql = "UPDATE tasks SET lease_expires = ? WHERE lease_owner = ? AND delivered = 0 RETURNING upstream, id"
        params = (time.time() + self.lease_seconds, self.owner)

        async def renew() -> set[TaskKey]:
            async with self._db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
            return {TaskKey(str(row[0]), str(row[1])) for row in rows}

        return await self._write(renew)

    async def hold_leases(self, keys: Sequence[TaskKey]) -> set[TaskKey]:
        """Extend the leases of these tasks that this owner still holds undelivered; the tasks held.
        The fence before posting final results, so two processes never both deliver a task: one
        transaction for all the results that are ready, not one each."""
        until = time.time() + self.lease_seconds
        # One statement per upstream and chunk of ids: `upstream = ? AND id IN (...)` probes the primary
        # key (a row-value IN over VALUES would scan every task in flight), and `+delivered` keeps the
        # planner off the in-flight index for the same reason.
        ids_of: dict[str, list[str]] = {}
        for key in sorted(set(keys)):
            ids_of.setdefault(key.upstream, []).append(key.id)
        chunks = [
            (upstream, ids[start : start + _ID_CHUNK])
            for upstream, ids in ids_of.items()
            for start in range(0, len(ids), _ID_CHUNK)
        ]

        async def hold() -> set[TaskKey]:
            held: set[TaskKey] = set()
            for upstream, chunk in chunks:
                sql = (
                    "UPDATE tasks SET lease_expires = ? WHERE upstream = ? "
                    f"AND id IN ({', '.join('?' for _ in chunk)}) AND lease_owner = ? AND +delivered = 0 "
                    "RETURNING upstream, id"
                )
                async with self._db.execute(sql, (until, upstream, *chunk, self.owner)) as cursor:
                    held.update(TaskKey(str(row[0]), str(row[1])) for row in await cursor.fetchall())
            return held

        return await self._write(hold) if chunks else set()

    async def release_leases(self) -> int:
        """Give up this owner's leases on undelivered tasks (clean shutdown: others take over at once)."""
        sql = "UPDATE tasks SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ? AND delivered = 0"

        async def release() -> int:
            async with self._db.execute(sql, (self.owner,)) as cursor:
                return max(cursor.rowcount, 0)

        return await self._write(release)
