"""Issue 15 item 6: no secret in any log line at any level, with the bot driven through the fake Discord.

The bot runs at DEBUG with discord.py's own wire loggers (discord.http, discord.gateway) turned up to
DEBUG too, the way an operator chasing a problem would: they log webhook URLs (interaction tokens),
whole gateway payloads (tokens, modal values) and request paths.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from bot.__main__ import secrets_of
from bot.config import Settings
from bot.logs import QUIET_LOGGERS, redact, setup_logging
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import API_KEY, TOKEN, BotRunner, log_text
from tests.e2e.test_admin import add_key, imagine_done, start
from tests.e2e.test_ready import web_settings
from tests.fakes.discord import FakeDiscord

NOTIFY_SECRET = "push-secret-0123456789abcdef"
MODAL_SECRET = "typed-into-the-form-9e8d7c6b"  # no sk- prefix: no shape gives it away


@contextlib.contextmanager
def everything_at_debug(caplog: pytest.LogCaptureFixture, settings: Settings) -> Iterator[None]:
    """LOG_LEVEL=DEBUG as __main__ sets it up (its secrets registered), discord.py's wire logs on too."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    setup_logging("DEBUG", secrets=secrets_of(settings))
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.handlers[:], root.level = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


async def test_no_token_key_push_secret_or_form_value_reaches_the_debug_log(
    runner: BotRunner,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings_with_web = {**web_settings(), "notify_secret": NOTIFY_SECRET}
    with everything_at_debug(caplog, runner.settings):
        bot = await start(runner, **settings_with_web)
        assert bot.web is not None
        hook = bot.web.notify_hook("default")
        assert hook is not None
        done = await imagine_done(discord_fake, "a harbour at dawn")
        task_id = next(iter(mj.tasks))
        # A push, and a wrong-secret push, as the API server (or anyone) would send them.
        local_hook = hook.replace(bot.settings.public_url, bot.web.base_url)
        async with aiohttp.ClientSession() as session:
            for url in (local_hook, local_hook + "x"):
                async with session.post(url, json={"id": task_id, "status": "SUCCESS"}) as answer:
                    await answer.read()
            async with session.get(f"{bot.web.base_url}/inpaint/editor-link-key-0123456789") as answer:
                await answer.read()

        # An unexpected failure while saving the add-key form (the disk fails): the error is logged.
        async def disk_fails(*args: Any, **kwargs: Any) -> None:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(bot.store, "insert_api_key", disk_fails)
        refused = await add_key(discord_fake, "relay", mj.base_url, MODAL_SECRET)
        assert "⚠️" in refused.text() and MODAL_SECRET not in refused.text()
        await runner.stop()

    logs = log_text(caplog)
    interaction_tokens = [handle.token for handle in discord_fake._by_token.values()]
    assert interaction_tokens and done.attachments
    # The log did see each place a secret travels through...
    assert "/webhooks/" in logs and "/interactions/" in logs and "/mj/notify/" in logs
    assert "Unhandled error" in logs and "disk I/O error" in logs
    # The error report names the form by its custom_id; what was typed is not even there to redact.
    report = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("Unhandled error"))
    assert "component " in report and "components" not in report and "***" not in report
    # ...and holds none of them.
    hook_token = hook.rsplit("/", 1)[1]
    secrets = (TOKEN, API_KEY, NOTIFY_SECRET, hook_token, MODAL_SECRET, "editor-link-key-0123456789")
    for secret in (*secrets, *interaction_tokens):
        assert secret not in logs, f"{secret[:12]}... is in the log"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("Webhook ID 1 with POST https://discord.com/api/v10/webhooks/42/aW50ZXJhY3Rpb246abc_DEF-1 has", "abc_DEF"),
        ("POST /api/v10/interactions/9/aW50ZXJhY3Rpb246xyz/callback with None", "xyz"),
        ("{'type': 5, 'token': 'some-interaction-token', 'id': '1'}", "some-interaction-token"),
        ("components: [{'type': 4, 'custom_id': 'x', 'value': 'typed secret'}]", "typed secret"),
        ('{"notifyHook": "https://bot.example/mj/notify/s3cr3t-value"}', "s3cr3t-value"),
        ("POST https://bot.example/mj/notify/s3cr3t-value failed", "s3cr3t-value"),
        ("GET /inpaint/eyJhbGciOi.sig/image -> 403", "eyJhbGciOi"),
        ("headers {'Authorization': 'Bearer sk-0123456789abcdef'}", "0123456789abcdef"),
        ("{'mj-api-secret': 'plain-secret-value'}", "plain-secret-value"),
        ("postgresql://mjbot:hunter2hunter2@db:5432/mjbot", "hunter2hunter2"),
        (
            "token MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.abcdefghijklmnopqrstuvwxyz0123 leaked",
            "abcdefghijklmnopqrstuvwxyz0123",
        ),
    ],
)
def test_each_secret_shape_is_redacted(line: str, secret: str) -> None:
    assert secret not in redact(line)
    assert "***" in redact(line)


def test_ordinary_lines_are_left_alone() -> None:
    line = "Task 1748339100123456 of user 42 in guild 7: SUCCESS after 31.2 s (upstream key:3, /mj/task/fetch)"
    assert redact(line) == line
