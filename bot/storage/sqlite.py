"""Persistent state behind one narrow interface.

`Store` is the only owner of the database connection. The rest of the bot talks to it through the
methods below and never sees SQL; `bot.storage.postgres.PostgresStore` implements the same methods (the
`Storage` protocol) on PostgreSQL, and `open_store` picks one from DATABASE_URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import aiosqlite

from bot.models import MJButton
from bot.preferences import UserPrefs

if TYPE_CHECKING:
    from bot.storage.postgres import PostgresStore

try:
    import fcntl
except ImportError:  # Windows: one process per database file there
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

T = TypeVar("T")

# SQLITE_BUSY, SQLITE_LOCKED, SQLITE_IOERR, SQLITE_FULL: another connection holds the lock, or the
# disk is (for now) full or failing. Worth waiting for; anything else is a bug and raises at once.
_RETRYABLE_DB_ERRORS = frozenset({5, 6, 10, 13})


def _retryable(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in _RETRYABLE_DB_ERRORS
    text = str(exc).lower()
    return any(word in text for word in ("locked", "disk is full", "disk i/o"))


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """An API key row to insert. `token` is already encrypted: the store never sees a plain secret."""

    guild_id: int | None
    label: str
    base_url: str
    auth_style: str
    mode: str
    priority: int
    token: str = field(repr=False)
    last4: str
    added_by: int

    def values(self) -> tuple[Any, ...]:
        """In the order of `_NEW_API_KEY_COLUMNS`."""
        return tuple(getattr(self, name) for name in _NEW_API_KEY_COLUMNS)


_NEW_API_KEY_COLUMNS = tuple(f.name for f in fields(NewApiKey))


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
    def from_row(cls, row: Mapping[str, Any] | aiosqlite.Row) -> TaskRecord:
        # Columns that are not fields (lease_owner, lease_expires) are coordination, not task data.
        values = {name: value for name, value in dict(row).items() if name in _FIELD_NAMES}
        buttons = tuple(b for b in (MJButton.from_json(item) for item in json.loads(values["buttons"] or "[]")) if b)
        values["buttons"] = buttons
        values["extra"] = json.loads(values["extra"] or "{}")
        values["delivered"] = bool(values["delivered"])
        return cls(**values)

    def button(self, index: int) -> MJButton | None:
        return self.buttons[index] if 0 <= index < len(self.buttons) else None


_COLUMNS = tuple(f.name for f in fields(TaskRecord))
_FIELD_NAMES = frozenset(_COLUMNS)
#: insert_task / insert_many also write the lease: the process that submitted a task tracks it at once.
_INSERT_COLUMNS = (*_COLUMNS, "lease_owner", "lease_expires")
#: Ids bound in one `IN (...)`: well under SQLite's limit of host parameters per statement.
_ID_CHUNK = 500


def default_owner() -> str:
    """This process's name in task leases when the caller gives none."""
    return f"pid-{os.getpid()}"


def _to_db(name: str, value: Any) -> Any:
    if name == "buttons":
        return json.dumps([b.to_json() for b in value], ensure_ascii=False)
    if name == "extra":
        return json.dumps(value, ensure_ascii=False)
    if name == "delivered":
        return int(bool(value))
    return value


