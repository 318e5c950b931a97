"""Storage by concern: each protocol in bot/storage/protocols.py is one section class per backend,
with the same methods and signatures on SQLite and PostgreSQL, and the composed stores are only those."""

from __future__ import annotations

import inspect

import pytest

from bot.storage import protocols
from bot.storage.sqlite import Store
from bot.storage.sqlite.approvals import SqliteApprovals
from bot.storage.sqlite.clicks import SqliteClicks
from bot.storage.sqlite.keys import SqliteKeys
from bot.storage.sqlite.leases import SqliteLeases
from bot.storage.sqlite.meta import SqliteMeta
from bot.storage.sqlite.prefs import SqlitePrefs
from bot.storage.sqlite.rules import SqliteRules
from bot.storage.sqlite.stats import SqliteStats
from bot.storage.sqlite.tasks import SqliteTasks

CONCERNS = {
    protocols.TaskStore: (SqliteTasks, "tasks", "PostgresTasks"),
    protocols.LeaseStore: (SqliteLeases, "leases", "PostgresLeases"),
    protocols.ClickStore: (SqliteClicks, "clicks", "PostgresClicks"),
    protocols.PrefsStore: (SqlitePrefs, "prefs", "PostgresPrefs"),
    protocols.MetaStore: (SqliteMeta, "meta", "PostgresMeta"),
    protocols.KeyStore: (SqliteKeys, "keys", "PostgresKeys"),
    protocols.RuleStore: (SqliteRules, "rules", "PostgresRules"),
    protocols.StatsStore: (SqliteStats, "stats", "PostgresStats"),
    protocols.ApprovalStore: (SqliteApprovals, "approvals", "PostgresApprovals"),
}


def methods(cls: type) -> dict[str, inspect.Signature]:
    """The public methods a class defines itself, with their signatures."""
    return {
        name: inspect.signature(value)
        for name, value in vars(cls).items()
        if callable(value) and not name.startswith("_")
    }


@pytest.mark.parametrize("protocol", list(CONCERNS), ids=lambda p: p.__name__)
def test_each_concern_is_one_section_with_the_same_signatures_on_both_backends(protocol: type) -> None:
    pytest.importorskip("asyncpg")
    import importlib

    sqlite_section, module, postgres_name = CONCERNS[protocol]
    postgres_section = getattr(importlib.import_module(f"bot.storage.postgres.{module}"), postgres_name)
    assert sqlite_section.__module__ == f"bot.storage.sqlite.{module}"
    wanted = methods(protocol)
    assert wanted, protocol
    assert methods(sqlite_section) == wanted, f"SQLite's {module} section differs from {protocol.__name__}"
    assert methods(postgres_section) == wanted, f"PostgreSQL's {module} section differs from {protocol.__name__}"


def test_the_stores_are_their_sections_and_nothing_else() -> None:
    pytest.importorskip("asyncpg")
    from bot.storage.postgres import PostgresStore
    from bot.storage.postgres.base import PostgresBase
    from bot.storage.sqlite.base import SqliteBase

    for store, base in ((Store, SqliteBase), (PostgresStore, PostgresBase)):
        assert methods(store) == {}, f"{store.__name__} defines methods outside its sections"
        sections = [cls for cls in store.__mro__ if cls not in (store, base, object)]
        assert len(sections) == len(CONCERNS) and all(base in cls.__bases__ for cls in sections)
    # What Storage adds to the concerns is the connection's own: the base class of each backend.
    assert set(methods(protocols.Storage)) == {"close", "schema_version"}
    assert methods(SqliteBase).keys() >= {"close", "schema_version"} <= methods(PostgresBase).keys()
