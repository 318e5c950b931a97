"""What both backends share that is not SQL: the migration loader, which columns callers may write,
and how a value becomes a stored column. Each backend writes its own statements; the rules live here once.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from importlib import resources
from typing import Any

from bot.errors import AmbiguousTask, TaskIdTaken
from bot.models import TASK_COLUMNS, Row, TaskRecord, task_column_value
from bot.preferences import PREFS_COLUMNS, prefs_column_value

#: insert_task / insert_many also write the lease: the process that submitted a task tracks it at once.
TASK_INSERT_COLUMNS = (*TASK_COLUMNS, "lease_owner", "lease_expires")

#: The api_keys columns update_api_key may change (a key never moves to another guild or URL).
API_KEY_CHANGES = frozenset({"enabled", "healthy", "failures", "last_error", "priority", "token", "updated_at"})

#: The guild_settings columns, all written by save_guild_settings.
GUILD_SETTINGS = (
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


def default_owner() -> str:
    """This process's name in task leases when the caller gives none."""
    return f"pid-{os.getpid()}"


#: The longest wait between two tries of a failed write.
MAX_RETRY_DELAY = 10.0


def retry_delay(attempt: int, backoff: float) -> float:
    """Seconds before try `attempt + 1` of a write (both backends): doubling from `backoff`, capped."""
    return min(backoff * 2.0 ** (attempt - 1), MAX_RETRY_DELAY)


def migrations(folder: str = "") -> list[tuple[int, str]]:
    """(version, script) in order: SQLite's from bot/storage/migrations, PostgreSQL's from its subfolder."""
    found: list[tuple[int, str]] = []
    root = resources.files("bot.storage.migrations")
    for entry in (root / folder if folder else root).iterdir():
        name = entry.name
        if entry.is_file() and name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), entry.read_text(encoding="utf-8")))
    return sorted(found)


def insert_rows(records: Iterable[TaskRecord], now: float, owner: str, expires: float) -> list[list[Any]]:
    """Rows for TASK_INSERT_COLUMNS: timestamps filled in, leased to `owner` until `expires`."""
    return [
        [*replace(r, created_at=r.created_at or now, updated_at=now).column_values(), owner, expires] for r in records
    ]


_KEY_AT = (TASK_INSERT_COLUMNS.index("upstream"), TASK_INSERT_COLUMNS.index("id"))
_OWNER_AT = (TASK_INSERT_COLUMNS.index("guild_id"), TASK_INSERT_COLUMNS.index("user_id"))


def check_owners(rows: list[list[Any]], stored: Iterable[Row]) -> None:
    """A stored task is replaced only by a task of the same member in the same guild (the same submit
    stored again). One server serves several guilds: when it answers another member's submit with
    this task's id, that is refused (TaskIdTaken) and the stored row is left as it was."""
    owner_of = {(row[_KEY_AT[0]], row[_KEY_AT[1]]): (row[_OWNER_AT[0]], row[_OWNER_AT[1]]) for row in rows}
    for old in stored:
        new_owner = owner_of.get((old["upstream"], old["id"]))
        if new_owner is not None and new_owner != (old["guild_id"], old["user_id"]):
            raise TaskIdTaken(str(old["id"]))


def only_task(records: list[TaskRecord], task_id: str, message_id: int | None) -> TaskRecord | None:
    """The one task a bare id names: the only row with it, or among several (one per upstream) the
    one shown by `message_id` (a button lives on its task's message). AmbiguousTask otherwise: a
    server that answers with another task's id must not make a click act on the wrong task."""
    if len(records) <= 1:
        return records[0] if records else None
    shown = [r for r in records if message_id is not None and r.message_id == message_id]
    if len(shown) == 1:
        return shown[0]
    raise AmbiguousTask(task_id)


def task_changes(changes: Mapping[str, Any]) -> tuple[tuple[str, ...], list[Any]]:
    """(column names, stored values) for an update of a task's columns; a name that is not a
    TaskRecord field, or `id`, is a programming error (ValueError). The store sets updated_at itself."""
    changes = {name: value for name, value in changes.items() if name != "updated_at"}
    unknown = set(changes) - set(TASK_COLUMNS) | ({"id"} & set(changes))
    if unknown:
        raise ValueError(f"cannot update task columns: {sorted(unknown)}")
    return tuple(changes), [task_column_value(name, value) for name, value in changes.items()]


def prefs_changes(changes: Mapping[str, Any]) -> tuple[tuple[str, ...], list[Any]]:
    """(column names, stored values) for update_prefs. Option sets change one at a time
    (set_option_set, delete_option_set), so two added at once are both kept."""
    unknown = set(changes) - set(PREFS_COLUMNS) | ({"option_sets"} & set(changes))
    if unknown:
        raise ValueError(f"cannot update user_prefs columns: {sorted(unknown)}")
    return tuple(changes), [prefs_column_value(name, value) for name, value in changes.items()]


def prefs_upsert(names: Sequence[str], marks: str) -> str:
    """`update_prefs`' one statement: insert or update user_id, the named settings and updated_at
    (`marks`: the backend's VALUES placeholders for them), returning the row as stored."""
    return (
        f"INSERT INTO user_prefs (user_id, {', '.join(names)}, updated_at) "
        f"VALUES ({marks}) ON CONFLICT (user_id) DO UPDATE SET "
        + ", ".join(f"{n} = excluded.{n}" for n in (*names, "updated_at"))
        + " RETURNING *"
    )


def api_key_changes(changes: Mapping[str, Any]) -> tuple[tuple[str, ...], list[Any]]:
    """(column names, stored values) for update_api_key; booleans stored as 0/1."""
    unknown = set(changes) - API_KEY_CHANGES
    if unknown:
        raise ValueError(f"cannot update api_keys columns: {sorted(unknown)}")
    return tuple(changes), [int(v) if isinstance(v, bool) else v for v in changes.values()]


def guild_settings_values(values: Mapping[str, Any]) -> list[Any]:
    """The stored values of every GUILD_SETTINGS column, in order (lists as JSON, booleans as 0/1)."""
    unknown = set(values) - set(GUILD_SETTINGS)
    if unknown:
        raise ValueError(f"unknown guild settings: {sorted(unknown)}")
    return [_setting_value(values[name]) for name in GUILD_SETTINGS]


def _setting_value(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return json.dumps(list(value), ensure_ascii=False)
    if isinstance(value, bool):
        return int(value)
    return value


def guild_filter(guild_id: int | None, placeholder: str) -> tuple[str, list[Any]]:
    """`WHERE` text and parameters for a guild's tasks, or for tasks made in DMs (guild None), written
    so each can use its index (`= NULL` matches nothing; `IS NOT DISTINCT FROM` uses no index)."""
    if guild_id is None:
        return "guild_id IS NULL", []
    return f"guild_id = {placeholder}", [guild_id]