@contextlib.contextmanager
def _migration_lock(path: str | Path) -> Iterator[None]:
    """Several processes opening one new database file migrate it one after the other (SQLite's
    executescript commits before it starts, so a transaction alone cannot serialize them)."""
    if str(path) == ":memory:" or fcntl is None:
        yield
        return
    # The lock is on the database's folder, so no lock file is left beside the database (a file
    # deleted after use would let a third process lock a fresh one while the second holds the old).
    folder = os.open(Path(path).parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(folder, fcntl.LOCK_UN)
    finally:
        os.close(folder)


def _migrations(folder: str = "") -> list[tuple[int, str]]:
    """(version, script) in order: SQLite's from bot/storage/migrations, PostgreSQL's from its subfolder."""
    found: list[tuple[int, str]] = []
    root = resources.files("bot.storage.migrations")
    for entry in (root / folder if folder else root).iterdir():
        name = entry.name
        if entry.is_file() and name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Store:
    """SQLite (aiosqlite) storage. Open with `await Store.open(path)`; close with `await store.close()`."""

    #: Seconds SQLite itself waits for another connection's lock before a write fails.
    busy_timeout: float = 10.0
    #: Tries of a write that failed on a lock or a full disk (backoff doubles from `write_backoff`).
    write_attempts: int = 6
    write_backoff: float = 0.2

    def __init__(
        self, connection: aiosqlite.Connection, *, owner: str | None = None, lease_seconds: float = 30.0
    ) -> None:
        self._db = connection
        self._write_lock = asyncio.Lock()
        #: This process's name in task leases, and how long a claimed or renewed lease lasts.
        self.owner: str = owner or default_owner()
        self.lease_seconds: float = lease_seconds

    @classmethod
    async def open(cls, path: str | Path, *, owner: str | None = None, lease_seconds: float = 30.0) -> Store:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(str(path), timeout=cls.busy_timeout)
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA synchronous=NORMAL")
        store = cls(connection, owner=owner, lease_seconds=lease_seconds)
        try:
            with _migration_lock(path):
                await store._migrate()
        except BaseException:
            await connection.close()  # aiosqlite's thread would otherwise keep the process alive
            raise
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

    async def _write(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run `work` (its statements) and commit, one write at a time. While SQLite is locked by
        another connection or the disk is full, roll back, log, wait (doubling) and run it again, so
        a busy or full disk delays a write instead of losing it; after `write_attempts` it raises."""
        async with self._write_lock:
            attempt = 1
            while True:
                try:
                    result = await work()
                    await self._db.commit()
                    return result
                except sqlite3.Error as exc:
                    with contextlib.suppress(sqlite3.Error):
                        await self._db.rollback()
                    if not _retryable(exc) or attempt >= self.write_attempts:
                        raise
                    delay = min(self.write_backoff * 2 ** (attempt - 1), 10.0)
                    retries = self.write_attempts - 1
                    log.warning("Database write failed (%s); retry %d/%d in %.1f s", exc, attempt, retries, delay)
                    await asyncio.sleep(delay)
                    attempt += 1

    # ---- tasks -----------------------------------------------------------------------------------

    async def insert_task(self, record: TaskRecord) -> TaskRecord:
        now = time.time()
        record = replace(record, created_at=record.created_at or now, updated_at=now)
        placeholders = ", ".join("?" for _ in _INSERT_COLUMNS)
        values = [*(_to_db(name, getattr(record, name)) for name in _COLUMNS), self.owner, now + self.lease_seconds]
        sql = f"INSERT OR REPLACE INTO tasks ({', '.join(_INSERT_COLUMNS)}) VALUES ({placeholders})"
        await self._write(lambda: self._db.execute(sql, values))
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
        await self._write(lambda: self._db.execute(f"UPDATE tasks SET {assignments} WHERE id = ?", [*values, task_id]))

    async def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> None:
        """`update_task` for many tasks ({task id: {column: value}}) in one transaction: the tracker
        saves a whole poll cycle at once instead of committing thousands of times."""
        groups: dict[tuple[str, ...], list[list[Any]]] = {}
        now = time.time()
        for task_id, columns in changes.items():
            if not columns:
                continue
            unknown = set(columns) - set(_COLUMNS) | ({"id"} & set(columns))
            if unknown:
                raise ValueError(f"cannot update task columns: {sorted(unknown)}")
            names = (*columns, "updated_at")
            values = [_to_db(name, value) for name, value in columns.items()]
            groups.setdefault(names, []).append([*values, now, task_id])
        if not groups:
            return

        async def work() -> None:
            for names, rows in groups.items():
                assignments = ", ".join(f"{name} = ?" for name in names)
                await self._db.executemany(f"UPDATE tasks SET {assignments} WHERE id = ?", rows)

        await self._write(work)

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
        expires = now + self.lease_seconds
        rows = [
            [
                *(
                    _to_db(name, getattr(replace(r, created_at=r.created_at or now, updated_at=now), name))
                    for name in _COLUMNS
                ),
                self.owner,
                expires,
            ]
            for r in records
        ]
        placeholders = ", ".join("?" for _ in _INSERT_COLUMNS)
        sql = f"INSERT OR REPLACE INTO tasks ({', '.join(_INSERT_COLUMNS)}) VALUES ({placeholders})"
        await self._write(lambda: self._db.executemany(sql, rows))

    # ---- leases (issue 8: several processes share the tracking work) ------------------------------

    async def claim_tasks(self, limit: int, *, include_own: bool = False) -> list[TaskRecord]:
        """Lease up to `limit` undelivered tasks whose lease is free (or, with `include_own`, held by
        this owner: a restarted process takes its own tasks back at once), oldest first.

        One UPDATE ... RETURNING under SQLite's write lock, so two processes never get the same task.
        """
        if limit <= 0:
            return []
        now = time.time()
        own = " OR lease_owner = ?" if include_own else ""
        sql = (
            "UPDATE tasks SET lease_owner = ?, lease_expires = ? WHERE id IN (SELECT id FROM tasks "
            f"WHERE delivered = 0 AND (lease_owner IS NULL OR lease_expires IS NULL OR lease_expires < ?{own}) "
            "ORDER BY created_at, id LIMIT ?) RETURNING *"
        )
        params: list[Any] = [self.owner, now + self.lease_seconds, now]
        if include_own:
            params.append(self.owner)
        params.append(limit)

        async def claim() -> list[TaskRecord]:
            async with self._db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
            return [TaskRecord.from_row(row) for row in rows]

        claimed = await self._write(claim)
        return sorted(claimed, key=lambda r: (r.created_at, r.id))

    async def lease_census(self) -> tuple[int, int]:
        """(undelivered tasks, other owners holding a live lease on one): a process taking over
        orphans takes its fair share, not all of them."""
        sql = (
            "SELECT COUNT(*), COUNT(DISTINCT CASE WHEN lease_owner != ? AND lease_expires >= ? THEN lease_owner END) "
            "FROM tasks WHERE delivered = 0"
        )
        async with self._db.execute(sql, (self.owner, time.time())) as cursor:
            row = await cursor.fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def renew_leases(self) -> set[str]:
        """Extend every lease this owner holds on an undelivered task; the ids it still holds (a task
        missing here was taken over by another process after our lease ran out)."""
        sql = "UPDATE tasks SET lease_expires = ? WHERE lease_owner = ? AND delivered = 0 RETURNING id"
        params = (time.time() + self.lease_seconds, self.owner)

        async def renew() -> set[str]:
            async with self._db.execute(sql, params) as cursor:
                rows = await cursor.fetchall()
            return {str(row[0]) for row in rows}

        return await self._write(renew)

    async def hold_leases(self, task_ids: Sequence[str]) -> set[str]:
        """Extend the leases of these tasks that this owner still holds undelivered; the ids held.
        The fence before posting final results, so two processes never both deliver a task: one
        transaction for all the results that are ready, not one each."""
        ids = sorted(set(task_ids))
        until = time.time() + self.lease_seconds

        async def hold() -> set[str]:
            held: set[str] = set()
            for start in range(0, len(ids), _ID_CHUNK):
                chunk = ids[start : start + _ID_CHUNK]
                sql = (
                    f"UPDATE tasks SET lease_expires = ? WHERE id IN ({', '.join('?' for _ in chunk)}) "
                    "AND lease_owner = ? AND delivered = 0 RETURNING id"
                )
                async with self._db.execute(sql, (until, *chunk, self.owner)) as cursor:
                    held.update(str(row[0]) for row in await cursor.fetchall())
            return held

        return await self._write(hold) if ids else set()

    async def release_leases(self) -> int:
        """Give up this owner's leases on undelivered tasks (clean shutdown: others take over at once)."""
        sql = "UPDATE tasks SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = ? AND delivered = 0"

        async def release() -> int:
            async with self._db.execute(sql, (self.owner,)) as cursor:
                return max(cursor.rowcount, 0)

        return await self._write(release)

    # ---- clicks ----------------------------------------------------------------------------------

    async def claim_click(self, task_id: str, button: str, user_id: int, *, window: float) -> bool:
        """True if this click may submit; False if the same button was submitted within `window` s.

        One upsert statement, so two clicks racing (even from two processes) cannot both win.
        """
        now = time.time()

        async def claim() -> bool:
            cursor = await self._db.execute(
                "INSERT INTO clicks (task_id, button, user_id, child_id, created_at) VALUES (?, ?, ?, NULL, ?) "
                "ON CONFLICT (task_id, button) DO UPDATE SET user_id = excluded.user_id, "
                "child_id = NULL, created_at = excluded.created_at WHERE clicks.created_at < ?",
                (task_id, button, user_id, now, now - window),
            )
            claimed = cursor.rowcount == 1
            await cursor.close()
            return claimed

        return await self._write(claim)

    async def release_click(self, task_id: str, button: str) -> None:
        """The claimed submit failed before anything was charged: let the user try again."""
        await self._write(
            lambda: self._db.execute("DELETE FROM clicks WHERE task_id = ? AND button = ?", (task_id, button))
        )

    # ---- user preferences (/settings, /prefer) ----------------------------------------------------

    async def get_prefs(self, user_id: int) -> UserPrefs:
        async with self._db.execute("SELECT * FROM user_prefs WHERE user_id = ?", (user_id,)) as cursor:
            row = await cursor.fetchone()
        if row is None:
            return UserPrefs(user_id)
        return UserPrefs(
            user_id=user_id,
            version=row["version"],
            stylize=row["stylize"],
            speed=row["speed"],
            remix=bool(row["remix"]),
            visibility=row["visibility"],
            aspect=row["aspect"],
            suffix=row["suffix"],
            option_sets=json.loads(row["option_sets"] or "{}"),
        )

    async def save_prefs(self, prefs: UserPrefs) -> None:
        await self._db.execute(
            "INSERT OR REPLACE INTO user_prefs (user_id, version, stylize, speed, remix, visibility, aspect, "
            "suffix, option_sets, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                prefs.user_id,
                prefs.version,
                prefs.stylize,
                prefs.speed,
                int(prefs.remix),
                prefs.visibility,
                prefs.aspect,
                prefs.suffix,
                json.dumps(prefs.option_sets, ensure_ascii=False),
                time.time(),
            ),
        )
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

    # ==== admin: API keys, guild settings, usage (issue 4; bot/upstream/keys.py and bot/policy.py) ==========
    # Rows come back as plain dicts; ApiKey.from_row / GuildSettings.from_row give them their types.

    _API_KEY_CHANGES = frozenset({"enabled", "healthy", "failures", "last_error", "priority", "token", "updated_at"})
    _GUILD_SETTINGS = (
        "daily_quota",
        "user_concurrent",
        "guild_concurrent",
        "cooldown",
        "allowed_channels",
        "button_access",
        "default_mode",
        "banned_words",
        "nsfw_only",
    )

    async def api_key_rows(self) -> list[dict[str, Any]]:
        async with self._db.execute("SELECT * FROM api_keys ORDER BY id") as cursor:
            rows = await cursor.fetchall()
        return [dict(row) for row in rows]

    async def api_key_row(self, key_id: int) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM api_keys WHERE id = ?", (key_id,)) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row else None

    async def insert_api_key(self, key: NewApiKey) -> int:
        now = time.time()
        cursor = await self._db.execute(
            f"INSERT INTO api_keys ({', '.join(_NEW_API_KEY_COLUMNS)}, created_at, updated_at) "
            f"VALUES ({', '.join('?' * (len(_NEW_API_KEY_COLUMNS) + 2))})",
            (*key.values(), now, now),
        )
        key_id = cursor.lastrowid
        await cursor.close()
        await self._db.commit()
        assert key_id is not None
        return int(key_id)

    async def update_api_key(self, key_id: int, **changes: Any) -> None:
        unknown = set(changes) - self._API_KEY_CHANGES
        if unknown:
            raise ValueError(f"cannot update api_keys columns: {sorted(unknown)}")
        if not changes:
            return
        values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
        assignments = ", ".join(f"{name} = ?" for name in changes)
        await self._db.execute(f"UPDATE api_keys SET {assignments} WHERE id = ?", [*values, key_id])
        await self._db.commit()

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

    # ---- submits in flight (limits across processes) ----------------------------------------------

    async def add_submit_slot(self, guild_id: int, user_id: int) -> int:
        """A submit passed the policy check and is on its way: other processes count it from now."""
        sql = "INSERT INTO submit_slots (guild_id, user_id, created_at) VALUES (?, ?, ?)"
        params = (guild_id, user_id, time.time())

        async def add() -> int:
            async with self._db.execute(sql, params) as cursor:
                slot_id = cursor.lastrowid
            assert slot_id is not None
            return int(slot_id)

        return await self._write(add)

    async def drop_submit_slot(self, slot_id: int) -> None:
        await self._write(lambda: self._db.execute("DELETE FROM submit_slots WHERE id = ?", (slot_id,)))

    async def submit_slot_usage(
        self, guild_id: int, user_id: int, *, since: float, exclude: int
    ) -> tuple[int, int, float | None]:
        """Other submits in flight since `since`: (the user's, the guild's, the user's latest start)."""
        async with self._db.execute(
            "SELECT COALESCE(SUM(user_id = ?), 0), COUNT(*), MAX(CASE WHEN user_id = ? THEN created_at END) "
            "FROM submit_slots WHERE guild_id = ? AND created_at >= ? AND id != ?",
            (user_id, user_id, guild_id, since, exclude),
        ) as cursor:
            row = await cursor.fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), float(row[2]) if row[2] is not None else None

    async def delete_api_key(self, key_id: int) -> None:
        await self._db.execute("DELETE FROM api_keys WHERE id = ?", (key_id,))
        await self._db.commit()

    async def guild_settings_row(self, guild_id: int) -> dict[str, Any] | None:
        async with self._db.execute("SELECT * FROM guild_settings WHERE guild_id = ?", (guild_id,)) as cursor:
            row = await cursor.fetchone()
        return dict(row) if row else None

    async def save_guild_settings(self, guild_id: int, values: dict[str, Any]) -> None:
        """Upsert every setting column (lists as JSON)."""
        unknown = set(values) - set(self._GUILD_SETTINGS)
        if unknown:
            raise ValueError(f"unknown guild settings: {sorted(unknown)}")
        names = list(self._GUILD_SETTINGS)
        params = [self._setting_to_db(values[n]) for n in names]
        updates = ", ".join(f"{n} = excluded.{n}" for n in [*names, "updated_at"])
        await self._db.execute(
            f"INSERT INTO guild_settings (guild_id, {', '.join(names)}, updated_at) "
            f"VALUES (?, {', '.join('?' for _ in names)}, ?) ON CONFLICT (guild_id) DO UPDATE SET {updates}",
            [guild_id, *params, time.time()],
        )
        await self._db.commit()

    @staticmethod
    def _setting_to_db(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return json.dumps(list(value), ensure_ascii=False)
        if isinstance(value, bool):
            return int(value)
        return value

    async def count_guild_tasks(
        self, guild_id: int, *, user_id: int | None = None, since: float | None = None, running: bool = False
    ) -> int:
        """Tasks in a guild (of one user, since a time, or only unfinished: delivered = 0)."""
        sql = "SELECT COUNT(*) FROM tasks WHERE guild_id = ?"
        params: list[Any] = [guild_id]
        if user_id is not None:
            sql += " AND user_id = ?"
            params.append(user_id)
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(since)
        if running:
            sql += " AND delivered = 0"
        async with self._db.execute(sql, params) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def last_task_time(self, guild_id: int, user_id: int) -> float | None:
        async with self._db.execute(
            "SELECT MAX(created_at) FROM tasks WHERE guild_id = ? AND user_id = ?", (guild_id, user_id)
        ) as cursor:
            row = await cursor.fetchone()
        return float(row[0]) if row and row[0] is not None else None

    async def daily_task_counts(self, guild_id: int, since: float) -> list[tuple[str, int, int, int]]:
        """(UTC day, tasks, succeeded, failed) per day, oldest first."""
        async with self._db.execute(
            "SELECT date(created_at, 'unixepoch') AS day, COUNT(*), "
            "SUM(status = 'SUCCESS'), SUM(status IN ('FAILURE', 'CANCEL')) "
            "FROM tasks WHERE guild_id = ? AND created_at >= ? GROUP BY day ORDER BY day",
            (guild_id, since),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]

    async def top_users(self, guild_id: int, since: float, limit: int = 5) -> list[tuple[int, int]]:
        async with self._db.execute(
            "SELECT user_id, COUNT(*) AS n FROM tasks WHERE guild_id = ? AND created_at >= ? "
            "GROUP BY user_id ORDER BY n DESC, user_id LIMIT ?",
            (guild_id, since, limit),
        ) as cursor:
            rows = await cursor.fetchall()
        return [(int(r[0]), int(r[1])) for r in rows]

    async def tasks_by_upstream(self, guild_id: int | None, since: float | None = None) -> dict[str, int]:
        """Task counts per upstream name (`key:<id>`, `key:<id>@mode`, `default`); guild None = all."""
        sql = "SELECT upstream, COUNT(*) FROM tasks WHERE 1 = 1"
        params: list[Any] = []
        if guild_id is not None:
            sql += " AND guild_id = ?"
            params.append(guild_id)
        if since is not None:
            sql += " AND created_at >= ?"
            params.append(since)
        async with self._db.execute(sql + " GROUP BY upstream", params) as cursor:
            rows = await cursor.fetchall()
        return {str(r[0]): int(r[1]) for r in rows}


# ==== the interface both backends implement, and choosing one ======================================


@runtime_checkable
class Storage(Protocol):
    """What the bot may ask of its storage: `Store` (SQLite) and `PostgresStore` both provide it, so
    type hints elsewhere name this instead of a backend."""

    owner: str
    lease_seconds: float

    async def close(self) -> None: ...
    async def schema_version(self) -> int: ...

    async def insert_task(self, record: TaskRecord) -> TaskRecord: ...
    async def insert_many(self, records: Iterable[TaskRecord]) -> None: ...
    async def get_task(self, task_id: str) -> TaskRecord | None: ...
    async def task_for_message(self, message_id: int) -> TaskRecord | None: ...
    async def update_task(self, task_id: str, **changes: Any) -> None: ...
    async def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> None: ...
    async def in_flight(self) -> list[TaskRecord]: ...
    async def recent_tasks(self, user_id: int, limit: int = 10) -> list[TaskRecord]: ...
    async def count_tasks(self, *, delivered: bool | None = None) -> int: ...

    async def claim_tasks(self, limit: int, *, include_own: bool = False) -> list[TaskRecord]: ...
    async def lease_census(self) -> tuple[int, int]: ...
    async def renew_leases(self) -> set[str]: ...
    async def hold_leases(self, task_ids: Sequence[str]) -> set[str]: ...
    async def release_leases(self) -> int: ...

    async def claim_click(self, task_id: str, button: str, user_id: int, *, window: float) -> bool: ...
    async def release_click(self, task_id: str, button: str) -> None: ...

    async def get_prefs(self, user_id: int) -> UserPrefs: ...
    async def save_prefs(self, prefs: UserPrefs) -> None: ...
    async def get_meta(self, key: str) -> str | None: ...
    async def set_meta(self, key: str, value: str) -> None: ...

    async def api_key_rows(self) -> list[dict[str, Any]]: ...
    async def api_key_row(self, key_id: int) -> dict[str, Any] | None: ...
    async def insert_api_key(self, key: NewApiKey) -> int: ...
    async def update_api_key(self, key_id: int, **changes: Any) -> None: ...
    async def bump_api_key_failure(self, key_id: int, reason: str) -> int: ...
    async def add_submit_slot(self, guild_id: int, user_id: int) -> int: ...
    async def drop_submit_slot(self, slot_id: int) -> None: ...
    async def submit_slot_usage(
        self, guild_id: int, user_id: int, *, since: float, exclude: int
    ) -> tuple[int, int, float | None]: ...
    async def delete_api_key(self, key_id: int) -> None: ...
    async def guild_settings_row(self, guild_id: int) -> dict[str, Any] | None: ...
    async def save_guild_settings(self, guild_id: int, values: dict[str, Any]) -> None: ...

    async def count_guild_tasks(
        self, guild_id: int, *, user_id: int | None = None, since: float | None = None, running: bool = False
    ) -> int: ...
    async def last_task_time(self, guild_id: int, user_id: int) -> float | None: ...
    async def daily_task_counts(self, guild_id: int, since: float) -> list[tuple[str, int, int, int]]: ...
    async def top_users(self, guild_id: int, since: float, limit: int = 5) -> list[tuple[int, int]]: ...
    async def tasks_by_upstream(self, guild_id: int | None, since: float | None = None) -> dict[str, int]: ...


def is_postgres(target: str) -> bool:
    return target.startswith(("postgres://", "postgresql://"))


def sqlite_path(target: str) -> str:
    """The file behind a SQLite target: a plain path, or sqlite:///relative/path, sqlite:////abs/path,
    sqlite:///:memory:."""
    if target.startswith("sqlite:///"):
        return target.removeprefix("sqlite:///")
    if target.startswith("sqlite:"):
        from bot.config import ConfigError

        raise ConfigError("DATABASE_URL for SQLite must look like sqlite:///path/to/file")
    return target


async def open_store(
    target: str | Path, *, owner: str | None = None, lease_seconds: float = 30.0
) -> Store | PostgresStore:
    """Open (and migrate) the storage `target` names: a file path or sqlite:///path → SQLite,
    postgres:// or postgresql:// → PostgreSQL (asyncpg is imported only then: it is an optional extra)."""
    target = str(target)
    if not is_postgres(target):
        return await Store.open(sqlite_path(target), owner=owner, lease_seconds=lease_seconds)
    try:
        from bot.storage.postgres import PostgresStore
    except ModuleNotFoundError as exc:
        if exc.name != "asyncpg":
            raise
        from bot.config import ConfigError

        raise ConfigError(
            "DATABASE_URL is PostgreSQL but asyncpg is not installed: pip install -e '.[postgres]'"
        ) from exc
    return await PostgresStore.open(target, owner=owner, lease_seconds=lease_seconds)
