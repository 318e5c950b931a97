"""Issue 17 item 1: a submit whose answer is lost (the connection drops after the server accepted it,
or the answer times out) may have been charged. The member is told the outcome is unknown; the bot
looks for the task by the unique `state` it sent, adopts it when found, and a Retry warns first."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest

from bot.errors import SubmitOutcomeUnknown, TransientError
from bot.upstream.client import MJClient, UpstreamConfig
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import API_KEY, BotRunner, is_done, log_text
from tests.e2e.test_api_cases import other_proxy
from tests.e2e.test_ready import editor_link, finished_upscale, http, web_settings
from tests.fakes.discord import FakeDiscord, FakeMessage


@pytest.fixture
def bot_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.INFO)
    yield caplog


@pytest.fixture
async def trueai() -> AsyncIterator[SimulatedProxy]:
    async with other_proxy(flavor="trueai", api_key=API_KEY, auth_style="raw") as proxy:
        yield proxy


async def imagine(fake: FakeDiscord, prompt: str) -> FakeMessage:
    """The command's visible answer: the task's message, or the private notice that replaced it."""
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


def no_errors(caplog: pytest.LogCaptureFixture) -> bool:
    return not [r for r in caplog.records if r.levelno >= logging.ERROR]


# ---- the client: a lost answer is not an ordinary failure ------------------------------------------


@pytest.mark.parametrize("fault", ["lost", "timeout"])
async def test_a_submit_whose_answer_is_lost_is_an_unknown_outcome(fault: str) -> None:
    async with SimulatedProxy(flavor="relay", api_key=API_KEY, timeout_delay=1.0) as proxy:
        config = UpstreamConfig(base_url=proxy.base_url, api_key=API_KEY, timeout=0.3)
        async with MJClient(config) as client:
            proxy.fail_next(fault, path_prefix="/mj/submit")
            with pytest.raises(SubmitOutcomeUnknown):
                await client.imagine("charged once", state="abc")
            assert len(proxy.submits("imagine")) == 1  # never re-sent
            assert [task.state for task in proxy.tasks.values()] == ["abc"]  # the server did make it


async def test_a_refused_connection_is_not_an_unknown_outcome() -> None:
    proxy = SimulatedProxy(flavor="relay", api_key=API_KEY)
    base_url = await proxy.start()
    await proxy.stop()  # nothing listens: the request never left
    async with MJClient(UpstreamConfig(base_url=base_url, api_key=API_KEY)) as client:
        with pytest.raises(TransientError) as caught:
            await client.imagine("never sent")
    assert not isinstance(caught.value, SubmitOutcomeUnknown)


async def test_recent_tasks_find_a_task_by_its_state(trueai: SimulatedProxy) -> None:
    async with MJClient(UpstreamConfig(base_url=trueai.base_url, api_key=API_KEY, auth_style="raw")) as client:
        await client.imagine("first", state="s1")
        await client.imagine("second", state="s2")
        listed = await client.recent_tasks()
    assert [task.state for task in listed] == ["s2", "s1"]  # newest first


# ---- the bot, end to end ---------------------------------------------------------------------------


async def test_a_lost_answer_on_a_listing_server_is_found_and_tracked_without_a_second_submit(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    await runner.start(api_base=trueai.base_url, api_auth_style="raw")
    trueai.fail_next("lost", path_prefix="/mj/submit")
    message = await imagine(discord_fake, "a lighthouse in a storm")
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    assert not message.ephemeral
    assert len(trueai.submits("/submit/imagine")) == 1  # found, not submitted (and charged) again
    sent_state = trueai.submits("/submit/imagine")[0].json["state"]
    assert sent_state and next(iter(trueai.tasks.values())).state == sent_state
    assert "lost its answer" in log_text(bot_logs) and no_errors(bot_logs)


async def test_a_task_that_turns_up_later_is_posted_in_the_channel(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    bot = await runner.start(api_base=trueai.base_url, api_auth_style="raw")
    trueai.fail_next("lost", path_prefix="/mj/submit")
    trueai.fail_next("500", count=4, path_prefix="/mj/task/list")  # the first look fails (with its retries)
    notice = await imagine(discord_fake, "a fox in the snow")
    assert notice.ephemeral and "looking for it" in notice.text(), notice.text()
    assert "Retry" in [b.label for b in notice.buttons]
    # The next look finds it: the tracker posts it as a fresh message in the channel.
    posted = await discord_fake.wait_for_message(lambda m: not m.ephemeral and is_done(m), timeout=20)
    assert posted.channel_id == discord_fake.channel.id
    assert len(trueai.submits("/submit/imagine")) == 1
    assert await bot.store.count_tasks() == 1
    assert no_errors(bot_logs)


async def test_a_lost_answer_on_a_relay_says_so_and_retries_only_after_a_warning(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    bot = await runner.start()
    mj.fail_next("lost", path_prefix="/mj/submit")
    notice = await imagine(discord_fake, "a quiet harbour")
    text = notice.text()
    assert notice.ephemeral and "cannot be searched" in text and "charged twice" in text, text
    assert [m for m in discord_fake.channel_messages(discord_fake.channel) if not m.ephemeral] == []
    assert await bot.store.count_tasks() == 0
    retry = next(b.custom_id for b in notice.buttons if b.label == "Retry")
    assert retry

    stranger = discord_fake.add_member("stranger")
    refused = await discord_fake.click(notice, retry, user=stranger, force=True)  # a forged click
    assert "Only the person" in (await refused.wait_original()).text()

    ask = await discord_fake.click(notice, retry, user=discord_fake.member)
    confirm = await ask.wait_original()
    assert confirm.ephemeral and "charged twice" in confirm.text()
    assert len(mj.submits("/submit/imagine")) == 1  # nothing re-sent before the member confirms

    yes = next(b.custom_id for b in confirm.buttons if b.label == "Yes, submit again")
    await (await discord_fake.click(confirm, yes or "", user=discord_fake.member)).response()
    again = await discord_fake.wait_for(
        lambda: len(mj.submits("/submit/imagine")) == 2 and mj.submits("/submit/imagine")
    )
    assert again[1].json["prompt"] == "a quiet harbour"
    assert again[0].json["state"] != again[1].json["state"]
    posted = await discord_fake.wait_for_message(lambda m: not m.ephemeral and "a quiet harbour" in m.text())
    await discord_fake.wait_for(lambda: is_done(posted), timeout=15)
    assert "lost its answer" in log_text(bot_logs) and no_errors(bot_logs)


async def test_a_timed_out_submit_takes_the_same_path(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await runner.start(api_base=trueai.base_url, api_auth_style="raw", api_timeout=0.3)
    trueai.timeout_delay = 1.0
    trueai.fail_next("timeout", path_prefix="/mj/submit")
    message = await imagine(discord_fake, "a slow answer")
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    assert len(trueai.submits("/submit/imagine")) == 1


async def test_the_region_editor_keeps_its_link_used_when_the_answer_is_lost(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, bot_logs: pytest.LogCaptureFixture
) -> None:
    await runner.start(**web_settings())
    upscale = await finished_upscale(discord_fake, "a blue kite")
    _, url = await editor_link(discord_fake, upscale)
    selection = {"prompt": "a blue kite", "shapes": [{"type": "rect", "x": 10, "y": 10, "w": 50, "h": 50}]}
    mj.fail_next("lost", path_prefix="/mj/submit/action")
    async with http() as session:
        async with session.post(url, json=selection) as answer:
            assert answer.status == 422 and "may have started" in (await answer.json())["error"]
        async with session.post(url, json=selection) as again:  # a second try could charge twice
            assert again.status == 422 and "already used" in (await again.json())["error"]
    assert len([s for s in mj.submits("/submit/action") if "Inpaint" in s.json["customId"]]) == 1
    assert no_errors(bot_logs)
