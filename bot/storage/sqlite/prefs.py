"""SQLite: a member's /settings and /prefer choices."""

from __future__ import annotations

import time
from typing import Any

from bot.preferences import PREFS_COLUMNS, UserPrefs
from bot.storage.common import prefs_changes, prefs_upsert
from bot.storage.sqlite.base import SqliteBase

_SAVE_PREFS = (
    f"INSERT OR REPLACE INTO user_prefs (user_id, {', '.join(PREFS_COLUMNS)}, updated_at) "
    f"VALUES (?, {', '.join('?' for _ in PREFS_COLUMNS)}, ?)"
)
_OPTION = "'$.' || json_quote(:name)"  # the JSON path of one option set (names are [a-z0-9_-])
_SET_OPTION = (
    "INSERT INTO user_prefs (user_id, option_sets, updated_at) VALUES (:user, json_object(:name, :value), :now) "
    f"ON CONFLICT (user_id) DO UPDATE SET option_sets = json_set(user_prefs.option_sets, {_OPTION}, :value), "
    f"updated_at = :now WHERE json_type(user_prefs.option_sets, {_OPTION}) IS NOT NULL "
    "OR (SELECT COUNT(*) FROM json_each(user_prefs.option_sets)) < :limit"
)
_DELETE_OPTION = (
    f"UPDATE user_prefs SET option_sets = json_remove(option_sets, {_OPTION}), updated_at = :now "
    f"WHERE user_id = :user AND json_type(option_sets, {_OPTION}) IS NOT NULL"
)


class SqlitePrefs(SqliteBase):
    async def get_prefs(self, user_id: int) -> UserPrefs:
        row = await self._fetchone("SELECT * FROM user_prefs WHERE user_id = ?", (user_id,))
        return UserPrefs.from_row(row) if row else UserPrefs(user_id)

    async def save_prefs(self, prefs: UserPrefs) -> None:
        """Write the whole row (imports, tests); a member's choice uses update_prefs."""
        params = (prefs.user_id, *prefs.column_values(), time.time())
        await self._write(lambda: self._db.execute(_SAVE_PREFS, params))

    async def update_prefs(self, user_id: int, **changes: Any) -> UserPrefs:
        """Write only the named settings, in one upsert; the prefs as stored afterwards."""
        names, values = prefs_changes(changes)
        if not names:
            return await self.get_prefs(user_id)
        sql = prefs_upsert(names, ", ".join("?" * (len(names) + 2)))
        params = (user_id, *values, time.time())

        async def update() -> UserPrefs:
            async with self._db.execute(sql, params) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            return UserPrefs.from_row(row)

        return await self._write(update)

    async def set_option_set(self, user_id: int, name: str, value: str, *, limit: int) -> bool:
        """Add or change one option set; False (nothing written) if it is new and `limit` are stored."""
        params = {"user": user_id, "name": name, "value": value, "now": time.time(), "limit": limit}

        async def put() -> bool:
            async with self._db.execute(_SET_OPTION, params) as cursor:
                return cursor.rowcount == 1

        return await self._write(put)

    async def delete_option_set(self, user_id: int, name: str) -> bool:
        """Remove one option set; False if there was none of that name."""
        params = {"user": user_id, "name": name, "now": time.time()}

        async def delete() -> bool:
            async with self._db.execute(_DELETE_OPTION, params) as cursor:
                return cursor.rowcount == 1

        return await self._write(delete)
