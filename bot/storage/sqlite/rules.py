"""SQLite: what the guild policy reads and writes (bot/policy.py): settings, submits in flight, counts."""

from __future__ import annotations

import time
from typing import Any

from bot.storage.common import GUILD_SETTINGS, guild_filter, guild_settings_values
from bot.storage.sqlite.base import SqliteBase

_SAVE_SETTINGS = (
    f"INSERT INTO guild_settings (guild_id, {', '.join(GUILD_SETTINGS)}, updated_at) "
    f"VALUES (?, {', '.join('?' for _ in GUILD_SETTINGS)}, ?) ON CONFLICT (guild_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in [*GUILD_SETTINGS, "updated_at"])
)


class SqliteRules(SqliteBase):
    async def guild_settings_row(self, guild_id: int) -> dict[str, Any] | None:
        row = await self._fetchone("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,))
        return dict(row) if row else None

    async def save_guild_settings(self, guild_id: int, values: dict[str, Any]) -> None:
        """Upsert every setting column (lists as JSON)."""
        params = [guild_id, *guild_settings_values(values), time.time()]
        await self._write(lambda: self._db.execute(_SAVE_SETTINGS, params))

    # ---- submits in flight (limits across processes) ----------------------------------------------

    async def add_submit_slot(self, guild_id: int, user_id: int) -> int:
        """A submit passed the policy check and is on its way: other processes count it from now."""
        sql = "INSERT INTO submit_slots (guild_id, user_id, created_at) VALUES (?, ?, ?)"
        params = (guild_id, user_id, time.time())

        async def add() -> int:
            async with self._db.execute(sql, params) as cursor:
                slot_id = cursor.lastrowid
            assert slot_id is not None
            return int(slot_id)

        return await self._write(add)

    async def drop_submit_slot(self, slot_id: int) -> None:
        await self._write(lambda: self._db.execute("DELETE FROM submit_slots WHERE id = ?", (slot_id,)))

    async def submit_slot_usage(
        self, guild_id: int, user_id: int, *, since: float, exclude: int
    ) -> tuple[int, int, float | None]:
        """Other submits in flight since `since`: (the user's, the guild's, the user's latest start)."""
        row = await self._fetchone(
            "SELECT COALESCE(SUM(user_id = ?), 0), COUNT(*), MAX(CASE WHEN user_id = ? THEN created_at END) "
            "FROM submit_slots WHERE guild_id = ? AND created_at >= ? AND id != ?",
            (user_id, user_id, guild_id, since, exclude),
        )
        assert row is not None
        return int(row[0]), int(row[1]), float(row[2]) if row[2] is not None else None

    # ---- counts of a guild's tasks ---------------------------------------------------------------

    async def count_guild_tasks(
        self, guild_id: int | None, *, user_id: int | None = None, since: float | None = None, running: bool = False
    ) -> int:
        """Tasks in a guild, or made in DMs for guild None (of one user, since a time, or only
        unfinished: delivered = 0)."""
        where, params = guild_filter(guild_id, "?")
        sql = f"SELECT COUNT(*) FROM tasks WHERE {where}"
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(since)
        if running:
            sql += " AND delivered = 0"
        row = await self._fetchone(sql, params)
        return int(row[0]) if row else 0

    async def last_task_time(self, guild_id: int | None, user_id: int) -> float | None:
        where, params = guild_filter(guild_id, "?")
        row = await self._fetchone(
            f"SELECT MAX(created_at) FROM tasks WHERE {where} AND user_id = ?", [*params, user_id]
        )
        return float(row[0]) if row and row[0] is not None else None
