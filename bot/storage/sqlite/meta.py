"""SQLite: small facts the bot keeps about itself."""

from __future__ import annotations

from bot.storage.sqlite.base import SqliteBase


class SqliteMeta(SqliteBase):
    async def get_meta(self, key: str) -> str | None:
        row = await self._fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        sql = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
        await self._write(lambda: self._db.execute(sql, (key, value)))
