"""PostgreSQL: API keys added from Discord. Rows come back as plain dicts; ApiKey.from_row types them."""

from __future__ import annotations

import time
from typing import Any

from bot.models import NEW_API_KEY_COLUMNS, NewApiKey
from bot.storage.common import api_key_changes
from bot.storage.postgres.base import PostgresBase, assignments, placeholders

_INSERT = (
    f"INSERT INTO api_keys ({', '.join(NEW_API_KEY_COLUMNS)}, created_at, updated_at) "
    f"VALUES ({placeholders(len(NEW_API_KEY_COLUMNS) + 2)}) RETURNING id"
)


class PostgresKeys(PostgresBase):
    async def api_key_rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("SELECT * FROM api_keys ORDER BY id")]

    async def api_key_row(self, key_id: int) -> dict[str, Any] | None:
        row = await self._fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
        return dict(row) if row else None

    async def insert_api_key(self, key: NewApiKey) -> int:
        now = time.time()
        return int(await self._write_fetchval(_INSERT, *key.values(), now, now))

    async def update_api_key(self, key_id: int, **changes: Any) -> None:
        names, values = api_key_changes(changes)
        if not names:
            return
        await self._execute(f"UPDATE api_keys SET {assignments(names)} WHERE id = ${len(names) + 1}", *values, key_id)

    async def bump_api_key_failure(self, key_id: int, reason: str) -> int:
        """Count one more refusal in the database itself (no lost increments); the new count, 0 if gone."""
        count = await self._write_fetchval(
            "UPDATE api_keys SET failures = failures + 1, last_error = $1, updated_at = $2 WHERE id = $3 "
            "RETURNING failures",
            reason,
            time.time(),
            key_id,
        )
        return int(count) if count is not None else 0

    async def delete_api_key(self, key_id: int) -> None:
        await self._execute("DELETE FROM api_keys WHERE id = $1", key_id)
