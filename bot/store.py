"""Persistent state behind one narrow interface.

`Store` is the only owner of the database connection. The rest of the bot talks to it through the
methods below and never sees SQL, so a PostgreSQL backend can later implement the same methods.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

from bot.models import MJButton

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """A task the bot submitted, and the Discord message that shows it."""

    id: str
    action: str
    user_id: int
    channel_id: int
    guild_id: int | None = None
    message_id: int | None = None
    upstream: str = "default"
    prompt: str = ""
    final_prompt: str = ""
    parent_id: str | None = None
    status: str = ""
    progress: int | None = None
    queue_position: int | None = None
    image_url: str | None = None
    result_url: str | None = None
    fail_reason: str = ""
    buttons: tuple[MJButton, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    locale: str = "en"
    shown: str = ""
    delivered: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None

    @classmethod
    def from_row(cls, row: aiosqlite.Row) -> TaskRecord:
        values = dict(row)
        buttons = tuple(b for b in (MJButton.from_json(item) for item in json.loads(values["buttons"] or "[]")) if b)
        values["buttons"] = buttons
        values["extra"] = json.loads(values["extra"] or "{}")
        values["delivered"] = bool(values["delivered"])
        return cls(**values)

    def button(self, index: int) -> MJButton | None:
        return self.buttons[index] if 0 <= index < len(self.buttons) else None


_COLUMNS = tuple(f.name for f in fields(TaskRecord))


def _to_db(name: str, value: Any) -> Any:
    if name == "buttons":
        return json.dumps([b.to_json() for b in value], ensure_ascii=False)
    if name == "extra":
        return json.dumps(value, ensure_ascii=False)
    if name == "delivered":
        return int(bool(value))
    return value


def _migrations() -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for entry in resources.files("bot.migrations").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Store:
    """SQLite (aiosqlite) storage. Open with `await Store.open(path)`; close with `await store.close()`."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._db = connection

    @classmethod
    async def open(cls, path: str | Path) -> Store:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(str(path), timeout=10.0)
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA synchronous=NORMAL")
        store = cls(connection)
        await store._migrate()
        return store

    async def close(self) -> None:
        await self._db.close()

    async def _migrate(self) -> None:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        for version, script in _migrations():
            if version <= current:
                continue
            # executescript commits first, so wrap the script and the version bump in one transaction.
            await self._db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
            log.info("Applied database migration %04d", version)

    async def schema_version(self) -> int:
        async with self._db.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    # ---- tasks -----------------------------------------------------------------------------------

    async def insert_task(self, record: TaskRecord) -> TaskRecord:
        now = time.time()
        record = replace(record, created_at=record.created_at or now, updated_at=now)
        placeholders = ", ".join("?" for _ in _COLUMNS)
        values = [_to_db(name, getattr(record, name)) for name in _COLUMNS]
        await self._db.execute(f"INSERT OR REPLACE INTO tasks ({', '.join(_COLUMNS)}) VALUES ({placeholders})", values)
        await self._db.commit()
        return record

    async def get_task(self, task_id: str) -> TaskRecord | None:
        async with self._db.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)) as cursor:
            row = await cursor.fetchone()
        return TaskRecord.from_row(row) if row else None

    async def task_for_message(self, message_id: int) -> TaskRecord | None:
        async with self._db.execute(
            "SELECT * FROM tasks WHERE message_id = ? ORDER BY created_at DESC LIMIT 1", (message_id,)
        ) as cursor:
            row = await cursor.fetchone()
        return TaskRecord.from_row(row) if row else None

    async def update_task(self, task_id: str, **changes: Any) -> None:
        """Write only the named columns; unknown names are a programming error."""
        if not changes:
            return
        unknown = set(changes) - set(_COLUMNS) - {"id"}
        if unknown or "id" in changes:
            raise ValueError(f"cannot update task columns: {sorted(unknown | ({'id'} & set(changes)))}")
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in changes)
        values = [_to_db(name, value) for name, value in changes.items()]
        await self._db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", [*values, task_id])
        await self._db.commit()

    async def in_flight(self) -> list[TaskRecord]:
        """Every task whose final state is not yet on Discord, oldest first."""
        async with self._db.execute("SELECT * FROM tasks WHERE delivered = 0 ORDER BY created_at") as cursor:
            rows = await cursor.fetchall()
        return [TaskRecord.from_row(row) for row in rows]

    async def recent_tasks(self, user_id: int, limit: int = 10) -> list[TaskRecord]:
        async with self._db.execute(
            "SELECT * FROM tasks WHERE user_id = ? ORDER BY created_at DESC LIMIT ?", (user_id, limit)
        ) as cursor:
            rows = await cursor.fetchall()
        return [TaskRecord.from_row(row) for row in rows]

    async def count_tasks(self, *, delivered: bool | None = None) -> int:
        sql = "SELECT COUNT(*) FROM tasks"
        params: Sequence[Any] = ()
        if delivered is not None:
            sql += " WHERE delivered = ?"
            params = (int(delivered),)
        async with self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def insert_many(self, records: Iterable[TaskRecord]) -> None:
        """Bulk insert (benchmarks, imports) in one transaction."""
        now = time.time()
        rows = [
            [
                _to_db(name, getattr(replace(r, created_at=r.created_at or now, updated_at=now), name))
                for name in _COLUMNS
            ]
            for r in records
        ]
        placeholders = ", ".join("?" for _ in _COLUMNS)
        await self._db.executemany(
            f"INSERT OR REPLACE INTO tasks ({', '.join(_COLUMNS)}) VALUES ({placeholders})", rows
        )
        await self._db.commit()

    # ---- clicks ----------------------------------------------------------------------------------

    async def claim_click(self, task_id: str, button: str, user_id: int, *, window: float) -> bool:
        """True if this click may submit; False if the same button was submitted within `window` s.

        One upsert statement, so two clicks racing (even from two processes) cannot both win.
        """
        now = time.time()
        cursor = await self._db.execute(
            "INSERT INTO clicks (task_id, button, user_id, child_id, created_at) VALUES (?, ?, ?, NULL, ?) "
            "ON CONFLICT (task_id, button) DO UPDATE SET user_id = excluded.user_id, "
            "child_id = NULL, created_at = excluded.created_at WHERE clicks.created_at < ?",
            (task_id, button, user_id, now, now - window),
        )
        claimed = cursor.rowcount == 1
        await cursor.close()
        await self._db.commit()
        return claimed

    async def release_click(self, task_id: str, button: str) -> None:
        """The claimed submit failed before anything was charged: let the user try again."""
        await self._db.execute("DELETE FROM clicks WHERE task_id = ? AND button = ?", (task_id, button))
        await self._db.commit()

    # ---- meta ------------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        async with self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cursor:
            row = await cursor.fetchone()
        return str(row[0]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )
        await self._db.commit()
