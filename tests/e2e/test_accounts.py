"""Issue 19, operators' half, end to end: /mjadmin accounts, account alerts and /info's server queue.

The real bot runs between the fake Discord and a simulated trueai server (admin token) or relay;
nothing of ours is mocked. The alert watcher's polls are driven by the test (poll_once) so "one
alert per change, none on the next polls" is checked poll by poll, not by waiting.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.bot import MJBot
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, log_text
from tests.e2e.test_admin import answer, everything_discord_saw
from tests.fakes.discord import FakeDiscord, FakeMember, FakeMessage

USER_TOKEN = "trueai-user-token-5f4e3d2c"
ADMIN_TOKEN = "trueai-admin-token-1a2b3c4d"
SECRET_WORDS = ("sim-user-token", "sim-cookie", "sim-password", "JBSWY3DPEHPK3PXP", "owner1@example.com")


@pytest.fixture
async def trueai() -> AsyncIterator[SimulatedProxy]:
    async with SimulatedProxy(
        flavor="trueai", api_key=USER_TOKEN, admin_token=ADMIN_TOKEN, clock="reads", progress_steps=2
    ) as proxy:
        yield proxy


async def start_on(runner: BotRunner, proxy: SimulatedProxy, token: str, style: str = "raw") -> MJBot:
    """The bot with the .env key on this server; the watcher is driven by the test (interval 0)."""
    return await runner.start(api_base=proxy.base_url, api_key=token, api_auth_style=style, accounts_poll_interval=0)


async def accounts(fake: FakeDiscord, subcommand: str, user: FakeMember | None = None, **options: Any) -> FakeMessage:
    handle = await fake.slash(
        "mjadmin", subcommand=f"accounts {subcommand}", user=user or fake.owner, channel=fake.channel, options=options
    )
    return await answer(fake, handle)


async def test_panel_shows_every_account_with_secrets_stripped(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first = next(iter(trueai.accounts.values()))
    first.update(enable=False, disabledReason="账号用量已经用完", lock=True, cfUrl="https://captcha.example.com/c/1")
    await start_on(runner, trueai, ADMIN_TOKEN)
    panel = await accounts(discord_fake, "panel")
    text = panel.text()
    assert panel.ephemeral
    assert "pool 1" in text and "pool 2" in text and "trueai (admin token)" in text
    assert "credits are used up" in text and "CAPTCHA" in text and "Running 0/3" in text
    assert "2026-12-31" in text and len(panel.content or "") <= 2000
    assert "(<https://captcha.example.com/c/1>)" in text
    seen = everything_discord_saw(discord_fake) + log_text(caplog)
    assert [word for word in SECRET_WORDS if word in seen] == []
    assert ADMIN_TOKEN not in seen


async def test_panel_pages_stay_within_discords_limits(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    from bot.upstream.simulator import sample_account

    trueai.accounts.clear()
    for n in range(1, 13):
        account = sample_account(n, remark=f"pool {n} " + "x" * 80)
        trueai.accounts[account["id"] + str(n)] = {**account, "id": account["id"] + str(n)}
    await start_on(runner, trueai, ADMIN_TOKEN)
    panel = await accounts(discord_fake, "panel")
    assert "page 1/3" in panel.text() and len(panel.content or "") <= 2000
    forward = next(row.custom_id for row in panel.buttons if row.emoji == "▶️")
    assert forward is not None
    await discord_fake.click(panel, forward, user=discord_fake.owner)
    await discord_fake.wait_for(lambda: "page 2/3" in panel.text(), what="page 2")
    assert "pool 6" in panel.text() and "pool 1 " not in panel.text()


async def test_members_and_other_guilds_managers_cannot_see_the_env_servers_accounts(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await start_on(runner, trueai, ADMIN_TOKEN)
    # A manager of this guild without a key of its own: the .env key's server is the owner's.
    refused = await discord_fake.slash(
        "mjadmin", subcommand="accounts panel", user=discord_fake.admin, channel=discord_fake.channel
    )
    message = await answer(discord_fake, refused)
    assert "pool 1" not in message.text() and message.ephemeral
    assert not [r for r in trueai.requests if r.path.startswith("/mj/admin/")]


async def test_a_relay_says_it_has_no_account_management(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start(accounts_poll_interval=0)
    message = await accounts(discord_fake, "panel")
    assert "relay" in message.text() and "no account management" in message.text()
    html = [r for r in mj.requests if r.path == "/mj/admin/accounts"]
    assert len(html) == 1  # probed once; the HTML page was recognised, not parsed
    again = await accounts(discord_fake, "panel")
    assert "relay" in again.text() and len([r for r in mj.requests if r.path == "/mj/admin/accounts"]) == 1


async def test_reconnect_asks_first_then_sends_the_full_account(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    account_id, stored = next(iter(trueai.accounts.items()))
    stored.update(enable=False, disabledReason="由于无法重新连接，自动禁用账号")
    await start_on(runner, trueai, ADMIN_TOKEN)
    question = await accounts(discord_fake, "reconnect", account=account_id)
    assert "Reconnect **pool 1**" in question.text()
    assert not [r for r in trueai.requests if r.method == "PUT"]  # nothing happens before the click
    confirm = next(row.custom_id for row in question.buttons if row.label == "Confirm")
    assert confirm is not None
    await discord_fake.click(question, confirm, user=discord_fake.owner)
    await discord_fake.wait_for(lambda: "reconnecting" in question.text(), what="the result")
    put = next(r for r in trueai.requests if r.method == "PUT")
    expected = {k: v for k, v in stored.items() if k not in ("running", "runningCount", "queueCount")}
    assert put.json == {**expected, "enable": True}
    assert trueai.accounts[account_id]["userToken"] == stored["userToken"]
    assert SECRET_WORDS[0] not in everything_discord_saw(discord_fake)


async def test_sync_has_a_five_minute_cooldown_and_says_so(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    account_id = next(iter(trueai.accounts))
    await start_on(runner, trueai, ADMIN_TOKEN)
    question = await accounts(discord_fake, "sync", account=account_id)
    confirm = next(row.custom_id for row in question.buttons if row.label == "Confirm")
    assert confirm is not None
    await discord_fake.click(question, confirm, user=discord_fake.owner)
    await discord_fake.wait_for(lambda: "synced" in question.text(), what="the result")
    again = await accounts(discord_fake, "sync", account=account_id)
    assert "5 minutes" in again.text() and not again.buttons
    assert len([r for r in trueai.requests if r.path.startswith("/mj/admin/account-sync/")]) == 1


async def test_change_version_only_offers_the_accounts_versions(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    account_id = next(iter(trueai.accounts))
    await start_on(runner, trueai, ADMIN_TOKEN)
    refused = await accounts(discord_fake, "version", account=account_id, version="99")
    assert "does not offer version" in refused.text()
    question = await accounts(discord_fake, "version", account=account_id, version="6.1")
    confirm = next(row.custom_id for row in question.buttons if row.label == "Confirm")
    assert confirm is not None
    await discord_fake.click(question, confirm, user=discord_fake.owner)
    await discord_fake.wait_for(lambda: "now uses version" in question.text(), what="the result")
    assert trueai.accounts[account_id]["version"] == "6.1"


async def test_exactly_one_alert_when_an_account_is_disabled_and_none_on_the_next_polls(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_on(runner, trueai, ADMIN_TOKEN)
    alerts_channel = discord_fake.add_channel("mj-alerts")
    handle = await discord_fake.slash(
        "mjadmin",
        subcommand="settings alerts_channel",
        user=discord_fake.owner,
        channel=discord_fake.channel,
        options={"channel": alerts_channel.id},
    )
    assert alerts_channel.mention in (await answer(discord_fake, handle)).text()
    assert await bot.account_watcher.poll_once() == []  # first sight: remembered, not alerted
    account_id = next(iter(trueai.accounts))
    trueai.accounts[account_id].update(enable=False, disabledReason="账号用量已经用完", running=False)
    raised = await bot.account_watcher.poll_once()
    assert [a.kind for a in raised] == ["disabled"]
    posted = await discord_fake.wait_for(lambda: discord_fake.channel_messages(alerts_channel), what="the alert")
    assert len(posted) == 1
    assert "pool 1" in posted[0].text() and "credits are used up" in posted[0].text()
    for _ in range(3):
        assert await bot.account_watcher.poll_once() == []
    assert len(discord_fake.channel_messages(alerts_channel)) == 1
    # A restart does not alert again: what was seen is in the database.
    bot = await runner.restart()
    assert await bot.account_watcher.poll_once() == []
    assert len(discord_fake.channel_messages(alerts_channel)) == 1
    seen = everything_discord_saw(discord_fake) + log_text(caplog)
    assert [word for word in SECRET_WORDS if word in seen] == []


async def test_a_locked_account_alert_carries_the_captcha_link(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    bot = await start_on(runner, trueai, ADMIN_TOKEN)
    alerts_channel = discord_fake.add_channel("mj-alerts")
    await bot.alert_channels.set(discord_fake.guild.id, alerts_channel.id, owner=True)
    await bot.account_watcher.poll_once()
    account_id = next(iter(trueai.accounts))
    trueai.accounts[account_id].update(lock=True, cfUrl="https://captcha.example.com/solve/1")
    await bot.account_watcher.poll_once()
    posted = await discord_fake.wait_for(lambda: discord_fake.channel_messages(alerts_channel), what="the alert")
    assert "https://captcha.example.com/solve/1" in posted[0].text()


async def test_info_shows_the_servers_queue(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    bot = await start_on(runner, trueai, ADMIN_TOKEN)
    await bot.capabilities.get("default")
    for n in range(4):
        trueai.add_task(f"someone else's task {n}")
    handle = await discord_fake.slash("info", user=discord_fake.member, channel=discord_fake.channel)
    message = await answer(discord_fake, handle)
    assert "Server queue" in message.text() and "3 running of 6" in message.text() and "1 queued" in message.text()


async def test_a_guilds_manager_sees_the_accounts_behind_the_guilds_own_key(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, trueai: SimulatedProxy
) -> None:
    """ "A key's admin": a Manage Server member, for the servers of the keys their guild added."""
    from tests.e2e.test_admin import FERNET, add_key

    allowed = (*runner.settings.key_allowed_hosts, f"127.0.0.1:{trueai.port}")
    await runner.start(key_encryption_key=FERNET, key_allowed_hosts=allowed, accounts_poll_interval=0)
    added = await add_key(discord_fake, "own trueai", trueai.base_url, ADMIN_TOKEN, auth_style="raw")
    assert "own trueai" in added.text()
    panel = await accounts(discord_fake, "panel", user=discord_fake.admin)
    assert "pool 1" in panel.text() and "own trueai" in panel.text() and panel.ephemeral
    # The .env server (a relay here) stays the bot owner's.
    refused = await accounts(discord_fake, "panel", user=discord_fake.admin, server="default")
    assert "pool 1" not in refused.text()
    assert not [r for r in mj.requests if r.path.startswith("/mj/admin/")]
    assert ADMIN_TOKEN not in everything_discord_saw(discord_fake)
