"""Issue 17 items 4 and 5: what Discord's own client cannot send, a modified client can (a missing
required option, a value outside the choices, a number or text out of range). Each gets a clear
private message and leaves no ERROR in the log; and answers stay within Discord's 2,000 characters."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner
from tests.e2e.test_commands import png
from tests.fakes.discord import FakeDiscord

ONE = ("a.png", png(), "image/png")
TWO = ("b.png", png(color="blue"), "image/png")

FORGED = [
    ("blend with one image", "blend", None, {"image1": ONE}, "“image2” is required"),
    ("unknown blend shape", "blend", None, {"image1": ONE, "image2": TWO, "dimensions": "HUGE"}, "“HUGE” is not one"),
    ("unknown model", "imagine", None, {"prompt": "a cat", "model": "FOO"}, "“FOO” is not one"),
    ("prompt over its length", "imagine", None, {"prompt": "x" * 6001}, "1 to 6000 characters"),
    ("empty prompt", "shorten", None, {"prompt": ""}, "1 to 6000 characters"),
    ("swapface without a target", "swapface", None, {"source": ONE}, "“target” is required"),
    ("task id too long", "show", None, {"task_id": "9" * 41}, "1 to 40 characters"),
    ("negative quota", "mjadmin", "settings set", {"daily_quota": -5}, "between 0 and 100000"),
    ("zero days of stats", "mjadmin", "stats", {"days": 0}, "between 1 and 90"),
]


@pytest.mark.parametrize(("case", "command", "subcommand", "options", "expected"), FORGED, ids=[c[0] for c in FORGED])
async def test_a_forged_option_gets_a_clear_private_answer_and_no_error(
    runner: BotRunner,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    caplog: pytest.LogCaptureFixture,
    case: str,
    command: str,
    subcommand: str | None,
    options: dict[str, Any],
    expected: str,
) -> None:
    caplog.set_level(logging.INFO)
    await runner.start()
    user = discord_fake.admin if command == "mjadmin" else discord_fake.member
    handle = await discord_fake.slash(
        command, subcommand=subcommand, user=user, channel=discord_fake.channel, options=options, force=True
    )
    notice = await handle.wait_original()
    assert notice.ephemeral and expected in notice.text(), notice.text()
    assert mj.submits() == []
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_twenty_long_option_sets_are_listed_within_discords_limits(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    bot = await runner.start()
    prefs = await bot.store.get_prefs(discord_fake.member.id)
    sets = {f"set{n:02d}{'x' * 25}": f"--ar 21:9 --s {n} " + "--no " + "y" * 280 for n in range(20)}
    await bot.store.save_prefs(prefs.with_changes(option_sets={k: v[:300] for k, v in sets.items()}))
    listing = await discord_fake.slash(
        "prefer", subcommand="option list", user=discord_fake.member, channel=discord_fake.channel
    )
    first = await listing.wait_original()
    await discord_fake.wait_for(lambda: sum(len(p.text()) for p in [first, *listing.followups]) > 6000, timeout=5)
    pages = [first, *listing.followups]
    assert all(page.ephemeral and len(page.content or "") <= 2000 for page in pages)
    shown = "\n".join(page.content or "" for page in pages)
    assert all(f"`--{name}`" in shown for name in sets)  # every set, none cut
    assert len(pages) >= 4
