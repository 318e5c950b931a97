"""SQLite: a member's /settings and /prefer choices."""

from __future__ import annotations

import time

from bot.preferences import PREFS_COLUMNS, UserPrefs
from bot.storage.sqlite.base import SqliteBase

_SAVE_PREFS = (
    f"INSERT OR REPLACE INTO user_prefs (user_id, {', '.join(PREFS_COLUMNS)}, updated_at) "
    f"VALUES (?, {', '.join('?' for _ in PREFS_COLUMNS)}, ?)"
)


class SqlitePrefs(SqliteBase):
    async def get_prefs(self, user_id: int) -> UserPrefs:
        row = await self._fetchone("SELECT * FROM user_prefs WHERE user_id = ?", (user_id,))
        return UserPrefs.from_row(row) if row else UserPrefs(user_id)

    async def save_prefs(self, prefs: UserPrefs) -> None:
        params = (prefs.user_id, *prefs.column_values(), time.time())
        await self._write(lambda: self._db.execute(_SAVE_PREFS, params))
