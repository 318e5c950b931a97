"""SQLite: servers a bot owner approved (bot/access.py GuildGate)."""

from __future__ import annotations

import time

from bot.storage.sqlite.base import SqliteBase


class SqliteApprovals(SqliteBase):
    async def approved_guild_ids(self) -> list[int]:
        rows = await self._fetchall("SELECT guild_id FROM approved_guilds ORDER BY guild_id")
        return [int(row[0]) for row in rows]

    async def approve_guild(self, guild_id: int, approved_by: int) -> None:
        sql = (
            "INSERT INTO approved_guilds (guild_id, approved_by, approved_at) VALUES (?, ?, ?) "
            "ON CONFLICT (guild_id) DO NOTHING"
        )
        await self._write(lambda: self._db.execute(sql, (guild_id, approved_by, time.time())))

    async def revoke_guild(self, guild_id: int) -> bool:
        async def revoke() -> bool:
            async with self._db.execute("DELETE FROM approved_guilds WHERE guild_id = ?", (guild_id,)) as cursor:
                return cursor.rowcount > 0

        return await self._write(revoke)
