"""SQLite: API keys added from Discord (issue 4; bot/upstream/keys.py). Rows come back as plain dicts;
ApiKey.from_row gives them their type."""

from __future__ import annotations

import time
from typing import Any

from bot.models import NEW_API_KEY_COLUMNS, NewApiKey
from bot.storage.common import api_key_changes
from bot.storage.sqlite.base import SqliteBase

_INSERT = (
    f"INSERT INTO api_keys ({', '.join(NEW_API_KEY_COLUMNS)}, created_at, updated_at) "
    f"VALUES ({', '.join('?' * (len(NEW_API_KEY_COLUMNS) + 2))})"
)


class SqliteKeys(SqliteBase):
    async def api_key_rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetchall("SELECT * FROM api_keys ORDER BY id")]

    async def api_key_row(self, key_id: int) -> dict[str, Any] | None:
        row = await self._fetchone("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return dict(row) if row else None

    async def insert_api_key(self, key: NewApiKey) -> int:
        now = time.time()

        async def insert() -> int:
            async with self._db.execute(_INSERT, (*key.values(), now, now)) as cursor:
                key_id = cursor.lastrowid
            assert key_id is not None
            return int(key_id)

        return await self._write(insert)

    async def update_api_key(self, key_id: int, **changes: Any) -> None:
        names, values = api_key_changes(changes)
        if not names:
            return
        sql = f"UPDATE api_keys SET {', '.join(f'{name} = ?' for name in names)} WHERE id = ?"
        await self._write(lambda: self._db.execute(sql, [*values, key_id]))

    async def bump_api_key_failure(self, key_id: int, reason: str) -> int:
        """Count one more refusal in the database itself, so two processes counting at once lose no
        increment; the new count (0 if the key is gone)."""
        sql = (
            "UPDATE api_keys SET failures = failures + 1, last_error = ?, updated_at = ? WHERE id = ? "
            "RETURNING failures"
        )
        params = (reason, time.time(), key_id)

        async def bump() -> int:
            async with self._db.execute(sql, params) as cursor:
                row = await cursor.fetchone()
            return int(row[0]) if row else 0

        return await self._write(bump)

    async def delete_api_key(self, key_id: int) -> None:
        await self._write(lambda: self._db.execute("DELETE FROM api_keys WHERE id = ?", (key_id,)))
