"""PostgreSQL: a member's /settings and /prefer choices."""

from __future__ import annotations

import time
from typing import Any

from bot.preferences import PREFS_COLUMNS, UserPrefs
from bot.storage.common import prefs_changes, prefs_upsert
from bot.storage.postgres.base import PostgresBase, affected, placeholders

_SAVE_PREFS = (
    f"INSERT INTO user_prefs (user_id, {', '.join(PREFS_COLUMNS)}, updated_at) "
    f"VALUES ({placeholders(len(PREFS_COLUMNS) + 2)}) ON CONFLICT (user_id) DO UPDATE SET "
    + ", ".join(f"{n} = excluded.{n}" for n in (*PREFS_COLUMNS, "updated_at"))
)
# Option sets are a JSON object in a text column (as on SQLite): changed as jsonb, in one statement.
_SET_OPTION = (
    "INSERT INTO user_prefs (user_id, option_sets, updated_at) "
    "VALUES ($1, jsonb_build_object($2::text, $3::text)::text, $4) "
    "ON CONFLICT (user_id) DO UPDATE SET updated_at = $4, "
    "option_sets = (user_prefs.option_sets::jsonb || jsonb_build_object($2::text, $3::text))::text "
    "WHERE user_prefs.option_sets::jsonb ? $2::text "
    "OR (SELECT COUNT(*) FROM jsonb_object_keys(user_prefs.option_sets::jsonb)) < $5"
)
_DELETE_OPTION = (
    "UPDATE user_prefs SET option_sets = (option_sets::jsonb - $2::text)::text, updated_at = $3 "
    "WHERE user_id = $1 AND option_sets::jsonb ? $2::text"
)


class PostgresPrefs(PostgresBase):
    async def get_prefs(self, user_id: int) -> UserPrefs:
        row = await self._fetchrow("SELECT * FROM user_prefs WHERE user_id = $1", user_id)
        return UserPrefs.from_row(row) if row else UserPrefs(user_id)

    async def save_prefs(self, prefs: UserPrefs) -> None:
        """Write the whole row (imports, tests); a member's choice uses update_prefs."""
        await self._execute(_SAVE_PREFS, prefs.user_id, *prefs.column_values(), time.time())

    async def update_prefs(self, user_id: int, **changes: Any) -> UserPrefs:
        """Write only the named settings, in one upsert; the prefs as stored afterwards."""
        names, values = prefs_changes(changes)
        if not names:
            return await self.get_prefs(user_id)
        sql = prefs_upsert(names, placeholders(len(names) + 2))
        rows = await self._write_fetch(sql, user_id, *values, time.time())
        return UserPrefs.from_row(rows[0])

    async def set_option_set(self, user_id: int, name: str, value: str, *, limit: int) -> bool:
        """Add or change one option set; False (nothing written) if it is new and `limit` are stored."""
        return affected(await self._execute(_SET_OPTION, user_id, name, value, time.time(), limit)) == 1

    async def delete_option_set(self, user_id: int, name: str) -> bool:
        """Remove one option set; False if there was none of that name."""
        return affected(await self._execute(_DELETE_OPTION, user_id, name, time.time())) == 1
