"""SQLite: one submit per button click."""

from __future__ import annotations

import time

from bot.models import TaskKey
from bot.storage.sqlite.base import SqliteBase


class SqliteClicks(SqliteBase):
    async def claim_click(self, task: TaskKey, button: str, user_id: int, *, window: float) -> bool:
        """True if this click may submit; False if the same button was submitted within `window` s.

        One upsert statement, so two clicks racing (even from two processes) cannot both win.
        """
        now = time.time()

        async def claim() -> bool:
            cursor = await self._db.execute(
                "INSERT INTO clicks (upstream, task_id, button, user_id, child_id, created_at) "
                "VALUES (?, ?, ?, ?, NULL, ?) ON CONFLICT (upstream, task_id, button) DO UPDATE SET "
                "user_id = excluded.user_id, child_id = NULL, created_at = excluded.created_at "
                "WHERE clicks.created_at < ?",
                (task.upstream, task.id, button, user_id, now, now - window),
            )
            claimed = cursor.rowcount == 1
            await cursor.close()
            return claimed

        return await self._write(claim)

    async def release_click(self, task: TaskKey, button: str) -> None:
        """The claimed submit failed before anything was charged: let the user try again."""
        sql = "DELETE FROM clicks WHERE upstream = ? AND task_id = ? AND button = ?"
        await self._write(lambda: self._db.execute(sql, (task.upstream, task.id, button)))
