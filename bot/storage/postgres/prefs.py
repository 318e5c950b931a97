"""PostgreSQL: a member's /settings and /prefer choices."""

from __future__ import annotations

import time

from bot.preferences import PREFS_COLUMNS, UserPrefs
from bot.storage.postgres.base import PostgresBase, placeholders

_SAVE_PREFS = (
    f"INSERT INTO user_prefs (user_id, {', '.join(PREFS_COLUMNS)}, updated_at) "
    f"VALUES ({placeholders(len(PREFS_COLUMNS) + 2)}) ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in (*PREFS_COLUMNS, "updated_at"))
)


class PostgresPrefs(PostgresBase):
    async def get_prefs(self, user_id: int) -> UserPrefs:
        row = await self._fetchrow("SELECT * FROM user_prefs WHERE user_id = $1", user_id)
        return UserPrefs.from_row(row) if row else UserPrefs(user_id)

    async def save_prefs(self, prefs: UserPrefs) -> None:
        await self._execute(_SAVE_PREFS, prefs.user_id, *prefs.column_values(), time.time())
