"""MJClient against the real SimulatedProxy on 127.0.0.1, plus MockTransport for exact byte shapes."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest

from bot.errors import (
    BannedPrompt,
    InvalidRequest,
    QueueFull,
    QuotaExhausted,
    TaskNotFound,
    TransientError,
    Unauthorized,
    UnsupportedAction,
    UpstreamError,
)
from bot.upstream.client import MJClient, UpstreamConfig, _raise_for_answer, data_url
from bot.upstream.simulator import SimulatedProxy

KEY = "sk-test-TOPSECRET-0123456789abcdef"
PNG = data_url(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16, "image/png")
OTHER_PNG = data_url(b"\x89PNG\r\n\x1a\n" + b"\x01" * 16, "image/png")
STYLE_OF = {"relay": "bearer", "trueai": "raw", "basic": "mj-api-secret"}

SimFactory = Callable[..., Awaitable[SimulatedProxy]]
ClientFactory = Callable[..., MJClient]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    started: list[SimulatedProxy] = []

    async def factory(**options: Any) -> SimulatedProxy:
        options.setdefault("api_key", KEY)
        options.setdefault("timeout_delay", 1.0)
        sim = SimulatedProxy(**options)
        await sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        await sim.stop()


@pytest.fixture
async def make_client() -> AsyncIterator[ClientFactory]:
    made: list[MJClient] = []

    def factory(
        base_url: str = "http://upstream.test",
        *,
        api_key: str = KEY,
        auth_style: str = "bearer",
        mode: str = "",
        timeout: float = 0.3,
        read_retries: int = 3,
        transport: httpx.AsyncBaseTransport | None = None,
        max_retry_after: float = 0.05,
    ) -> MJClient:
        config = UpstreamConfig(
            name="test", base_url=base_url, api_key=api_key, auth_style=auth_style, mode=mode, timeout=timeout
        )
        client = MJClient(
            config,
            transport=transport,
            read_retries=read_retries,
            backoff=0.01,
            max_retry_after=max_retry_after,
        )
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


async def pair(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str = "trueai", **options: Any
) -> tuple[SimulatedProxy, MJClient]:
    """A simulator of this flavour and a client using that flavour's natural auth style."""
    client_options = {k: options.pop(k) for k in ("mode", "read_retries", "timeout") if k in options}
    sim = await make_sim(flavor=flavor, **options)
    return sim, make_client(sim.base_url, auth_style=STYLE_OF[flavor], **client_options)


async def finished_task(sim: SimulatedProxy, client: MJClient, prompt: str = "a red fox") -> str:
    result = await client.imagine(prompt)
    sim.finish(result.task_id)
    return result.task_id


