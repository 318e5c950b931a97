"""Issue 2: what the user sees for each API answer, and the server kinds (relay, trueai, basic)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from bot.upstream.simulator import SimulatedProxy
from tests.conftest import API_KEY, BotRunner, is_done
from tests.fakes.discord import FakeDiscord, FakeMessage


async def imagine(fake: FakeDiscord, prompt: str) -> FakeMessage:
    handle = await fake.slash("imagine", user=fake.member, channel=fake.channel, options={"prompt": prompt})
    await handle.response()
    return await fake.wait_for(
        lambda: (
            handle.original
            if handle.original and not handle.original.loading
            else next((m for m in handle.followups if m.ephemeral), None)
        ),
        timeout=10,
    )


def custom_id(message: FakeMessage, label: str) -> str:
    return next(r.custom_id for r in message.buttons if label in (r.label, r.emoji) and r.custom_id)


@asynccontextmanager
async def other_proxy(**options: Any) -> AsyncIterator[SimulatedProxy]:
    async with SimulatedProxy(clock="reads", progress_steps=2, **options) as proxy:
        yield proxy


SUBMIT_ERRORS = [
    # A relay answers in its own error shape, without properties: the word is not known.
    ("banned word", {"code": 24, "description": "可能包含敏感词", "properties": {"bannedWord": "gore"}}, "banned word"),
    ("queue full (basic 23)", {"code": 23, "description": "队列已满，请稍后尝试"}, "busy"),
    ("queue full (trueai 9)", {"code": 9, "description": "提交失败，队列已满，请稍后重试"}, "busy"),
    ("validation", {"code": 4, "description": "prompt_is_required"}, "prompt_is_required"),
    ("no account", {"code": 3, "description": "无可用的账号实例"}, "无可用的账号实例"),
]


@pytest.mark.parametrize(("case", "answer", "expected"), SUBMIT_ERRORS, ids=[c[0] for c in SUBMIT_ERRORS])
async def test_refused_submit_is_a_private_message_and_no_task(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, case: str, answer: dict[str, Any], expected: str
) -> None:
    bot = await runner.start()
    mj.next_submit_code(**answer)
    notice = await imagine(discord_fake, "a calm lake")
    assert notice.ephemeral and expected in notice.text(), notice.text()
    assert [m for m in discord_fake.channel_messages(discord_fake.channel) if not m.ephemeral] == []
    assert await bot.store.count_tasks() == 0


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("401", "rejected the bot's API key"),
        ("500", "did not answer properly"),
        ("garbage", "did not answer properly"),
        ("429", "busy"),
    ],
)
async def test_transport_faults_on_submit_are_explained_and_never_resent(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, fault: str, expected: str
) -> None:
    await runner.start()
    mj.fail_next(fault, path_prefix="/mj/submit")
    notice = await imagine(discord_fake, "a calm lake")
    assert notice.ephemeral and expected in notice.text(), notice.text()
    assert len(mj.submits("/submit/imagine")) == 1  # a submit is never re-sent blindly


async def test_banned_word_is_named_when_the_server_says_which(runner: BotRunner, discord_fake: FakeDiscord) -> None:
    async with other_proxy(flavor="trueai", api_key=API_KEY, banned_words=("gore",)) as proxy:
        await runner.start(api_base=proxy.base_url, api_auth_style="raw")
        notice = await imagine(discord_fake, "a gore scene")
        assert notice.ephemeral and "“gore”" in notice.text(), notice.text()
        assert proxy.tasks == {}


async def test_dead_key_is_reported_without_echoing_it(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start(api_key="sk-wrong-key-000000")
    notice = await imagine(discord_fake, "a calm lake")
    assert "API key" in notice.text()
    assert all("sk-wrong-key" not in m.text() for m in discord_fake.messages.values())


async def test_failure_reason_is_shown_in_plain_words(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start()
    message = await imagine(discord_fake, "a calm lake")
    task_id = next(iter(mj.tasks))
    mj.fail(task_id, "[Banned prompt detected] Sorry! Our AI moderator thinks this prompt is probably against")
    await discord_fake.wait_for(lambda: "did not finish" in message.text(), timeout=10)
    assert "content rules" in message.text()
    assert [r.emoji for r in message.buttons] == ["🗑️"]  # no Midjourney buttons on a failure


async def test_remix_answer_opens_an_edit_prompt_button_then_the_modal(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    async with other_proxy(flavor="relay", api_key=API_KEY, remix=True) as proxy:
        await runner.start(api_base=proxy.base_url)
        grid = await imagine(discord_fake, "a paper boat")
        await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
        click = await discord_fake.click(grid, custom_id(grid, "V2"), user=discord_fake.member)
        await click.response()
        prompt_offer = await discord_fake.wait_for_message(lambda m: m.ephemeral and bool(m.buttons))
        assert "confirm the prompt" in prompt_offer.text()
        open_click = await discord_fake.click(
            prompt_offer, prompt_offer.buttons[0].custom_id or "", user=discord_fake.member
        )
        await open_click.response()
        assert open_click.modal is not None
        assert "a paper boat" in (open_click.modal.inputs[0].value or "")
        await open_click.submit_modal({"Prompt": "a paper boat on fire"})
        modal_calls = await discord_fake.wait_for(lambda: proxy.submits("/submit/modal"), timeout=10)
        assert modal_calls[0].json["prompt"] == "a paper boat on fire"
        variation = await discord_fake.wait_for_message(lambda m: m.reply_to is not None)
        await discord_fake.wait_for(lambda: is_done(variation), timeout=15)


async def test_basic_server_gets_change_buttons(runner: BotRunner, discord_fake: FakeDiscord) -> None:
    async with other_proxy(flavor="basic", api_key="secret", auth_style="mj-api-secret") as proxy:
        await runner.start(api_base=proxy.base_url, api_key="secret", api_auth_style="mj-api-secret")
        grid = await imagine(discord_fake, "an old map")
        await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
        labels = [r.label or r.emoji for r in grid.buttons]
        assert labels == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4", "ℹ️", "🗑️"]
        await (await discord_fake.click(grid, custom_id(grid, "U3"), user=discord_fake.member)).response()
        change = await discord_fake.wait_for(lambda: proxy.submits("/submit/change"), timeout=10)
        assert change[0].json["action"] == "UPSCALE" and change[0].json["index"] == 3
        assert proxy.submits("/submit/imagine")[0].headers["mj-api-secret"] == "secret"


async def test_server_without_list_by_condition_is_polled_per_task(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    async with other_proxy(flavor="trueai", api_key=API_KEY, list_by_condition_enabled=False) as proxy:
        await runner.start(api_base=proxy.base_url, api_auth_style="raw")
        grid = await imagine(discord_fake, "a windmill")
        await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
        assert any(r.path.endswith("/fetch") for r in proxy.requests)


async def test_result_over_the_upload_limit_is_linked(runner: BotRunner, discord_fake: FakeDiscord) -> None:
    async with other_proxy(flavor="relay", api_key=API_KEY, image_noise=True, image_size=300) as proxy:
        await runner.start(api_base=proxy.base_url, max_upload_bytes=64 * 1024)
        grid = await imagine(discord_fake, "static noise")
        await discord_fake.wait_for(lambda: "here you go" in grid.content, timeout=15)
        assert grid.attachments == []
        assert grid.embed is not None and grid.embed["image"]["url"].startswith(proxy.base_url)


async def test_task_that_never_finishes_times_out_with_a_clear_message(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start(task_timeout=1.0)
    message = await imagine(discord_fake, "a slow snail")
    mj.hold(next(iter(mj.tasks)))
    await discord_fake.wait_for(lambda: "stopped waiting" in message.text(), timeout=10)
