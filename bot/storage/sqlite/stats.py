"""SQLite: usage figures for /mjadmin stats and the key listing."""

from __future__ import annotations

from typing import Any

from bot.storage.sqlite.base import SqliteBase


class SqliteStats(SqliteBase):
    async def daily_task_counts(self, guild_id: int, since: float) -> list[tuple[str, int, int, int]]:
        """(UTC day, tasks, succeeded, failed) per day, oldest first."""
        rows = await self._fetchall(
            "SELECT date(created_at, 'unixepoch') AS day, COUNT(*), "
            "SUM(status = 'SUCCESS'), SUM(status IN ('FAILURE', 'CANCEL')) "
            "FROM tasks WHERE guild_id = ? AND created_at >= ? GROUP BY day ORDER BY day",
            (guild_id, since),
        )
        return [(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]

    async def top_users(self, guild_id: int, since: float, limit: int = 5) -> list[tuple[int, int]]:
        rows = await self._fetchall(
            "SELECT user_id, COUNT(*) AS n FROM tasks WHERE guild_id = ? AND created_at >= ? "
            "GROUP BY user_id ORDER BY n DESC, user_id LIMIT ?",
            (guild_id, since, limit),
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def tasks_by_upstream(self, guild_id: int | None, since: float | None = None) -> dict[str, int]:
        """Task counts per upstream name (`key:<id>`, `key:<id>@mode`, `default`); guild None = all."""
        sql = "SELECT upstream, COUNT(*) FROM tasks WHERE 1 = 1"
        params: list[Any] = []
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(since)
        rows = await self._fetchall(sql + " GROUP BY upstream", params)
        return {str(r[0]): int(r[1]) for r in rows}
