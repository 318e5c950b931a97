"""PostgreSQL: usage figures for /mjadmin stats and the key listing."""

from __future__ import annotations

from typing import Any

from bot.storage.postgres.base import PostgresBase


class PostgresStats(PostgresBase):
    async def daily_task_counts(self, guild_id: int, since: float) -> list[tuple[str, int, int, int]]:
        """(UTC day, tasks, succeeded, failed) per day, oldest first; days as SQLite's date() writes them."""
        rows = await self._fetch(
            "SELECT to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, COUNT(*), "
            "COUNT(*) FILTER (WHERE status = 'SUCCESS'), COUNT(*) FILTER (WHERE status IN ('FAILURE', 'CANCEL')) "
            "FROM tasks WHERE guild_id = $1 AND created_at >= $2 GROUP BY day ORDER BY day",
            guild_id,
            since,
        )
        return [(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]

    async def top_users(self, guild_id: int, since: float, limit: int = 5) -> list[tuple[int, int]]:
        rows = await self._fetch(
            "SELECT user_id, COUNT(*) AS n FROM tasks WHERE guild_id = $1 AND created_at >= $2 "
            "GROUP BY user_id ORDER BY n DESC, user_id LIMIT $3",
            guild_id,
            since,
            limit,
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def tasks_by_upstream(self, guild_id: int | None, since: float | None = None) -> dict[str, int]:
        """Task counts per upstream name (`key:<id>`, `key:<id>@mode`, `default`); guild None = all."""
        sql = "SELECT upstream, COUNT(*) FROM tasks WHERE 1 = 1"
        params: list[Any] = []
        if guild_id is not None:
            params.append(guild_id)
            sql += f" AND guild_id = ${len(params)}"
        if since is not None:
            params.append(since)
            sql += f" AND created_at >= ${len(params)}"
        rows = await self._fetch(sql + " GROUP BY upstream", *params)
        return {str(r[0]): int(r[1]) for r in rows}
