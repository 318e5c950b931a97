"""PostgreSQL: one submit per button click."""

from __future__ import annotations

import time

from bot.models import TaskKey
from bot.storage.postgres.base import PostgresBase, affected


class PostgresClicks(PostgresBase):
    async def claim_click(self, task: TaskKey, button: str, user_id: int, *, window: float) -> bool:
        """True if this click may submit; False if the same button was submitted within `window` s.
        One upsert: a racing second click waits for the first's row and then fails its WHERE."""
        now = time.time()
        status = await self._execute(
            "INSERT INTO clicks (upstream, task_id, button, user_id, child_id, created_at) "
            "VALUES ($1, $2, $3, $4, NULL, $5) ON CONFLICT (upstream, task_id, button) DO UPDATE SET "
            "user_id = excluded.user_id, child_id = NULL, created_at = excluded.created_at "
            "WHERE clicks.created_at < $6",
            task.upstream,
            task.id,
            button,
            user_id,
            now,
            now - window,
        )
        return affected(status) == 1

    async def release_click(self, task: TaskKey, button: str) -> None:
        """The claimed submit failed before anything was charged: let the user try again."""
        sql = "DELETE FROM clicks WHERE upstream = $1 AND task_id = $2 AND button = $3"
        await self._execute(sql, task.upstream, task.id, button)
