"""Issue 18.3/18.4: a submit is a value the task row keeps, and custom_ids come from one spec.

Old Discord messages carry custom_ids and old rows carry `extra["retry"]` specs: both must keep
working after the upgrade (migration 0010 turns the specs into stored requests)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from bot import render
from bot.requests import (
    ActionRequest,
    BlendRequest,
    ChangeRequest,
    DescribeRequest,
    EditRequest,
    ImagineRequest,
    ModalRequest,
    ShortenRequest,
    SubmitRequest,
    SwapFaceRequest,
    VideoRequest,
)
from bot.storage.common import migrations as _migrations
from bot.storage.factory import open_store
from cogs import settings
from tests.pg import PostgresServer, postgres_server_fixture, require_asyncpg  # noqa: F401  (fixtures)

PICTURE = "data:image/png;base64,AAAA"


# ---- requests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_",
    [
        ImagineRequest(prompt="a cat --ar 2:3", bot_type="NIJI_JOURNEY"),
        ShortenRequest(prompt="a very long prompt"),
        ActionRequest(task_id="1712", custom_id="MJ::JOB::upsample::2::abc", enable_remix=True),
        ChangeRequest(task_id="1712", change="variation", index=3),
        ChangeRequest(task_id="1712", change="REROLL"),
        VideoRequest(prompt="a wave", image="https://cdn.example/1.png", motion="high", batch=2),
        VideoRequest(prompt="on", extend_task="1712", extend_index=3),
    ],
    ids=lambda r: r.kind,
)
def test_stored_requests_come_back_equal(request_: SubmitRequest) -> None:
    stored = request_.to_json()
    assert stored is not None
    assert SubmitRequest.from_json(json.loads(json.dumps(stored))) == request_


@pytest.mark.parametrize(
    "request_",
    [
        ImagineRequest(prompt="with a reference", images=(PICTURE,)),
        BlendRequest(images=(PICTURE, PICTURE)),
        DescribeRequest(image=PICTURE),
        SwapFaceRequest(source=PICTURE, target=PICTURE),
        ModalRequest(task_id="1", prompt="second step"),
        VideoRequest(prompt="from an upload", image=PICTURE),
        EditRequest(prompt="red", image=PICTURE),
    ],
    ids=lambda r: r.kind,
)
def test_requests_with_pictures_or_a_second_step_are_not_stored(request_: SubmitRequest) -> None:
    assert request_.to_json() is None


def test_bodies_are_what_each_endpoint_takes() -> None:
    assert ChangeRequest(task_id="7", change="reroll", index=None).body() == {
        "taskId": "7",
        "action": "REROLL",
        "index": 1,  # relays demand one even for REROLL
    }
    assert ActionRequest(task_id="7", custom_id="c").body() == {"taskId": "7", "customId": "c", "enableRemix": None}
    assert BlendRequest(images=(PICTURE, PICTURE), dimensions="PORTRAIT").label() == "/blend 2 images (portrait)"
    with pytest.raises(ValueError):
        ChangeRequest(task_id="7", change="UPSCALE", index=5)


@pytest.mark.parametrize(
    "stored",
    [
        None,
        "text",
        {"kind": "teleport"},
        {"kind": "change", "task_id": "1", "change": "ZOOM", "index": 1},
        {"kind": "imagine"},
    ],
)
def test_unknown_or_malformed_stored_requests_are_none(stored: Any) -> None:
    assert SubmitRequest.from_json(stored) is None


# ---- custom ids: posted ids live on in Discord -----------------------------------------------------

#: Every shape as it was before the ids came from specs: old messages carry these.
POSTED = {
    render.ACTION: ("mj:act:{task}:{index}", r"mj:act:(?P<task>[0-9A-Za-z_-]{1,40}):(?P<index>\d{1,2})"),
    render.CHANGE: ("mj:chg:{task}:{op}", r"mj:chg:(?P<task>[0-9A-Za-z_-]{1,40}):(?P<op>[UV][1-4]|R)"),
    render.PICK: ("mj:pick:{task}:{index}", r"mj:pick:(?P<task>[0-9A-Za-z_-]{1,40}):(?P<index>\d)"),
    render.MODAL_TASK: ("mj:open:{task}", r"mj:open:(?P<task>[0-9A-Za-z_-]{1,40})"),
    render.REDESCRIBE: ("mj:redo:{task}", r"mj:redo:(?P<task>[0-9A-Za-z_-]{1,40})"),
    render.RETRY: ("mj:retry:{task}", r"mj:retry:(?P<task>[0-9A-Za-z_-]{1,40})"),
    render.RETRY_CONFIRM: ("mj:retryok:{task}", r"mj:retryok:(?P<task>[0-9A-Za-z_-]{1,40})"),
    render.CANCEL_TASK: ("mj:cancel:{task}", r"mj:cancel:(?P<task>[0-9A-Za-z_-]{1,40})"),
    render.DELETE: ("mj:del:{task}", r"mj:del:(?P<task>[0-9A-Za-z_-]{1,40})"),
    render.SEED: ("mj:seed:{task}", r"mj:seed:(?P<task>[0-9A-Za-z_-]{1,40})"),
    render.EXTEND: (
        "mj:ext:{task}:{index}:{motion}",
        r"mj:ext:(?P<task>[0-9A-Za-z_-]{1,40}):(?P<index>[0-3]):(?P<motion>high|low)",
    ),
    settings.SELECT: ("mj:set:{field}", r"mj:set:(?P<field>version|stylize|speed|aspect)"),
    settings.TOGGLE: ("mj:tog:{field}", r"mj:tog:(?P<field>remix|visibility|reset)"),
}


@pytest.mark.parametrize("spec", list(POSTED), ids=lambda s: s.prefix)
def test_custom_id_shapes_are_byte_identical_to_the_posted_ones(spec: render.CustomId) -> None:
    assert (spec.format, spec.template) == POSTED[spec]


def test_every_button_registers_the_shape_it_builds() -> None:
    from cogs import actions, describe, info, manage, video

    cogs = (actions.Actions, describe.Describe, info.Info, manage.Manage, settings.Settings, video.Video)
    items = [item for cog in cogs for item in cog.items]
    assert {item.spec.prefix for item in items} >= {spec.prefix for spec in POSTED}  # type: ignore[attr-defined]
    for item in items:
        assert item.__discord_ui_compiled_template__.pattern == item.spec.template  # type: ignore[attr-defined]


# ---- migration 0010: old retry specs become stored requests ----------------------------------------

LEGACY = [
    ("1", None, {"retry": {"kind": "imagine", "prompt": "a cat", "bot_type": "NIJI_JOURNEY"}, "candidates": ["x"]}),
    ("2", None, {"retry": {"kind": "shorten", "prompt": "long words"}}),
    ("3", "1", {"retry": {"kind": "action", "custom_id": "MJ::JOB::upsample::1::h"}}),
    ("4", "1", {"retry": {"kind": "change", "action": "VARIATION", "index": 2}}),
    ("5", None, {}),
    (
        "6",
        None,
        {"retry": {"kind": "video", "relay": True, "prompt": "a wave", "motion": "high", "image": "https://x/1.png"}},
    ),
    ("7", "6", {"retry": {"kind": "video", "relay": True, "prompt": "a wave", "motion": "low", "index": 2}}),
]
EXPECTED: dict[str, SubmitRequest | None] = {
    "1": ImagineRequest(prompt="a cat", bot_type="NIJI_JOURNEY"),
    "2": ShortenRequest(prompt="long words"),
    "3": ActionRequest(task_id="1", custom_id="MJ::JOB::upsample::1::h"),
    "4": ChangeRequest(task_id="1", change="VARIATION", index=2),
    "5": None,
    "6": VideoRequest(prompt="a wave", image="https://x/1.png", motion="high"),
    "7": VideoRequest(prompt="a wave", extend_task="6", extend_index=2),
}
INSERT = (
    "INSERT INTO tasks (id, action, user_id, channel_id, parent_id, extra, created_at, updated_at) "
    "VALUES ({}, 'IMAGINE', 1, 2, {}, {}, 0, 0)"
)


async def _check_converted(store: Any) -> None:
    for task_id, _, extra in LEGACY:
        record = await store.get_task(task_id)
        assert record is not None
        assert record.request == EXPECTED[task_id]
        relay = {"relay": True} if extra.get("retry", {}).get("relay") else {}
        assert record.extra == {**{k: v for k, v in extra.items() if k != "retry"}, **relay}


async def test_sqlite_migration_turns_old_retry_specs_into_requests(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        for version, script in _migrations():
            if version < 10:
                db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version = {version};\nCOMMIT;")
        for task_id, parent, extra in LEGACY:
            db.execute(INSERT.format("?", "?", "?"), (task_id, parent, json.dumps(extra)))
    store = await open_store(path)
    try:
        await _check_converted(store)
    finally:
        await store.close()


async def test_postgres_migration_turns_old_retry_specs_into_requests(postgres_server: PostgresServer) -> None:
    require_asyncpg()
    import asyncpg

    url = postgres_server.create_database()
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at DOUBLE PRECISION)")
        for version, script in _migrations("postgres"):
            if version < 10:
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations VALUES ($1, 0)", version)
        for task_id, parent, extra in LEGACY:
            await conn.execute(INSERT.format("$1", "$2", "$3"), task_id, parent, json.dumps(extra))
    finally:
        await conn.close()
    store = await open_store(url)
    try:
        await _check_converted(store)
    finally:
        await store.close()
