"""PostgreSQL: task leases (several processes share the tracking work)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from bot.models import TaskKey, TaskRecord
from bot.storage.postgres.base import PostgresBase, affected


class PostgresLeases(PostgresBase):
    async def claim_tasks(self, limit: int, *, include_own: bool = False) -> list[TaskRecord]:
        """Lease up to `limit` undelivered tasks whose lease is free (or, with `include_own`, held by
        this owner), oldest first. FOR UPDATE SKIP LOCKED: two processes never get the same task, and
        neither waits for the other's rows."""
        if limit <= 0:
            return []
        now = time.time()
        own = " OR lease_owner = $1" if include_own else ""
        sql = (
            "UPDATE tasks SET lease_owner = $1, lease_expires = $2 WHERE (upstream, id) IN "
            "(SELECT upstream, id FROM tasks WHERE delivered = 0 AND (lease_owner IS NULL OR lease_expires IS NULL "
            f"OR lease_expires < $3{own}) "
            'ORDER BY created_at, id COLLATE "C", upstream COLLATE "C" LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING *'
        )
        rows = await self._write_fetch(sql, self.owner, now + self.lease_seconds, now, limit)
        return sorted((TaskRecord.from_row(row) for row in rows), key=lambda r: (r.created_at, r.id, r.upstream))

    async def lease_census(self) -> tuple[int, int]:
        """(undelivered tasks, other owners holding a live lease on one)."""
        row = await self._fetchrow(
            "SELECT COUNT(*), COUNT(DISTINCT lease_owner) FILTER (WHERE lease_owner <> $1 AND lease_expires >= $2) "
            "FROM tasks WHERE delivered = 0",
            self.owner,
            time.time(),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def renew_leases(self) -> set[TaskKey]:
        """Extend every lease this owner holds on an undelivered task; the tasks it still holds."""
        sql = (
            "UPDATE tasks SET lease_expires = $1 WHERE (upstream, id) IN (SELECT upstream, id FROM tasks "
            "WHERE lease_owner = $2 AND delivered = 0 ORDER BY upstream, id FOR UPDATE) RETURNING upstream, id"
        )
        rows = await self._write_fetch(sql, time.time() + self.lease_seconds, self.owner)
        return {TaskKey(str(row[0]), str(row[1])) for row in rows}

    async def hold_leases(self, keys: Sequence[TaskKey]) -> set[TaskKey]:
        """Extend the leases of these tasks that this owner still holds undelivered; the tasks held
        (the fence before posting results; rows locked in (upstream, id) order, as renew_leases does).
        The `id = ANY` probe keeps the planner on the id index even with stale statistics."""
        wanted = sorted(set(keys))
        if not wanted:
            return set()
        sql = (
            "UPDATE tasks SET lease_expires = $1 WHERE (upstream, id) IN (SELECT upstream, id FROM tasks "
            "WHERE id = ANY($3::text[]) AND (upstream, id) IN (SELECT * FROM unnest($2::text[], $3::text[])) "
            "AND lease_owner = $4 AND delivered = 0 ORDER BY upstream, id FOR UPDATE) RETURNING upstream, id"
        )
        upstreams, ids = [k.upstream for k in wanted], [k.id for k in wanted]
        rows = await self._write_fetch(sql, time.time() + self.lease_seconds, upstreams, ids, self.owner)
        return {TaskKey(str(row[0]), str(row[1])) for row in rows}

    async def release_leases(self) -> int:
        """Give up this owner's leases on undelivered tasks (clean shutdown: others take over at once)."""
        status = await self._execute(
            "UPDATE tasks SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = $1 AND delivered = 0",
            self.owner,
        )
        return affected(status)
