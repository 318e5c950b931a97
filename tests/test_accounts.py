"""bot/upstream/accounts.py against the simulator's account endpoints, flavour by flavour, and the
alert rules of bot/alerts.py. The real httpx client talks to the simulator; nothing is mocked."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bot.alerts import (
    DISABLED,
    FAST_EXHAUSTED,
    LOCKED,
    STOPPED,
    AccountAlert,
    AccountState,
    alert_text,
    changes,
    reason_text,
)
from bot.responder import error_text
from bot.upstream.accounts import (
    BASIC,
    PLUS,
    RELAY,
    TRUEAI_ADMIN,
    TRUEAI_USER,
    Account,
    AccountsApi,
    AccountsUnsupported,
    AdminRefused,
    Capabilities,
)
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.simulator import SimulatedProxy

USER_TOKEN = "user-token-4f1e2d3c"
ADMIN_TOKEN = "admin-token-9a8b7c6d"
SECRET = "mj-secret-5e6f7a8b"
SECRET_WORDS = ("sim-user-token", "sim-cookie", "sim-password", "JBSWY3DPEHPK3PXP")

Server = Callable[..., Awaitable[tuple[SimulatedProxy, AccountsApi]]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    """A simulator of one flavour and the accounts API on the key the test chooses."""
    opened: list[SimulatedProxy] = []
    clients: list[MJClient] = []

    async def make(flavor: str, key: str, style: str, **options: Any) -> tuple[SimulatedProxy, AccountsApi]:
        api_key = {"trueai": USER_TOKEN, "relay": "sk-" + SECRET}.get(flavor, SECRET)
        sim = SimulatedProxy(flavor=flavor, api_key=api_key, admin_token=ADMIN_TOKEN, clock="reads", **options)
        await sim.start()
        opened.append(sim)
        client = MJClient(UpstreamConfig(base_url=sim.base_url, api_key=key, auth_style=style), read_retries=0)
        clients.append(client)
        return sim, AccountsApi(client)

    yield make
    for client in clients:
        await client.aclose()
    for sim in opened:
        await sim.stop()


# ---- probing ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "key", "style", "options", "expected"),
    [
        ("trueai", ADMIN_TOKEN, "raw", {}, TRUEAI_ADMIN),
        ("trueai", USER_TOKEN, "raw", {}, TRUEAI_USER),
        ("basic", SECRET, "mj-api-secret", {"plus": True}, PLUS),
        ("basic", SECRET, "mj-api-secret", {}, BASIC),
        ("relay", "sk-" + SECRET, "bearer", {}, RELAY),
    ],
)
async def test_probe_tells_each_kind_of_server_apart(
    server: Server, flavor: str, key: str, style: str, options: dict[str, Any], expected: str
) -> None:
    _, api = await server(flavor, key, style, **options)
    assert (await api.probe()).flavor == expected


async def test_a_relay_answers_unknown_paths_with_its_web_page_and_it_is_never_parsed(server: Server) -> None:
    _sim, api = await server("relay", "sk-" + SECRET, "bearer")
    response = await api._client.exchange("GET", "/mj/task/queue")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    with pytest.raises(AccountsUnsupported):
        await api.queue(Capabilities(BASIC))  # even if told it is a basic server, HTML is not an answer
    with pytest.raises(AccountsUnsupported):
        await api.accounts(Capabilities(BASIC))
    assert not await api._client.cancel("123")  # the client's cancel: HTML 200 is "not available", at once


def test_capabilities_survive_a_round_trip_and_bad_json_is_ignored() -> None:
    caps = Capabilities(TRUEAI_ADMIN, 123.0)
    assert Capabilities.from_json(caps.to_json()) == caps
    assert Capabilities.from_json("not json") is None
    assert Capabilities.from_json('{"flavor": "mystery"}') is None
    assert caps.lists_accounts and caps.manages_accounts and caps.queue_source == "accounts"
    assert not Capabilities(RELAY).lists_accounts and Capabilities(BASIC).queue_source == "queue"


# ---- reading ---------------------------------------------------------------------------------------


async def test_trueai_accounts_keep_no_secret_in_any_field(server: Server) -> None:
    _sim, api = await server("trueai", ADMIN_TOKEN, "raw")
    listed = (await api.accounts(Capabilities(TRUEAI_ADMIN))).accounts
    assert [a.name for a in listed] == ["pool 1", "pool 2"]
    first = listed[0]
    assert first.enabled is True and first.running is True and first.mode == "Fast" and first.version == "7"
    assert first.core_size == 3 and first.queue_size == 10 and first.today_count == 4
    assert first.renew_date == "2026-12-31" and [v.value for v in first.versions] == ["7", "6.1", "niji 6"]
    shown = json.dumps([dataclasses.asdict(a) for a in listed]) + repr(listed)
    assert not [word for word in SECRET_WORDS if word in shown]


async def test_untrusted_account_fields_are_typed_and_capped() -> None:
    account = Account.from_json(
        TRUEAI_ADMIN,
        {
            "id": "x",
            "remark": "r" * 500,
            "enable": "yes",
            "lock": 1,
            "cfUrl": "javascript:alert(1)",
            "coreSize": -3,
            "queueSize": "12",
            "versionSelector": "not a list",
            "userToken": "secret",
        },
    )
    assert account is not None
    assert len(account.name) <= 60 and account.enabled is None and account.locked is False
    assert account.cf_url == "" and account.core_size is None and account.queue_size == 12
    assert Account.from_json(TRUEAI_ADMIN, {"remark": "no id"}) is None


@pytest.mark.parametrize(
    "answer",
    [
        {"coreSize": "²", "queueSize": "9" * 5000},  # str.isdigit() accepts both; int() refuses both
        {"runningCount": "٣"},  # a decimal digit of another script: a count, and a sane one
        {"versionSelector": 5},
        {"versionSelector": True},
    ],
)
def test_odd_account_fields_never_raise(answer: dict[str, Any]) -> None:
    account = Account.from_json(TRUEAI_ADMIN, {"id": "x", **answer})
    assert account is not None and account.versions == ()
    assert account.core_size is None and account.queue_size is None
    assert account.running_count in (None, 3)


async def test_plus_and_basic_accounts_are_listed(server: Server) -> None:
    _, plus = await server("basic", SECRET, "mj-api-secret", plus=True)
    names = [a.name for a in (await plus.accounts(Capabilities(PLUS))).accounts]
    assert names == ["plus pool 1", "plus pool 2"]
    _, basic = await server("basic", SECRET, "mj-api-secret")
    listed = (await basic.accounts(Capabilities(BASIC))).accounts
    assert len(listed) == 2 and listed[0].enabled is True and listed[0].core_size == 3


async def test_the_queue_comes_from_trueai_accounts_or_the_queue_endpoint(server: Server) -> None:
    sim, api = await server("trueai", ADMIN_TOKEN, "raw")
    for n in range(4):
        sim.add_task(f"task {n}")
    status = await api.queue(Capabilities(TRUEAI_ADMIN))
    assert (status.running, status.queued, status.capacity) == (3, 1, 6)
    basic_sim, basic = await server("basic", SECRET, "mj-api-secret")
    basic_sim.add_task("one")
    status = await basic.queue(Capabilities(BASIC))
    assert status.running + status.queued == 1


# ---- actions ---------------------------------------------------------------------------------------


async def test_reconnect_sends_the_whole_account_back_with_only_enable_changed(server: Server) -> None:
    sim, api = await server("trueai", ADMIN_TOKEN, "raw")
    account_id = next(iter(sim.accounts))
    sim.accounts[account_id].update(enable=False, disabledReason="由于无法重新连接，自动禁用账号")
    stored = {k: v for k, v in sim.accounts[account_id].items() if k not in ("running", "runningCount", "queueCount")}
    await api.reconnect(Capabilities(TRUEAI_ADMIN), account_id)
    put = next(r for r in sim.requests if r.method == "PUT")
    assert put.path == f"/mj/admin/account-reconnect/{account_id}"
    assert put.json == {**stored, "enable": True}
    assert sim.accounts[account_id]["userToken"] == stored["userToken"]  # nothing wiped


async def test_sync_is_refused_within_the_servers_cooldown(server: Server) -> None:
    sim, api = await server("trueai", ADMIN_TOKEN, "raw")
    account_id = next(iter(sim.accounts))
    await api.sync(Capabilities(TRUEAI_ADMIN), account_id)
    with pytest.raises(AdminRefused) as refused:
        await api.sync(Capabilities(TRUEAI_ADMIN), account_id)
    assert "同步失败" in refused.value.detail and refused.value.status == 200  # the envelope decides


async def test_enable_version_and_admin_cancel_on_trueai(server: Server) -> None:
    sim, api = await server("trueai", ADMIN_TOKEN, "raw")
    caps = Capabilities(TRUEAI_ADMIN)
    account_id = next(iter(sim.accounts))
    sim.accounts[account_id]["enable"] = False
    await api.enable(caps, account_id)
    assert sim.accounts[account_id]["enable"] is True
    await api.change_version(caps, account_id, "6.1")
    assert sim.accounts[account_id]["version"] == "6.1"
    with pytest.raises(AdminRefused):
        await api.change_version(caps, account_id, "99")
    task_id = sim.add_task("to cancel")
    await api.cancel_task(caps, task_id)
    assert sim.tasks[task_id].status == "FAILURE" and sim.tasks[task_id].fail_reason == "取消任务"


async def test_a_user_token_cannot_use_admin_routes(server: Server) -> None:
    _sim, api = await server("trueai", USER_TOKEN, "raw")
    with pytest.raises(AccountsUnsupported):
        await api.accounts(Capabilities(TRUEAI_USER))
    with pytest.raises(AccountsUnsupported):
        await api.cancel_task(Capabilities(TRUEAI_USER), "1")


async def test_plus_reconnect_and_cancel(server: Server) -> None:
    sim, api = await server("basic", SECRET, "mj-api-secret", plus=True)
    caps = Capabilities(PLUS)
    account_id = next(iter(sim.accounts))
    sim.accounts[account_id]["enable"] = False
    await api.reconnect(caps, account_id)
    put = next(r for r in sim.requests if r.method == "PUT")
    assert put.json["userToken"] == sim.accounts[account_id]["userToken"] and put.json["enable"] is True
    assert sim.accounts[account_id]["enable"] is True
    await api.sync(caps, account_id)
    task_id = sim.add_task("to cancel")
    await api.cancel_task(caps, task_id)
    assert sim.tasks[task_id].status == "CANCEL"


# ---- alert rules -----------------------------------------------------------------------------------


def _account(**changes: Any) -> Account:
    base = Account(id="a", name="pool", enabled=True, locked=False, running=True, fast_exhausted=False)
    return dataclasses.replace(base, **changes)


def test_each_change_raises_one_alert_and_a_steady_state_none() -> None:
    before = {"a": AccountState.of(_account())}
    assert changes("u", before, [_account()]) == []
    kinds = [a.kind for a in changes("u", before, [_account(enabled=False, running=False)])]
    assert kinds == [DISABLED]  # the stop of a disabled account is not a second alert
    kinds = [a.kind for a in changes("u", before, [_account(locked=True, running=False, fast_exhausted=True)])]
    assert kinds == [LOCKED, STOPPED, FAST_EXHAUSTED]
    after = {"a": AccountState.of(_account(enabled=False))}
    assert changes("u", after, [_account(enabled=False)]) == []
    assert changes("u", {}, [_account(enabled=False)]) == []  # first sight is not a change


def test_disabled_reasons_are_translated_and_unknown_ones_kept() -> None:
    assert reason_text("账号用量已经用完", "en") == "its Midjourney credits are used up"
    assert reason_text("账号用量已经用完", "zh-CN") == "Midjourney 额度已用完"
    assert reason_text("Blocked, You have been blocked", "en") == "Midjourney blocked it"
    assert "weird" in reason_text("weird `thing`", "en") and "`" not in reason_text("weird `thing`", "en")


def test_a_servers_own_words_in_an_error_are_shown_as_text_not_links_or_mentions() -> None:
    refused = AdminRefused("[verify here](https://phish.example) **now** @everyone")
    shown = error_text(refused, "en")
    assert "\\[verify here\\](https://phish.example)" in shown  # the link shows as typed, not masked
    assert "@everyone" not in shown
    # The editor's web page shows it as plain text (HTML-escaped there): no Markdown escapes.
    assert "[verify here](https://phish.example) **now**" in error_text(refused, "en", markdown=False)


def test_an_alert_shows_a_servers_words_as_text_in_a_public_channel() -> None:
    account = Account(
        id="1",
        name="[main](https://phish.example)",
        enabled=False,
        disabled_reason="[Re-verify](https://phish.example) @everyone",
    )
    text = alert_text(AccountAlert("default", DISABLED, account), "#1 mine (relay.example)", "en")
    assert "[main](" not in text and "[Re-verify](" not in text and "@everyone" not in text
    assert "\\[Re-verify\\](https://phish.example)" in text
