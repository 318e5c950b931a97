"""PostgreSQL (asyncpg) storage, for several bot processes sharing one database (issue 8).

The schema mirrors SQLite's column for column (bot/storage/migrations/postgres/, same version numbers),
with integers kept as 0/1 where SQLite keeps booleans, so callers cannot tell which backend they talk
to. `PostgresStore` is put together from the same sections as SQLite's `Store` (one module per
concern). Only this package imports asyncpg, and only `bot.storage.factory.open_store` imports it.
"""

from __future__ import annotations

from bot.storage.postgres.approvals import PostgresApprovals
from bot.storage.postgres.clicks import PostgresClicks
from bot.storage.postgres.keys import PostgresKeys
from bot.storage.postgres.leases import PostgresLeases
from bot.storage.postgres.meta import PostgresMeta
from bot.storage.postgres.prefs import PostgresPrefs
from bot.storage.postgres.rules import PostgresRules
from bot.storage.postgres.stats import PostgresStats
from bot.storage.postgres.tasks import PostgresTasks

__all__ = ["PostgresStore"]


class PostgresStore(
    PostgresTasks,
    PostgresLeases,
    PostgresClicks,
    PostgresPrefs,
    PostgresMeta,
    PostgresKeys,
    PostgresRules,
    PostgresStats,
    PostgresApprovals,
):
    """PostgreSQL storage. Open with `await PostgresStore.open(url)`; close with `await store.close()`."""
