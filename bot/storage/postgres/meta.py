"""PostgreSQL: small facts the bot keeps about itself."""

from __future__ import annotations

from bot.storage.postgres.base import PostgresBase


class PostgresMeta(PostgresBase):
    async def get_meta(self, key: str) -> str | None:
        value = await self._fetchval("SELECT value FROM meta WHERE key = $1", key)
        return str(value) if value is not None else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )
