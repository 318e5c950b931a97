"""PostgreSQL (asyncpg) storage: the same methods and values as `bot.storage.sqlite.Store`, for several bot
processes sharing one database (issue 8).

The schema mirrors SQLite's column for column (bot/storage/migrations/postgres/, same version numbers), with
integers kept as 0/1 where SQLite keeps booleans, so callers cannot tell which backend they talk to.
Only this module imports asyncpg, and only `bot.storage.sqlite.open_store` imports this module.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import asyncpg

from bot.preferences import UserPrefs
from bot.storage.sqlite import (
    _COLUMNS,
    _INSERT_COLUMNS,
    _NEW_API_KEY_COLUMNS,
    NewApiKey,
    Store,
    TaskRecord,
    _migrations,
    _to_db,
    default_owner,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Errors that say the connection or the transaction failed, not the statement: worth running again.
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,  # includes TimeoutError
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
)

#: pg_advisory_xact_lock key held while migrating, so two processes starting at once apply each
#: migration exactly once (any constant unlikely to clash with another application's locks).
_MIGRATION_LOCK = 0x6D6A626F74  # "mjbot"

_TASK_INSERT = "INSERT INTO tasks ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}".format(
    ", ".join(_INSERT_COLUMNS),
    ", ".join(f"${i}" for i in range(1, len(_INSERT_COLUMNS) + 1)),
    ", ".join(f"{c} = excluded.{c}" for c in _INSERT_COLUMNS if c != "id"),
)


def _assignments(names: Iterable[str], start: int = 1) -> str:
    return ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start))


def _affected(status: str) -> int:
    """Rows a command touched, from asyncpg's status string ("UPDATE 3", "INSERT 0 1")."""
    tail = status.rsplit(" ", 1)[-1]
    return int(tail) if tail.isdigit() else 0


