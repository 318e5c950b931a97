"""PostgreSQL: what the guild policy reads and writes (bot/policy.py): settings, submits in flight, counts."""

from __future__ import annotations

import time
from typing import Any

from bot.storage.common import GUILD_SETTINGS, guild_filter, guild_settings_values
from bot.storage.postgres.base import PostgresBase, placeholders

_SAVE_SETTINGS = (
    f"INSERT INTO guild_settings (guild_id, {', '.join(GUILD_SETTINGS)}, updated_at) "
    f"VALUES ({placeholders(len(GUILD_SETTINGS) + 2)}) ON CONFLICT (guild_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in [*GUILD_SETTINGS, "updated_at"])
)


class PostgresRules(PostgresBase):
    async def guild_settings_row(self, guild_id: int) -> dict[str, Any] | None:
        row = await self._fetchrow("SELECT * FROM guild_settings WHERE guild_id = $1", guild_id)
        return dict(row) if row else None

    async def save_guild_settings(self, guild_id: int, values: dict[str, Any]) -> None:
        """Upsert every setting column (lists as JSON)."""
        await self._execute(_SAVE_SETTINGS, guild_id, *guild_settings_values(values), time.time())

    # ---- submits in flight (limits across processes) ----------------------------------------------

    async def add_submit_slot(self, guild_id: int, user_id: int) -> int:
        """A submit passed the policy check and is on its way: other processes count it from now."""
        slot_id = await self._write_fetchval(
            "INSERT INTO submit_slots (guild_id, user_id, created_at) VALUES ($1, $2, $3) RETURNING id",
            guild_id,
            user_id,
            time.time(),
        )
        return int(slot_id)

    async def drop_submit_slot(self, slot_id: int) -> None:
        await self._execute("DELETE FROM submit_slots WHERE id = $1", slot_id)

    async def submit_slot_usage(
        self, guild_id: int, user_id: int, *, since: float, exclude: int
    ) -> tuple[int, int, float | None]:
        """Other submits in flight since `since`: (the user's, the guild's, the user's latest start)."""
        row = await self._fetchrow(
            "SELECT COUNT(*) FILTER (WHERE user_id = $1), COUNT(*), MAX(created_at) FILTER (WHERE user_id = $1) "
            "FROM submit_slots WHERE guild_id = $2 AND created_at >= $3 AND id <> $4",
            user_id,
            guild_id,
            since,
            exclude,
        )
        assert row is not None
        return int(row[0]), int(row[1]), float(row[2]) if row[2] is not None else None

    # ---- counts of a guild's tasks ---------------------------------------------------------------

    async def count_guild_tasks(
        self, guild_id: int | None, *, user_id: int | None = None, since: float | None = None, running: bool = False
    ) -> int:
        """Tasks in a guild, or made in DMs for guild None (of one user, since a time, or only
        unfinished: delivered = 0)."""
        where, params = guild_filter(guild_id, "$1")
        sql = f"SELECT COUNT(*) FROM tasks WHERE {where}"
        if user_id is not None:
            params.append(user_id)
            sql += f" AND user_id = ${len(params)}"
        if since is not None:
            params.append(since)
            sql += f" AND created_at >= ${len(params)}"
        if running:
            sql += " AND delivered = 0"
        return int(await self._fetchval(sql, *params))

    async def last_task_time(self, guild_id: int | None, user_id: int) -> float | None:
        where, params = guild_filter(guild_id, "$1")
        value = await self._fetchval(
            f"SELECT MAX(created_at) FROM tasks WHERE {where} AND user_id = ${len(params) + 1}", *params, user_id
        )
        return float(value) if value is not None else None