async def eventually(condition: Callable[[], bool], seconds: float = 3.0) -> None:
    """Poll a condition the simulator's background work makes true."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return httpx.MockTransport(record), seen


def answer(status: int, body: Any = b"", headers: dict[str, str] | None = None) -> httpx.Response:
    if isinstance(body, dict | list):
        return httpx.Response(status, json=body, headers=headers)
    content = body.encode() if isinstance(body, str) else body
    return httpx.Response(status, content=content, headers=headers)


# ---- configuration -------------------------------------------------------------------------------


def test_config_rejects_unknown_auth_style_naming_the_value_not_the_key() -> None:
    with pytest.raises(ValueError, match="'basic-auth'") as caught:
        UpstreamConfig(base_url="http://x", api_key=KEY, auth_style="basic-auth")
    assert KEY not in str(caught.value)


def test_config_rejects_unknown_mode() -> None:
    with pytest.raises(ValueError, match="'warp'"):
        UpstreamConfig(base_url="http://x", api_key=KEY, mode="warp")


@pytest.mark.parametrize("base_url", ["", "ftp://x", "upstream.test", "http://"])
def test_config_rejects_bad_base_url(base_url: str) -> None:
    with pytest.raises(ValueError, match="base_url"):
        UpstreamConfig(base_url=base_url, api_key=KEY)


def test_config_rejects_key_with_newline_without_echoing_it() -> None:
    with pytest.raises(ValueError) as caught:
        UpstreamConfig(base_url="http://x", api_key="sk-abc\ndef")
    assert "sk-abc" not in str(caught.value)


def test_config_normalises_and_hides_key_in_repr() -> None:
    config = UpstreamConfig(base_url=" https://relay.test/ ", api_key=KEY, auth_style="Bearer", mode="FAST")
    assert config.base_url == "https://relay.test"
    assert (config.auth_style, config.mode, config.path_prefix) == ("bearer", "fast", "/mj-fast")
    assert KEY not in repr(config)
    assert KEY not in repr(MJClient(config))


def test_data_url_round_trip() -> None:
    url = data_url(b"\x89PNGdata", "image/png")
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == b"\x89PNGdata"
    with pytest.raises(ValueError):
        data_url(b"x", "png")


# ---- auth ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavor", "style", "header", "value"),
    [
        ("relay", "bearer", "authorization", f"Bearer {KEY}"),
        ("trueai", "raw", "authorization", KEY),
        ("trueai", "mj-api-secret", "mj-api-secret", KEY),
        ("basic", "mj-api-secret", "mj-api-secret", KEY),
    ],
)
async def test_auth_header_per_style_is_accepted(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str, style: str, header: str, value: str
) -> None:
    sim = await make_sim(flavor=flavor, auth_style=style)
    client = make_client(sim.base_url, auth_style=style)
    result = await client.imagine("a lighthouse")
    assert result.task_id in sim.tasks
    sent = sim.requests[-1].headers
    assert sent[header] == value
    other = "mj-api-secret" if header == "authorization" else "authorization"
    assert other not in sent


@pytest.mark.parametrize(
    ("flavor", "style", "accepted"),
    [
        ("relay", "mj-api-secret", True),  # new-api falls back to mj-api-secret
        ("relay", "raw", True),  # new-api also takes a bare key
        ("trueai", "bearer", False),  # trueai looks up "Bearer sk-..." literally and fails
        ("basic", "bearer", False),
        ("basic", "raw", False),
    ],
)
async def test_each_flavour_checks_auth_like_the_real_server(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str, style: str, accepted: bool
) -> None:
    sim = await make_sim(flavor=flavor)
    client = make_client(sim.base_url, auth_style=style)
    if accepted:
        assert (await client.imagine("a boat")).task_id in sim.tasks
    else:
        with pytest.raises(Unauthorized) as caught:
            await client.imagine("a boat")
        assert caught.value.status == 401
        assert sim.tasks == {}


@pytest.mark.parametrize(
    ("flavor", "detail"),
    [("relay", "无效的令牌"), ("trueai", "Authorization header missing."), ("basic", "HTTP 401")],
)
async def test_wrong_key_is_unauthorized_in_each_flavours_shape(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str, detail: str
) -> None:
    sim = await make_sim(flavor=flavor, api_key="the-right-key")
    client = make_client(sim.base_url, auth_style=STYLE_OF[flavor])
    with pytest.raises(Unauthorized) as caught:
        await client.fetch("1")
    assert detail in caught.value.detail
    assert KEY not in str(caught.value)
    assert len(sim.requests) == 1  # a 401 is not retried


async def test_empty_key_sends_no_auth_header(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim = await make_sim(flavor="relay", api_key=None)
    client = make_client(sim.base_url, api_key="")
    await client.imagine("a kite")
    headers = sim.requests[-1].headers
    assert "authorization" not in headers and "mj-api-secret" not in headers


async def test_redirects_are_not_followed_so_the_key_stays_home(make_client: ClientFactory) -> None:
    transport, seen = mock(lambda r: answer(302, headers={"Location": "https://evil.test/mj/task/1/fetch"}))
    client = make_client(transport=transport)
    with pytest.raises(UpstreamError, match=r"evil\.test") as caught:
        await client.fetch("1")
    assert type(caught.value) is UpstreamError
    assert [r.url.host for r in seen] == ["upstream.test"]


async def test_key_is_sent_under_a_base_path(make_client: ClientFactory) -> None:
    transport, seen = mock(lambda r: answer(200, {"code": 1, "description": "ok", "result": "7"}))
    client = make_client("https://relay.test/proxy/v2", transport=transport, mode="relax")
    await client.imagine("x")
    assert str(seen[0].url) == "https://relay.test/proxy/v2/mj-relax/mj/submit/imagine"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


# ---- mode prefix ---------------------------------------------------------------------------------


async def test_mode_prefix_applies_to_submits_and_reads(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai", mode="fast")
    result = await client.imagine("a comet")
    task = await client.fetch(result.task_id)
    await client.list_by_ids([result.task_id])
    assert [r.path for r in sim.requests] == [
        "/mj-fast/mj/submit/imagine",
        f"/mj-fast/mj/task/{result.task_id}/fetch",
        "/mj-fast/mj/task/list-by-condition",
    ]
    assert task is not None and task.properties == sim.task_json(result.task_id)["properties"]
    assert sim.task_json(result.task_id)["mode"] == "FAST"


async def test_basic_server_has_no_mode_prefix(make_sim: SimFactory, make_client: ClientFactory) -> None:
    _, client = await pair(make_sim, make_client, "basic", mode="relax")
    with pytest.raises(UnsupportedAction):
        await client.imagine("a comet")


# ---- submit endpoints ----------------------------------------------------------------------------


async def test_imagine_sends_all_fields_and_omits_none(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client)
    result = await client.imagine(
        "dog playing ball --v 7", bot_type="NIJI_JOURNEY", images=[PNG], state="guild:1", notify_hook=None
    )
    body = sim.submits("/submit/imagine")[0].json
    assert body == {
        "prompt": "dog playing ball --v 7",
        "botType": "NIJI_JOURNEY",
        "base64Array": [PNG],
        "state": "guild:1",
    }
    assert result.code == 1 and len(result.task_id) == 16 and result.task_id.isdigit()
    assert sim.tasks[result.task_id].bot_type == "NIJI_JOURNEY"


async def test_imagine_without_images_sends_no_base64_array(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client)
    await client.imagine("plain", notify_hook="http://127.0.0.1:9/hook")
    body = sim.submits("imagine")[0].json
    assert "base64Array" not in body and body["notifyHook"] == "http://127.0.0.1:9/hook"


async def test_blend(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client)
    result = await client.blend([PNG, OTHER_PNG], dimensions="LANDSCAPE")
    assert sim.submits("blend")[0].json == {
        "base64Array": [PNG, OTHER_PNG],
        "dimensions": "LANDSCAPE",
        "botType": "MID_JOURNEY",
    }
    assert sim.tasks[result.task_id].action == "BLEND"


async def test_blend_with_one_image_is_invalid(make_sim: SimFactory, make_client: ClientFactory) -> None:
    _, client = await pair(make_sim, make_client)
    with pytest.raises(InvalidRequest, match="2~5"):
        await client.blend([PNG])


async def test_describe_sends_base64_field(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    result = await client.describe(PNG)
    assert sim.submits("describe")[0].json == {"base64": PNG, "botType": "MID_JOURNEY"}
    assert sim.tasks[result.task_id].action == "DESCRIBE"


async def test_shorten(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client)
    result = await client.shorten("a very long prompt, with many words")
    assert sim.submits("shorten")[0].json["prompt"] == "a very long prompt, with many words"
    sim.finish(result.task_id)
    task = await client.fetch(result.task_id)
    assert task is not None and "Shortened prompts" in task.final_prompt


async def test_action_creates_an_upscale(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client)
    parent = await finished_task(sim, client)
    custom_id = sim.tasks[parent].buttons[1]["customId"]  # U2
    result = await client.action(parent, custom_id)
    assert sim.submits("action")[0].json == {"taskId": parent, "customId": custom_id}
    assert result.code == 1 and not result.needs_modal
    sim.finish(result.task_id)
    task = await client.fetch(result.task_id)
    assert task is not None and task.action == "UPSCALE" and len(task.buttons) == 13


@pytest.mark.parametrize("flavor", ["trueai", "relay"])
async def test_custom_zoom_keeps_code_21_and_modal_sends_prompt(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str
) -> None:
    sim, client = await pair(make_sim, make_client, flavor)
    grid = await finished_task(sim, client, "cat --v 6.0 --fast")
    upscale = await client.action(grid, sim.tasks[grid].buttons[0]["customId"])
    sim.finish(upscale.task_id)
    zoom = next(b["customId"] for b in sim.tasks[upscale.task_id].buttons if "CustomZoom" in b["customId"])
    first = await client.action(upscale.task_id, zoom)
    assert first.code == 21 and first.needs_modal
    assert first.final_prompt == "cat --v 6.0"  # speed flags stripped for the prefill
    assert sim.tasks[first.task_id].status == "MODAL"
    second = await client.modal(first.task_id, "cat --v 6.0 --zoom 1.5")
    assert second.task_id == first.task_id and not second.needs_modal
    assert sim.submits("modal")[0].json == {"taskId": first.task_id, "prompt": "cat --v 6.0 --zoom 1.5"}
    assert sim.tasks[first.task_id].status == "SUBMITTED"


async def test_modal_always_sends_prompt_even_empty(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, remix=True)
    grid = await finished_task(sim, client, "a tree")
    first = await client.action(grid, sim.tasks[grid].buttons[5]["customId"])  # V1 with remix on
    assert first.code == 21 and first.needs_modal
    await client.modal(first.task_id, "", mask_base64=PNG)
    body = sim.submits("modal")[0].json
    assert body == {"taskId": first.task_id, "prompt": "", "maskBase64": PNG}
    assert sim.tasks[first.task_id].prompt == "a tree"  # the server fell back to the parent's prompt


async def test_relay_remix_answer_is_code_1_but_needs_modal(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay", remix=True)
    grid = await finished_task(sim, client, "a tree")
    result = await client.action(grid, sim.tasks[grid].buttons[4]["customId"])  # reroll
    assert result.code == 1
    assert result.needs_modal and result.properties["remix"] is True


async def test_swap_face(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    result = await client.swap_face(PNG, OTHER_PNG)
    request = sim.submits("/mj/insight-face/swap")[0]
    assert request.json == {"sourceBase64": PNG, "targetBase64": OTHER_PNG}
    assert sim.tasks[result.task_id].action == "SWAP_FACE"


@pytest.mark.parametrize(("action", "index", "sent"), [("upscale", 2, 2), ("VARIATION", 4, 4), ("reroll", None, 1)])
async def test_change_on_basic(
    make_sim: SimFactory, make_client: ClientFactory, action: str, index: int | None, sent: int
) -> None:
    sim, client = await pair(make_sim, make_client, "basic")
    parent = await finished_task(sim, client)
    result = await client.change(parent, action, index)
    assert sim.submits("change")[0].json == {"taskId": parent, "action": action.upper(), "index": sent}
    assert sim.tasks[result.task_id].action == action.upper()


async def test_change_validates_before_sending(make_client: ClientFactory) -> None:
    transport, seen = mock(lambda r: answer(200, {"code": 1, "result": "1"}))
    client = make_client(transport=transport)
    with pytest.raises(ValueError):
        await client.change("1", "ZOOM", 1)
    with pytest.raises(ValueError):
        await client.change("1", "UPSCALE", 5)
    assert seen == []


async def test_picreader_all_returns_extra_ids(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client)
    described = await client.describe(PNG)
    sim.finish(described.task_id)
    result = await client.action(described.task_id, "MJ::Job::PicReader::all")
    assert len(result.extra_ids) == 3
    assert {result.task_id, *result.extra_ids} <= set(sim.tasks)


@pytest.mark.parametrize("flavor", ["trueai", "relay"])
async def test_forced_queue_answer_gives_queue_position(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str
) -> None:
    sim, client = await pair(make_sim, make_client, flavor)
    sim.next_submit_code(22, properties={"numberOfQueues": 2})
    result = await client.imagine("busy day")
    assert result.code == (22 if flavor == "trueai" else 1)  # the relay rewrites 22 -> 1
    assert result.queue_position == 2


# ---- error shapes from the simulator -------------------------------------------------------------


async def test_banned_prompt_names_the_word(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai")
    with pytest.raises(BannedPrompt) as caught:
        await client.imagine("a nude statue")
    assert caught.value.word == "nude" and caught.value.code == 24
    assert sim.tasks == {}


async def test_banned_prompt_through_relay_has_no_word(make_sim: SimFactory, make_client: ClientFactory) -> None:
    _, client = await pair(make_sim, make_client, "relay")
    with pytest.raises(BannedPrompt) as caught:
        await client.imagine("a nude statue")
    assert caught.value.word is None and caught.value.status == 400


@pytest.mark.parametrize(
    ("flavor", "code", "description", "expected"),
    [
        ("basic", 23, None, QueueFull),
        ("trueai", 9, "提交失败，队列已满，请稍后重试", QueueFull),
        ("trueai", 9, "系统异常", UpstreamError),
        ("relay", 30, None, QueueFull),
        ("relay", 4, "quota_not_enough", QuotaExhausted),
        ("trueai", 4, "今日绘图次数已达上限", QuotaExhausted),
        ("trueai", 4, "prompt不能为空", InvalidRequest),
        ("trueai", 3, "关联任务不存在或已失效", TaskNotFound),
        ("relay", 5, "do_request_failed", TransientError),
        ("basic", 3, "无可用的账号实例", UpstreamError),
    ],
)
async def test_forced_submit_codes_map_to_typed_errors(
    make_sim: SimFactory,
    make_client: ClientFactory,
    flavor: str,
    code: int,
    description: str | None,
    expected: type[Exception],
) -> None:
    sim, client = await pair(make_sim, make_client, flavor)
    sim.next_submit_code(code, description)
    with pytest.raises(expected) as caught:
        await client.imagine("anything")
    assert type(caught.value) is expected
    assert caught.value.code == code
    assert sim.tasks == {}
    if description:
        assert caught.value.detail == description


async def test_relay_code_30_is_http_429(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    sim.next_submit_code(30)
    with pytest.raises(QueueFull) as caught:
        await client.imagine("x")
    assert caught.value.status == 429 and "负载已饱和" in caught.value.detail


@pytest.mark.parametrize(("flavor", "status"), [("trueai", 404), ("relay", 400), ("basic", 200)])
async def test_action_or_change_on_unknown_parent_is_task_not_found(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str, status: int
) -> None:
    _, client = await pair(make_sim, make_client, flavor)
    with pytest.raises(TaskNotFound) as caught:
        if flavor == "basic":
            await client.change("1234567890123456", "UPSCALE", 1)
        else:
            await client.action("1234567890123456", "MJ::JOB::upsample::1::h")
    assert caught.value.status == status


@pytest.mark.parametrize("flavor", ["trueai", "relay"])
async def test_action_on_unfinished_parent_is_invalid(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str
) -> None:
    _, client = await pair(make_sim, make_client, flavor)
    result = await client.imagine("slow")
    with pytest.raises(InvalidRequest):
        await client.action(result.task_id, "MJ::JOB::upsample::1::h")


@pytest.mark.parametrize(
    ("flavor", "custom_id", "detail"),
    [
        ("relay", "MJ::Job::PicReader::1", "unknown_action:MJ::Job::PicReader::1"),
        ("relay", "MJ::BOOKMARK::{h}", "unknown_action:MJ::BOOKMARK::"),
        ("trueai", "MJ::BOOKMARK::{h}", "未知的 Action 类型"),
        ("trueai", "MJ::Job::PromptAnalyzer::1", "未知的 Action 类型"),
    ],
)
async def test_unsupported_buttons(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str, custom_id: str, detail: str
) -> None:
    sim, client = await pair(make_sim, make_client, flavor)
    parent = await finished_task(sim, client)
    with pytest.raises(UnsupportedAction) as caught:
        await client.action(parent, custom_id.format(h=sim.tasks[parent].hash))
    assert caught.value.detail.startswith(detail)
    assert caught.value.code == 4


@pytest.mark.parametrize(
    ("flavor", "call"),
    [
        ("basic", "shorten"),
        ("basic", "action"),
        ("basic", "modal"),
        ("basic", "swap_face"),
        ("trueai", "change"),
    ],
)
async def test_missing_endpoints_are_unsupported(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str, call: str
) -> None:
    _, client = await pair(make_sim, make_client, flavor)
    calls = {
        "shorten": lambda: client.shorten("x"),
        "action": lambda: client.action("1", "MJ::JOB::upsample::1::h"),
        "modal": lambda: client.modal("1", "x"),
        "swap_face": lambda: client.swap_face(PNG, OTHER_PNG),
        "change": lambda: client.change("1", "UPSCALE", 1),
    }
    with pytest.raises(UnsupportedAction) as caught:
        await calls[call]()
    assert caught.value.status == 404


async def test_trueai_daily_limit_body_is_quota_exhausted(make_client: ClientFactory) -> None:
    body = {"success": False, "code": -1, "message": "今日绘图次数已达上限", "timestamp": "638"}
    transport, _ = mock(lambda r: answer(200, body))
    with pytest.raises(QuotaExhausted) as caught:
        await make_client(transport=transport).imagine("x")
    assert caught.value.detail == "今日绘图次数已达上限"


# ---- exact byte-level shapes (MockTransport) -----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "expected", "detail"),
    [
        (401, "Authorization header missing.", None, Unauthorized, "Authorization header missing."),
        (401, "账号已禁用", None, Unauthorized, "账号已禁用"),
        (403, "", None, Unauthorized, "HTTP 403"),
        (401, b"", None, Unauthorized, "HTTP 401"),
        (
            401,
            {"error": {"message": "无效的令牌 (request id: 1)", "type": "new_api_error", "code": ""}},
            None,
            Unauthorized,
            "无效的令牌 (request id: 1)",
        ),
        (
            403,
            {"error": {"message": "该令牌额度已用尽", "type": "new_api_error", "code": ""}},
            None,
            Unauthorized,
            "该令牌额度已用尽",
        ),
        (429, b"", {"Retry-After": "7"}, QueueFull, "HTTP 429"),
        (200, {"success": False, "code": -1, "message": "并发数已达上限"}, None, QueueFull, "并发数已达上限"),
        (200, {"success": False, "code": -1, "message": "账号已被临时封锁"}, None, UpstreamError, "账号已被临时封锁"),
        (500, {"success": False, "code": -1, "message": "操作失败"}, None, TransientError, "操作失败"),
        (
            502,
            "<html><head><title>502 Bad Gateway</title></head></html>",
            {"Content-Type": "text/html"},
            TransientError,
            "HTTP 502",
        ),
        (503, b"", {"Retry-After": "2"}, TransientError, "HTTP 503"),
        (200, "<!DOCTYPE html><html>Just a moment...</html>", None, TransientError, "not JSON"),
        (200, '{"code": 1, "descr', None, TransientError, "not JSON"),
        (200, b"", None, TransientError, "empty answer"),
        (200, {"code": 1, "description": "ok", "result": None}, None, UpstreamError, "ok"),
        (200, {"weird": True}, None, UpstreamError, "without a result code"),
        (
            400,
            {"description": "task_not_found ", "type": "upstream_error", "code": 4},
            None,
            TaskNotFound,
            "task_not_found",
        ),
        (
            400,
            {"description": "task_status_not_success ", "type": "upstream_error", "code": 4},
            None,
            InvalidRequest,
            "task_status_not_success",
        ),
        (
            400,
            {"description": "unknown_action:MJ::BOOKMARK::h ", "type": "upstream_error", "code": 4},
            None,
            UnsupportedAction,
            "unknown_action:MJ::BOOKMARK::h",
        ),
        (200, {"code": 4, "description": "服务不支持", "result": None}, None, UnsupportedAction, "服务不支持"),
        (
            404,
            {"code": 3, "description": "关联任务不存在或已失效", "result": None},
            None,
            TaskNotFound,
            "关联任务不存在或已失效",
        ),
        (
            404,
            {"timestamp": "t", "status": 404, "error": "Not Found", "path": "/mj/submit/imagine"},
            None,
            UnsupportedAction,
            "Not Found",
        ),
        (405, b"", None, UnsupportedAction, "endpoint not available"),
        (413, "<html>413 Request Entity Too Large</html>", None, InvalidRequest, "too large"),
        (400, "bad request", None, InvalidRequest, "bad request"),
        (418, {"code": 77, "description": "teapot"}, None, UpstreamError, "teapot"),
    ],
)
async def test_answer_shapes_map_to_typed_errors(
    make_client: ClientFactory,
    status: int,
    body: Any,
    headers: dict[str, str] | None,
    expected: type[Exception],
    detail: str,
) -> None:
    transport, seen = mock(lambda r: answer(status, body, headers))
    client = make_client(transport=transport)
    with pytest.raises(expected) as caught:
        await client.imagine("x")
    assert type(caught.value) is expected
    assert detail in caught.value.detail
    assert "<html" not in caught.value.detail
    assert caught.value.status == status or status == 200
    assert len(seen) == 1  # a submit is never retried


async def test_retry_after_header_is_kept_on_queue_full(make_client: ClientFactory) -> None:
    transport, _ = mock(lambda r: answer(429, b"", {"Retry-After": "7"}))
    with pytest.raises(QueueFull) as caught:
        await make_client(transport=transport).imagine("x")
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("result", "task_id", "extra"),
    [
        (1320098173412546, "1320098173412546", ()),
        ("1748600000000111,1748600000200222", "1748600000000111", ("1748600000200222",)),
        (["1", "2", "3"], "1", ("2", "3")),
    ],
)
async def test_submit_result_ids_are_strings(
    make_client: ClientFactory, result: Any, task_id: str, extra: tuple[str, ...]
) -> None:
    transport, _ = mock(lambda r: answer(200, {"code": 1, "description": "成功", "result": result}))
    submitted = await make_client(transport=transport).action("9", "MJ::Job::PicReader::all")
    assert (submitted.task_id, submitted.extra_ids) == (task_id, extra)


def test_raise_for_answer_returns_body_of_success() -> None:
    response = httpx.Response(200, json={"code": 22, "result": "5", "properties": {"numberOfQueues": 3}})
    assert _raise_for_answer(response)["properties"]["numberOfQueues"] == 3


# ---- retries -------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["500", "502", "timeout", "garbage", "truncated", "reset", "429"])
@pytest.mark.parametrize("flavor", ["relay", "trueai"])
async def test_reads_are_retried_then_succeed(
    make_sim: SimFactory, make_client: ClientFactory, kind: str, flavor: str
) -> None:
    sim, client = await pair(make_sim, make_client, flavor)
    submitted = await client.imagine("a quiet lake")
    sim.fail_next(kind, path_prefix="/mj/task/")
    task = await client.fetch(submitted.task_id)
    assert task is not None and task.id == submitted.task_id
    fetches = [r for r in sim.requests if r.path.endswith("/fetch")]
    assert len(fetches) == 2


async def test_list_by_ids_is_retried(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "basic")
    submitted = await client.imagine("a quiet lake")
    sim.fail_next("500", count=2, path_prefix="/mj/task/list-by-condition")
    tasks = await client.list_by_ids([submitted.task_id])
    assert [t.id for t in tasks] == [submitted.task_id]
    assert len([r for r in sim.requests if r.path.endswith("list-by-condition")]) == 3


async def test_reads_give_up_after_read_retries(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai", read_retries=2)
    sim.fail_next("502", count=10)
    with pytest.raises(TransientError) as caught:
        await client.fetch("1")
    assert caught.value.status == 502
    assert len(sim.requests) == 3


async def test_retry_after_is_honoured_and_capped(make_client: ClientFactory) -> None:
    calls: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return answer(429, b"", {"Retry-After": "0.3"})
        if len(calls) == 2:
            return answer(503, b"", {"Retry-After": "3600"})
        return answer(204)

    transport, _ = mock(handler)
    client = make_client(transport=transport, max_retry_after=0.4)
    started = time.monotonic()
    assert await client.fetch("1") is None
    assert calls[1] - calls[0] >= 0.29  # waited as told
    assert time.monotonic() - started < 2.0  # the hour-long Retry-After was capped


@pytest.mark.parametrize("kind", ["500", "502", "timeout", "garbage", "truncated", "reset", "429"])
async def test_submits_are_never_retried(make_sim: SimFactory, make_client: ClientFactory, kind: str) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    sim.fail_next(kind)
    expected = QueueFull if kind == "429" else TransientError
    with pytest.raises(expected):
        await client.imagine("charged once")
    assert len(sim.submits("imagine")) == 1
    if kind in ("timeout", "truncated"):
        # The server did start the task: a blind retry would have started (and charged) a second one.
        assert len(sim.tasks) == 1


async def test_connect_error_on_submit_is_not_retried_but_read_is(make_client: ClientFactory) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport, seen = mock(handler)
    client = make_client(transport=transport, read_retries=2)
    with pytest.raises(TransientError, match="connect"):
        await client.imagine("x")
    assert len(seen) == 1
    with pytest.raises(TransientError):
        await client.fetch("1")
    assert len(seen) == 1 + 3


async def test_closed_port_is_transient(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim = await make_sim(flavor="relay")
    base_url = sim.base_url
    await sim.stop()
    with pytest.raises(TransientError):
        await make_client(base_url, read_retries=0).fetch("1")


# ---- reads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flavor", ["relay", "trueai", "basic"])
async def test_fetch_unknown_task_is_none(make_sim: SimFactory, make_client: ClientFactory, flavor: str) -> None:
    sim, client = await pair(make_sim, make_client, flavor)
    assert await client.fetch("1748339029401828") is None
    assert len(sim.requests) == 1  # "not found" is an answer, not a failure to retry


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (204, b""),
        (200, b""),
        (200, b"null"),
        (400, {"description": "task_no_found ", "type": "upstream_error", "code": 4}),
        (404, {"code": 3, "description": "任务不存在", "result": None}),
    ],
)
async def test_fetch_not_found_shapes(make_client: ClientFactory, status: int, body: Any) -> None:
    transport, seen = mock(lambda r: answer(status, body))
    assert await make_client(transport=transport).fetch("1") is None
    assert len(seen) == 1


async def test_fetch_walks_the_lifecycle(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    submitted = await client.imagine("a lighthouse at dusk")
    seen = []
    for _ in range(6):
        task = await client.fetch(submitted.task_id)
        assert task is not None
        seen.append((task.status, task.progress))
    assert seen == [
        ("", 0),  # the relay's own row right after submit
        ("SUBMITTED", 0),
        ("IN_PROGRESS", 25),
        ("IN_PROGRESS", 50),
        ("IN_PROGRESS", 75),
        ("SUCCESS", 100),
    ]
    assert task.image_url == f"{sim.base_url}/mj/image/{submitted.task_id}"
    assert len(task.buttons) == 9


async def test_prompt_with_fail_ends_in_failure(make_sim: SimFactory, make_client: ClientFactory) -> None:
    _, client = await pair(make_sim, make_client, "trueai")
    submitted = await client.imagine("please fail now")
    statuses = [getattr(await client.fetch(submitted.task_id), "status", None) for _ in range(3)]
    assert statuses == ["NOT_START", "SUBMITTED", "FAILURE"]
    task = await client.fetch(submitted.task_id)
    assert task is not None and task.fail_reason.startswith("Invalid parameter")


async def test_list_by_ids_returns_known_tasks_only(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    ids = [(await client.imagine(f"picture {n}")).task_id for n in range(3)]
    tasks = await client.list_by_ids([*ids, "1111111111111111"])
    assert sorted(t.id for t in tasks) == sorted(ids)
    assert sim.requests[-1].json == {"ids": [*ids, "1111111111111111"]}


async def test_list_by_ids_with_no_ids_makes_no_request(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client)
    assert await client.list_by_ids([]) == []
    assert sim.requests == []


@pytest.mark.parametrize("flavor", ["relay", "trueai", "basic"])
async def test_list_by_ids_unavailable_is_unsupported(
    make_sim: SimFactory, make_client: ClientFactory, flavor: str
) -> None:
    sim, client = await pair(make_sim, make_client, flavor, list_by_condition_enabled=False)
    with pytest.raises(UnsupportedAction):
        await client.list_by_ids(["1"])
    assert len(sim.requests) == 1  # not retried: the caller falls back to fetch


async def test_list_by_ids_405_is_unsupported(make_client: ClientFactory) -> None:
    transport, _ = mock(lambda r: answer(405, b""))
    with pytest.raises(UnsupportedAction):
        await make_client(transport=transport).list_by_ids(["1"])


async def test_list_by_ids_skips_entries_that_are_not_tasks(make_client: ClientFactory) -> None:
    body = [{"id": 1748339029401828, "status": "SUCCESS"}, "junk", {"no": "id"}, 5, None]
    transport, _ = mock(lambda r: answer(200, body))
    tasks = await make_client(transport=transport).list_by_ids(["1748339029401828"])
    assert [t.id for t in tasks] == ["1748339029401828"]


async def test_list_by_ids_rejects_a_non_list(make_client: ClientFactory) -> None:
    transport, _ = mock(lambda r: answer(200, {"hello": "world"}))
    with pytest.raises(UpstreamError, match="list"):
        await make_client(transport=transport).list_by_ids(["1"])


async def test_numeric_ids_become_strings(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai", numeric_ids=True)
    submitted = await client.imagine("numbers")
    raw = [r for r in sim.requests if r.path.endswith("imagine")]
    assert raw and submitted.task_id.isdigit() and len(submitted.task_id) == 16
    fetched = await client.fetch(submitted.task_id)
    listed = await client.list_by_ids([submitted.task_id])
    assert isinstance(sim.task_json(submitted.task_id)["id"], int)
    assert fetched is not None and fetched.id == submitted.task_id
    assert [t.id for t in listed] == [submitted.task_id]


async def test_image_seed(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai")
    task_id = await finished_task(sim, client)
    seed = await client.image_seed(task_id)
    assert seed.isdigit()
    with pytest.raises(TaskNotFound):
        await client.image_seed("1111111111111111")


async def test_image_seed_is_unsupported_on_basic(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "basic")
    task_id = await finished_task(sim, client)
    with pytest.raises(UnsupportedAction):
        await client.image_seed(task_id)


async def test_check_passes_with_the_right_key(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    assert await client.check() is None
    assert sim.requests[-1].path == "/mj/task/list-by-condition"
    assert sim.requests[-1].json == {"ids": ["0"]}


async def test_check_raises_unauthorized_for_a_wrong_key(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim = await make_sim(flavor="relay")
    with pytest.raises(Unauthorized):
        await make_client(sim.base_url, api_key="sk-wrong").check()


async def test_check_falls_back_to_fetch_without_list(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai", list_by_condition_enabled=False)
    await client.check()
    assert [r.path for r in sim.requests] == ["/mj/task/list-by-condition", "/mj/task/0/fetch"]


async def test_task_id_is_path_quoted(make_client: ClientFactory) -> None:
    transport, seen = mock(lambda r: answer(204))
    await make_client(transport=transport).fetch("../../admin?x=1")
    assert seen[0].url.raw_path == b"/mj/task/..%2F..%2Fadmin%3Fx%3D1/fetch"
    assert seen[0].url.host == "upstream.test"


# ---- the simulator's images (what the bot downloads without a key) -------------------------------


async def test_simulator_serves_real_pngs_without_auth(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay")
    task_id = await finished_task(sim, client)
    task = await client.fetch(task_id)
    assert task is not None and task.image_url
    async with httpx.AsyncClient() as plain:
        final = await plain.get(task.image_url)
        preview = await plain.get(task.image_url + "?preview=1")
    assert final.status_code == 200 and final.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert final.headers["content-type"] == "image/png"
    width, height = int.from_bytes(final.content[16:20], "big"), int.from_bytes(final.content[20:24], "big")
    assert (width, height) == (512, 512)
    assert int.from_bytes(preview.content[16:20], "big") == 256
    assert "authorization" not in sim.requests[-1].headers


async def test_simulator_noise_knob_makes_large_final_images(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai", image_size=700, image_noise=True)
    task_id = await finished_task(sim, client)
    async with httpx.AsyncClient() as plain:
        final = await plain.get(f"{sim.base_url}/mj/image/{task_id}")
    assert final.content.startswith(b"\x89PNG") and len(final.content) > 700 * 700 * 3 * 0.95


async def test_simulator_hold_and_release(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai")
    submitted = await client.imagine("patience")
    sim.hold(submitted.task_id)
    held = [getattr(await client.fetch(submitted.task_id), "status", None) for _ in range(3)]
    sim.release(submitted.task_id)
    await client.fetch(submitted.task_id)
    after = await client.fetch(submitted.task_id)
    assert held == ["NOT_START"] * 3
    assert after is not None and after.status == "SUBMITTED"


async def test_simulator_time_clock_advances_without_reads(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "relay", clock="time", step_seconds=0.02, progress_steps=1)
    submitted = await client.imagine("the clock is ticking")
    await eventually(lambda: sim.tasks[submitted.task_id].status == "SUCCESS")
    task = await client.fetch(submitted.task_id)
    assert task is not None and task.status == "SUCCESS" and len(task.buttons) == 9


async def test_simulator_posts_notify_hooks_on_trueai(make_sim: SimFactory, make_client: ClientFactory) -> None:
    sim, client = await pair(make_sim, make_client, "trueai")
    hook = f"{sim.base_url}/hook"  # the simulator records its own hook deliveries as requests
    submitted = await client.imagine("push me", notify_hook=hook)
    sim.finish(submitted.task_id)
    await eventually(lambda: bool(sim.hook_deliveries))
    url, payload = sim.hook_deliveries[0]
    assert url == hook and payload["id"] == submitted.task_id and payload["status"] == "SUCCESS"
    delivered = [r for r in sim.requests if r.path == "/hook"]
    assert delivered and "authorization" not in delivered[0].headers


# ---- secrets -------------------------------------------------------------------------------------


async def test_key_never_appears_in_errors_or_logs(
    make_sim: SimFactory, make_client: ClientFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    sim = await make_sim(flavor="trueai", api_key="another-key")
    wrong = make_client(sim.base_url, auth_style="raw")
    for call in (wrong.imagine("x"), wrong.fetch("1"), wrong.check()):
        with pytest.raises(Unauthorized) as caught:
            await call
        texts += [str(caught.value), repr(caught.value), json.dumps(caught.value.params, default=str)]

    sim2 = await make_sim(flavor="relay")
    client = make_client(sim2.base_url, read_retries=1)
    for kind in ("500", "timeout", "garbage", "reset"):
        sim2.fail_next(kind, count=10)
        with pytest.raises(TransientError) as caught:
            await client.fetch("1")
        texts += [str(caught.value), repr(caught.value), json.dumps(caught.value.params, default=str)]
        sim2._faults.clear()

    # A server that echoes the key back in its error text.
    echo = {"error": {"message": f"invalid token {KEY}", "type": "new_api_error", "code": ""}}
    transport, _ = mock(lambda r: answer(401, echo))
    with pytest.raises(Unauthorized) as caught:
        await make_client(transport=transport).imagine("x")
    assert "***" in caught.value.detail
    texts += [str(caught.value), repr(caught.value), json.dumps(caught.value.params, default=str)]

    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(wrong), repr(wrong.config)]
    assert caplog.records, "expected the retries to be logged"
    assert not [text for text in texts if KEY in text]