class PostgresStore:
    """PostgreSQL storage. Open with `await PostgresStore.open(url)`; close with `await store.close()`."""

    #: Tries of a statement whose connection or transaction failed (backoff doubles from `write_backoff`).
    write_attempts: int = 6
    write_backoff: float = 0.2
    #: Connections in the pool: the tracker, commands and the web server query at the same time.
    pool_min: int = 1
    pool_max: int = 10

    def __init__(self, pool: asyncpg.Pool, *, owner: str | None = None, lease_seconds: float = 30.0) -> None:
        self._pool = pool
        #: This process's name in task leases, and how long a claimed or renewed lease lasts.
        self.owner: str = owner or default_owner()
        self.lease_seconds: float = lease_seconds

    @classmethod
    async def open(cls, url: str, *, owner: str | None = None, lease_seconds: float = 30.0) -> PostgresStore:
        pool = await asyncpg.create_pool(url, min_size=cls.pool_min, max_size=cls.pool_max)
        store = cls(pool, owner=owner, lease_seconds=lease_seconds)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    async def close(self) -> None:
        await self._pool.close()

    async def _migrate(self) -> None:
        """Each pending migration in its own transaction, under an advisory lock, recorded in
        schema_migrations: a second process starting at the same time waits, then finds it applied."""
        async with self._pool.acquire() as conn:
            for version, script in _migrations("postgres"):
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
                    await conn.execute(
                        "CREATE TABLE IF NOT EXISTS schema_migrations "
                        "(version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION NOT NULL)"
                    )
                    current = await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                    if version <= current:
                        continue
                    await conn.execute(script)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", version, time.time()
                    )
                    log.info("Applied PostgreSQL migration %04d", version)

    async def schema_version(self) -> int:
        return int(await self._run(lambda c: c.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")))

    async def _run(self, work: Callable[[asyncpg.Connection], Awaitable[T]], *, write: bool = False) -> T:
        """Run `work` on a pooled connection (in one transaction when it writes). A lost connection, a
        restarting server, a serialization failure or a deadlock rolls back and runs it again after a
        doubling wait, like SQLite's locked database; after `write_attempts` (or any other error) it raises."""
        attempt = 1
        while True:
            try:
                async with self._pool.acquire() as conn:
                    if not write:
                        return await work(conn)
                    async with conn.transaction():
                        return await work(conn)
            except _TRANSIENT as exc:
                if attempt >= self.write_attempts:
                    raise
                delay = min(self.write_backoff * 2 ** (attempt - 1), 10.0)
                retries = self.write_attempts - 1
                log.warning("Database statement failed (%r); retry %d/%d in %.1f s", exc, attempt, retries, delay)
                await asyncio.sleep(delay)
                attempt += 1

    async def _fetch(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        return await self._run(lambda c: c.fetch(sql, *params))

    async def _fetchrow(self, sql: str, *params: Any) -> asyncpg.Record | None:
        return await self._run(lambda c: c.fetchrow(sql, *params))

    async def _fetchval(self, sql: str, *params: Any) -> Any:
        return await self._run(lambda c: c.fetchval(sql, *params))

    async def _execute(self, sql: str, *params: Any) -> str:
        return await self._run(lambda c: c.execute(sql, *params), write=True)

    # ---- tasks -----------------------------------------------------------------------------------

    def _insert_rows(self, records: Iterable[TaskRecord], now: float) -> list[list[Any]]:
        expires = now + self.lease_seconds
        rows = []
        for r in records:
            r = replace(r, created_at=r.created_at or now, updated_at=now)
            rows.append([*(_to_db(name, getattr(r, name)) for name in _COLUMNS), self.owner, expires])
        return rows

    async def _replace_tasks(self, rows: list[list[Any]]) -> None:
        """SQLite's INSERT OR REPLACE deletes the old row, whose clicks go with it (ON DELETE CASCADE):
        do the same, then upsert (safe against another process inserting the same id at once)."""
        if not rows:
            return
        ids = [row[0] for row in rows]

        async def work(conn: asyncpg.Connection) -> None:
            await conn.execute("DELETE FROM clicks WHERE task_id = ANY($1::text[])", ids)
            await conn.executemany(_TASK_INSERT, rows)

        await self._run(work, write=True)

    async def insert_task(self, record: TaskRecord) -> TaskRecord:
        now = time.time()
        record = replace(record, created_at=record.created_at or now, updated_at=now)
        await self._replace_tasks(self._insert_rows([record], now))
        return record

    async def insert_many(self, records: Iterable[TaskRecord]) -> None:
        """Bulk insert (benchmarks, imports) in one transaction."""
        await self._replace_tasks(self._insert_rows(records, time.time()))

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._fetchrow("SELECT * FROM tasks WHERE id = $1", task_id)
        return TaskRecord.from_row(row) if row else None

    async def task_for_message(self, message_id: int) -> TaskRecord | None:
        row = await self._fetchrow(
            "SELECT * FROM tasks WHERE message_id = $1 ORDER BY created_at DESC LIMIT 1", message_id
        )
        return TaskRecord.from_row(row) if row else None

    async def update_task(self, task_id: str, **changes: Any) -> None:
        """Write only the named columns; unknown names are a programming error."""
        if not changes:
            return
        unknown = set(changes) - set(_COLUMNS) - {"id"}
        if unknown or "id" in changes:
            raise ValueError(f"cannot update task columns: {sorted(unknown | ({'id'} & set(changes)))}")
        changes["updated_at"] = time.time()
        values = [_to_db(name, value) for name, value in changes.items()]
        sql = f"UPDATE tasks SET {_assignments(changes)} WHERE id = ${len(values) + 1}"
        await self._execute(sql, *values, task_id)

    async def update_many(self, changes: Mapping[str, Mapping[str, Any]]) -> None:
        """`update_task` for many tasks ({task id: {column: value}}) in one transaction."""
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

        ids = sorted({str(task_id) for task_id, columns in changes.items() if columns})

        async def work(conn: asyncpg.Connection) -> None:
            # Lock the rows in one order (by id) first, as renew_leases does: two transactions of one
            # process (the tracker's save and its lease renewal) must never wait on each other in a cycle.
            await conn.execute("SELECT 1 FROM tasks WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE", ids)
            for names, rows in groups.items():
                await conn.executemany(f"UPDATE tasks SET {_assignments(names)} WHERE id = ${len(names) + 1}", rows)

        await self._run(work, write=True)

    async def in_flight(self) -> list[TaskRecord]:
        """Every task whose final state is not yet on Discord, oldest first."""
        rows = await self._fetch("SELECT * FROM tasks WHERE delivered = 0 ORDER BY created_at")
        return [TaskRecord.from_row(row) for row in rows]

    async def recent_tasks(self, user_id: int, limit: int = 10) -> list[TaskRecord]:
        rows = await self._fetch(
            "SELECT * FROM tasks WHERE user_id = $1 ORDER BY created_at DESC LIMIT $2", user_id, limit
        )
        return [TaskRecord.from_row(row) for row in rows]

    async def count_tasks(self, *, delivered: bool | None = None) -> int:
        if delivered is None:
            return int(await self._fetchval("SELECT COUNT(*) FROM tasks"))
        return int(await self._fetchval("SELECT COUNT(*) FROM tasks WHERE delivered = $1", int(delivered)))

    # ---- leases ----------------------------------------------------------------------------------

    async def claim_tasks(self, limit: int, *, include_own: bool = False) -> list[TaskRecord]:
        """Lease up to `limit` undelivered tasks whose lease is free (or, with `include_own`, held by
        this owner), oldest first. FOR UPDATE SKIP LOCKED: two processes never get the same task, and
        neither waits for the other's rows."""
        if limit <= 0:
            return []
        now = time.time()
        own = " OR lease_owner = $1" if include_own else ""
        sql = (
            "UPDATE tasks SET lease_owner = $1, lease_expires = $2 WHERE id IN (SELECT id FROM tasks "
            f"WHERE delivered = 0 AND (lease_owner IS NULL OR lease_expires IS NULL OR lease_expires < $3{own}) "
            'ORDER BY created_at, id COLLATE "C" LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING *'
        )
        params = (self.owner, now + self.lease_seconds, now, limit)
        rows = await self._run(lambda c: c.fetch(sql, *params), write=True)
        return sorted((TaskRecord.from_row(row) for row in rows), key=lambda r: (r.created_at, r.id))

    async def lease_census(self) -> tuple[int, int]:
        """(undelivered tasks, other owners holding a live lease on one)."""
        row = await self._fetchrow(
            "SELECT COUNT(*), COUNT(DISTINCT lease_owner) FILTER (WHERE lease_owner <> $1 AND lease_expires >= $2) "
            "FROM tasks WHERE delivered = 0",
            self.owner,
            time.time(),
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    async def renew_leases(self) -> set[str]:
        """Extend every lease this owner holds on an undelivered task; the ids it still holds."""
        sql = (
            "UPDATE tasks SET lease_expires = $1 WHERE id IN (SELECT id FROM tasks WHERE lease_owner = $2 "
            "AND delivered = 0 ORDER BY id FOR UPDATE) RETURNING id"
        )
        params = (time.time() + self.lease_seconds, self.owner)
        rows = await self._run(lambda c: c.fetch(sql, *params), write=True)
        return {str(row[0]) for row in rows}

    async def hold_leases(self, task_ids: Sequence[str]) -> set[str]:
        """Extend the leases of these tasks that this owner still holds undelivered; the ids held
        (the fence before posting results; rows locked in id order, as renew_leases does)."""
        ids = sorted(set(task_ids))
        if not ids:
            return set()
        sql = (
            "UPDATE tasks SET lease_expires = $1 WHERE id IN (SELECT id FROM tasks WHERE id = ANY($2::text[]) "
            "AND lease_owner = $3 AND delivered = 0 ORDER BY id FOR UPDATE) RETURNING id"
        )
        params = (time.time() + self.lease_seconds, ids, self.owner)
        rows = await self._run(lambda c: c.fetch(sql, *params), write=True)
        return {str(row[0]) for row in rows}

    async def release_leases(self) -> int:
        """Give up this owner's leases on undelivered tasks (clean shutdown: others take over at once)."""
        status = await self._execute(
            "UPDATE tasks SET lease_owner = NULL, lease_expires = NULL WHERE lease_owner = $1 AND delivered = 0",
            self.owner,
        )
        return _affected(status)

    # ---- clicks ----------------------------------------------------------------------------------

    async def claim_click(self, task_id: str, button: str, user_id: int, *, window: float) -> bool:
        """True if this click may submit; False if the same button was submitted within `window` s.
        One upsert: a racing second click waits for the first's row and then fails its WHERE."""
        now = time.time()
        status = await self._execute(
            "INSERT INTO clicks (task_id, button, user_id, child_id, created_at) VALUES ($1, $2, $3, NULL, $4) "
            "ON CONFLICT (task_id, button) DO UPDATE SET user_id = excluded.user_id, "
            "child_id = NULL, created_at = excluded.created_at WHERE clicks.created_at < $5",
            task_id,
            button,
            user_id,
            now,
            now - window,
        )
        return _affected(status) == 1

    async def release_click(self, task_id: str, button: str) -> None:
        await self._execute("DELETE FROM clicks WHERE task_id = $1 AND button = $2", task_id, button)

    # ---- user preferences ------------------------------------------------------------------------

    async def get_prefs(self, user_id: int) -> UserPrefs:
        row = await self._fetchrow("SELECT * FROM user_prefs WHERE user_id = $1", user_id)
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
        names = ("version", "stylize", "speed", "remix", "visibility", "aspect", "suffix", "option_sets", "updated_at")
        await self._execute(
            f"INSERT INTO user_prefs (user_id, {', '.join(names)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
            f"ON CONFLICT (user_id) DO UPDATE SET {', '.join(f'{n} = excluded.{n}' for n in names)}",
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
        )

    # ---- meta ------------------------------------------------------------------------------------

    async def get_meta(self, key: str) -> str | None:
        value = await self._fetchval("SELECT value FROM meta WHERE key = $1", key)
        return str(value) if value is not None else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            key,
            value,
        )

    # ---- admin: API keys, guild settings, usage --------------------------------------------------

    async def api_key_rows(self) -> list[dict[str, Any]]:
        return [dict(row) for row in await self._fetch("SELECT * FROM api_keys ORDER BY id")]

    async def api_key_row(self, key_id: int) -> dict[str, Any] | None:
        row = await self._fetchrow("SELECT * FROM api_keys WHERE id = $1", key_id)
        return dict(row) if row else None

    async def insert_api_key(self, key: NewApiKey) -> int:
        now = time.time()
        columns = (*_NEW_API_KEY_COLUMNS, "created_at", "updated_at")
        placeholders = ", ".join(f"${n}" for n in range(1, len(columns) + 1))
        query = f"INSERT INTO api_keys ({', '.join(columns)}) VALUES ({placeholders}) RETURNING id"
        key_id = await self._run(lambda c: c.fetchval(query, *key.values(), now, now), write=True)
        return int(key_id)

    async def update_api_key(self, key_id: int, **changes: Any) -> None:
        unknown = set(changes) - Store._API_KEY_CHANGES
        if unknown:
            raise ValueError(f"cannot update api_keys columns: {sorted(unknown)}")
        if not changes:
            return
        values = [int(v) if isinstance(v, bool) else v for v in changes.values()]
        await self._execute(
            f"UPDATE api_keys SET {_assignments(changes)} WHERE id = ${len(values) + 1}", *values, key_id
        )

    async def bump_api_key_failure(self, key_id: int, reason: str) -> int:
        """Count one more refusal in the database itself (no lost increments); the new count, 0 if gone."""
        count = await self._run(
            lambda c: c.fetchval(
                "UPDATE api_keys SET failures = failures + 1, last_error = $1, updated_at = $2 WHERE id = $3 "
                "RETURNING failures",
                reason,
                time.time(),
                key_id,
            ),
            write=True,
        )
        return int(count) if count is not None else 0

    # ---- submits in flight (limits across processes) ----------------------------------------------

    async def add_submit_slot(self, guild_id: int, user_id: int) -> int:
        slot_id = await self._run(
            lambda c: c.fetchval(
                "INSERT INTO submit_slots (guild_id, user_id, created_at) VALUES ($1, $2, $3) RETURNING id",
                guild_id,
                user_id,
                time.time(),
            ),
            write=True,
        )
        return int(slot_id)

    async def drop_submit_slot(self, slot_id: int) -> None:
        await self._execute("DELETE FROM submit_slots WHERE id = $1", slot_id)

    async def submit_slot_usage(
        self, guild_id: int, user_id: int, *, since: float, exclude: int
    ) -> tuple[int, int, float | None]:
        row = await self._fetchrow(
            "SELECT COUNT(*) FILTER (WHERE user_id = $1), COUNT(*), MAX(created_at) FILTER (WHERE user_id = $1) "
            "FROM submit_slots WHERE guild_id = $2 AND created_at >= $3 AND id <> $4",
            user_id,
            guild_id,
            since,
            exclude,
        )
        assert row is not None
        return int(row[0]), int(row[1]), float(row[2]) if row[2] is not None else None

    async def delete_api_key(self, key_id: int) -> None:
        await self._execute("DELETE FROM api_keys WHERE id = $1", key_id)

    async def guild_settings_row(self, guild_id: int) -> dict[str, Any] | None:
        row = await self._fetchrow("SELECT * FROM guild_settings WHERE guild_id = $1", guild_id)
        return dict(row) if row else None

    async def save_guild_settings(self, guild_id: int, values: dict[str, Any]) -> None:
        """Upsert every setting column (lists as JSON)."""
        unknown = set(values) - set(Store._GUILD_SETTINGS)
        if unknown:
            raise ValueError(f"unknown guild settings: {sorted(unknown)}")
        names = [*Store._GUILD_SETTINGS, "updated_at"]
        params = [*(Store._setting_to_db(values[n]) for n in Store._GUILD_SETTINGS), time.time()]
        placeholders = ", ".join(f"${i}" for i in range(2, len(names) + 2))
        updates = ", ".join(f"{n} = excluded.{n}" for n in names)
        await self._execute(
            f"INSERT INTO guild_settings (guild_id, {', '.join(names)}) VALUES ($1, {placeholders}) "
            f"ON CONFLICT (guild_id) DO UPDATE SET {updates}",
            guild_id,
            *params,
        )

    async def count_guild_tasks(
        self, guild_id: int, *, user_id: int | None = None, since: float | None = None, running: bool = False
    ) -> int:
        """Tasks in a guild (of one user, since a time, or only unfinished: delivered = 0)."""
        sql = "SELECT COUNT(*) FROM tasks WHERE guild_id = $1"
        params: list[Any] = [guild_id]
        if user_id is not None:
            params.append(user_id)
            sql += f" AND user_id = ${len(params)}"
        if since is not None:
            params.append(since)
            sql += f" AND created_at >= ${len(params)}"
        if running:
            sql += " AND delivered = 0"
        return int(await self._fetchval(sql, *params))

    async def last_task_time(self, guild_id: int, user_id: int) -> float | None:
        value = await self._fetchval(
            "SELECT MAX(created_at) FROM tasks WHERE guild_id = $1 AND user_id = $2", guild_id, user_id
        )
        return float(value) if value is not None else None

    async def daily_task_counts(self, guild_id: int, since: float) -> list[tuple[str, int, int, int]]:
        """(UTC day, tasks, succeeded, failed) per day, oldest first; days as SQLite's date() writes them."""
        rows = await self._fetch(
            "SELECT to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day, COUNT(*), "
            "COUNT(*) FILTER (WHERE status = 'SUCCESS'), COUNT(*) FILTER (WHERE status IN ('FAILURE', 'CANCEL')) "
            "FROM tasks WHERE guild_id = $1 AND created_at >= $2 GROUP BY day ORDER BY day",
            guild_id,
            since,
        )
        return [(str(r[0]), int(r[1]), int(r[2] or 0), int(r[3] or 0)) for r in rows]

    async def top_users(self, guild_id: int, since: float, limit: int = 5) -> list[tuple[int, int]]:
        rows = await self._fetch(
            "SELECT user_id, COUNT(*) AS n FROM tasks WHERE guild_id = $1 AND created_at >= $2 "
            "GROUP BY user_id ORDER BY n DESC, user_id LIMIT $3",
            guild_id,
            since,
            limit,
        )
        return [(int(r[0]), int(r[1])) for r in rows]

    async def tasks_by_upstream(self, guild_id: int | None, since: float | None = None) -> dict[str, int]:
        """Task counts per upstream name (`key:<id>`, `key:<id>@mode`, `default`); guild None = all."""
        sql = "SELECT upstream, COUNT(*) FROM tasks WHERE 1 = 1"
        params: list[Any] = []
        if guild_id is not None:
            params.append(guild_id)
            sql += f" AND guild_id = ${len(params)}"
        if since is not None:
            params.append(since)
            sql += f" AND created_at >= ${len(params)}"
        rows = await self._fetch(sql + " GROUP BY upstream", *params)
        return {str(r[0]): int(r[1]) for r in rows}
