"""SQLite (aiosqlite) storage: one file, one connection, owned by `Store`.

`Store` is put together from one section per concern (tasks, leases, clicks, prefs, meta, keys,
rules, stats), each in its own module here and each providing the protocol of the same name in
bot/storage/protocols.py; bot/storage/postgres/ is grouped the same way. The rest of the bot never
sees SQL.
"""

from __future__ import annotations

from bot.storage.sqlite.approvals import SqliteApprovals
from bot.storage.sqlite.clicks import SqliteClicks
from bot.storage.sqlite.keys import SqliteKeys
from bot.storage.sqlite.leases import SqliteLeases
from bot.storage.sqlite.meta import SqliteMeta
from bot.storage.sqlite.prefs import SqlitePrefs
from bot.storage.sqlite.rules import SqliteRules
from bot.storage.sqlite.stats import SqliteStats
from bot.storage.sqlite.tasks import SqliteTasks

__all__ = ["Store"]


class Store(
    SqliteTasks,
    SqliteLeases,
    SqliteClicks,
    SqlitePrefs,
    SqliteMeta,
    SqliteKeys,
    SqliteRules,
    SqliteStats,
    SqliteApprovals,
):
    """SQLite storage. Open with `await Store.open(path)`; close with `await store.close()`."""
