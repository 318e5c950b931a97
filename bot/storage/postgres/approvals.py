"""PostgreSQL: servers a bot owner approved (bot/access.py GuildGate)."""

from __future__ import annotations

import time

from bot.storage.postgres.base import PostgresBase


class PostgresApprovals(PostgresBase):
    async def approved_guild_ids(self) -> list[int]:
        rows = await self._fetch("SELECT guild_id FROM approved_guilds ORDER BY guild_id")
        return [int(row[0]) for row in rows]

    async def approve_guild(self, guild_id: int, approved_by: int) -> None:
        await self._execute(
            "INSERT INTO approved_guilds (guild_id, approved_by, approved_at) VALUES ($1, $2, $3) "
            "ON CONFLICT (guild_id) DO NOTHING",
            guild_id,
            approved_by,
            time.time(),
        )

    async def revoke_guild(self, guild_id: int) -> bool:
        status = await self._execute("DELETE FROM approved_guilds WHERE guild_id = $1", guild_id)
        return status.split()[-1] != "0"
