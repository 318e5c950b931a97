"""Issue 19, members' half, end to end: /video with the MP4 re-uploaded, U1-U4 and Extend on a
video, Animate on an upscale, and /edit and /retexture where the server offers them.

The real bot runs between the fake Discord and a simulated trueai server or relay; nothing of ours
is mocked. The simulator answers with the servers' real refusals (MJ_ACCOUNTS_VIDEO.md §7-§8).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import pytest
from PIL import Image

from bot.bot import MJBot
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done
from tests.e2e.test_admin import answer
from tests.fakes.discord import FakeDiscord, FakeMessage

TOKEN = "trueai-user-token-77aa88bb"


def png(color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def trueai() -> AsyncIterator[SimulatedProxy]:
    async with SimulatedProxy(
        flavor="trueai", api_key=TOKEN, clock="reads", progress_steps=2, video_buttons=True
    ) as proxy:
        for account in proxy.accounts.values():
            account["mjRemixOn"] = True  # trueai refuses video on Discord accounts with Remix off
        yield proxy


async def start_on(runner: BotRunner, proxy: SimulatedProxy, key: str = TOKEN, style: str = "raw") -> MJBot:
    return await runner.start(api_base=proxy.base_url, api_key=key, api_auth_style=style, accounts_poll_interval=0)


async def run(fake: FakeDiscord, name: str, options: dict[str, Any]) -> FakeMessage:
    handle = await fake.slash(name, user=fake.member, channel=fake.channel, options=options)
    return await handle.wait_original()


async def video(fake: FakeDiscord, **options: Any) -> FakeMessage:
    return await run(fake, "video", {"image": ("first.png", png(), "image/png"), "prompt": "waves roll in", **options})


async def refusal(fake: FakeDiscord, name: str, options: dict[str, Any]) -> str:
    """The private message a refused command ends with (its public "thinking…" is deleted)."""
    handle = await fake.slash(name, user=fake.member, channel=fake.channel, options=options)
    return (await answer(fake, handle)).text()


def button(message: FakeMessage, label: str) -> str:
    found = next((row.custom_id for row in message.buttons if label in (row.label, row.emoji)), None)
    assert found is not None, f"no {label!r} button in {[(r.label, r.emoji) for r in message.buttons]}"
    return found


async def click_for_new_message(fake: FakeDiscord, message: FakeMessage, label: str) -> FakeMessage:
    before = set(fake.messages)
    await fake.click(message, button(message, label), user=fake.member)
    return await fake.wait_for(
        lambda: next((m for i, m in fake.messages.items() if i not in before and not m.ephemeral), None),
        timeout=15,
        what=f"the message of {label}",
    )


def is_video_result(message: FakeMessage) -> bool:
    return bool(message.attachments) and message.attachments[0].filename.endswith(".mp4")


async def test_video_is_reuploaded_as_an_mp4_checked_by_its_bytes(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await start_on(runner, trueai)
    message = await video(discord_fake, motion="high", loop=True, batch=2)
    await discord_fake.wait_for(lambda: is_video_result(message) and message.buttons, timeout=15, what="the video")
    body = trueai.submits("/submit/video")[0].json
    assert body["image"].startswith("data:image/png;base64,") and body["motion"] == "high"
    assert body["loop"] is True and body["batchSize"] == 2 and body["prompt"] == "waves roll in"
    attachment = message.attachments[0]
    assert attachment.data[4:8] == b"ftyp"  # what was fetched and uploaded is the MP4 itself
    assert not (message.embed or {}).get("image")  # Discord plays the attachment; no broken embed image
    assert [r.label for r in message.buttons][:2] == ["U1", "U2"]


async def test_a_video_that_is_not_an_mp4_is_not_posted(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    """The bytes decide: a "video" link that serves something else is refused, never uploaded."""
    from bot.images import identify_media
    from bot.upstream.simulator import mp4_bytes

    assert identify_media(mp4_bytes("x")) is not None and identify_media(mp4_bytes("x")).mime == "video/mp4"  # type: ignore[union-attr]
    assert identify_media(b"\x00\x00\x00\x18ftypqt  " + b"\x00" * 64) is None  # QuickTime: not allowed
    assert identify_media(b"<html>not a video</html>" * 4) is None


async def test_video_refusals_are_clear_messages(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await start_on(runner, trueai)
    for account in trueai.accounts.values():
        account["mjRemixOn"] = False
    options = {"image": ("first.png", png(), "image/png"), "prompt": "waves roll in"}
    assert "Remix off" in await refusal(discord_fake, "video", options)
    trueai.video_enabled = False
    assert "Video is turned off" in await refusal(discord_fake, "video", options)
    for account in trueai.accounts.values():
        account["enable"] = False
    trueai.video_enabled = True
    assert "no Midjourney account that can make videos" in await refusal(discord_fake, "video", options)


async def test_u1_picks_one_video_and_extend_continues_it(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await start_on(runner, trueai)
    message = await video(discord_fake)
    await discord_fake.wait_for(lambda: is_video_result(message) and message.buttons, timeout=15, what="the video")
    picked = await click_for_new_message(discord_fake, message, "U1")
    await discord_fake.wait_for(lambda: is_video_result(picked) and picked.buttons, timeout=15, what="the pick")
    assert "MJ::JOB::video_virtual_upscale::1::" in trueai.submits("/submit/action")[0].json["customId"]
    extended = await click_for_new_message(discord_fake, picked, "Extend (High motion)")
    await discord_fake.wait_for(lambda: is_video_result(extended), timeout=15, what="the extension")
    assert "animate_high_extend" in trueai.submits("/submit/action")[1].json["customId"]


async def test_animate_on_an_upscale_makes_a_video(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await start_on(runner, trueai)
    grid = await run(discord_fake, "imagine", {"prompt": "a lighthouse"})
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    upscale = await click_for_new_message(discord_fake, grid, "U1")
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    animated = await click_for_new_message(discord_fake, upscale, "Animate (High motion)")
    await discord_fake.wait_for(lambda: is_video_result(animated), timeout=15, what="the animation")
    assert "animate_high" in trueai.submits("/submit/action")[-1].json["customId"]


async def test_extend_through_submit_video_is_one_task_while_its_label_changes(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    """trueai's extend on Discord accounts starts as UPSCALE and turns VIDEO under the same id."""
    bot = await start_on(runner, trueai)
    message = await video(discord_fake)
    await discord_fake.wait_for(lambda: is_video_result(message), timeout=15, what="the video")
    parent_id = next(iter(trueai.tasks))
    client = bot.upstreams["default"]
    result = await client.video("keep going", extend=(parent_id, 0))
    task = trueai.tasks[result.task_id]
    seen = []
    for _ in range(6):
        fetched = await client.fetch(result.task_id)
        assert fetched is not None and fetched.id == result.task_id
        seen.append(fetched.action)
    assert seen[0] == "UPSCALE" and seen[-1] == "VIDEO" and task.status == "SUCCESS"
    assert trueai.submits("/submit/video")[-1].json == {
        "prompt": "keep going",
        "motion": "low",
        "action": "extend",
        "taskId": parent_id,
        "index": 0,
    }


async def test_edit_refused_on_a_discord_account_pool_is_said_once_and_remembered(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await start_on(runner, trueai)
    picture = ("photo.png", png(), "image/png")
    text = await refusal(discord_fake, "edit", {"image": picture, "prompt": "make it night"})
    assert "cannot edit images" in text
    assert len(trueai.submits("/submit/edits")) == 1
    assert "cannot edit images" in await refusal(discord_fake, "retexture", {"image": picture, "prompt": "marble"})
    assert "cannot edit images" in await refusal(discord_fake, "edit", {"image": picture, "prompt": "again"})
    assert trueai.submits("/submit/retexture") == [] and len(trueai.submits("/submit/edits")) == 1  # remembered


async def test_edit_runs_where_the_pool_can_edit(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    next(iter(trueai.accounts.values()))["isYouChuan"] = True
    await start_on(runner, trueai)
    message = await run(discord_fake, "edit", {"image": ("photo.png", png(), "image/png"), "prompt": "make it night"})
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    assert trueai.submits("/submit/edits")[0].json["prompt"] == "make it night"


async def test_retexture_through_a_relay_detects_its_html_page(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start(accounts_poll_interval=0)
    options = {"image": ("photo.png", png(), "image/png"), "prompt": "marble"}
    assert "does not offer /retexture" in await refusal(discord_fake, "retexture", options)
    assert len([r for r in mj.requests if r.path == "/mj/submit/retexture"]) == 1  # answered with HTML
    assert "does not offer /retexture" in await refusal(discord_fake, "retexture", options)
    assert len([r for r in mj.requests if r.path == "/mj/submit/retexture"]) == 1  # remembered, not asked again


@pytest.fixture
async def relay() -> AsyncIterator[SimulatedProxy]:
    from tests.conftest import API_KEY

    async with SimulatedProxy(
        flavor="relay", api_key=API_KEY, clock="reads", progress_steps=2, video_buttons=True
    ) as proxy:
        yield proxy


async def test_animate_through_a_relay_is_submitted_as_a_video_with_the_picture(
    runner: BotRunner, discord_fake: FakeDiscord, relay: SimulatedProxy
) -> None:
    from tests.conftest import API_KEY

    await start_on(runner, relay, key=API_KEY, style="bearer")
    grid = await run(discord_fake, "imagine", {"prompt": "a lighthouse --ar 1:1"})
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    upscale = await click_for_new_message(discord_fake, grid, "U1")
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    animated = await click_for_new_message(discord_fake, upscale, "Animate (Low motion)")
    await discord_fake.wait_for(lambda: is_video_result(animated), timeout=15, what="the animation")
    assert all("animate" not in r.json.get("customId", "") for r in relay.submits("/submit/action"))
    body = relay.submits("/submit/video")[0].json
    assert body["image"].startswith(relay.base_url + "/mj/image/") and body["motion"] == "low"
    assert body["prompt"] == "a lighthouse"  # the upscale's prompt without its parameters
    labels = [r.label or r.emoji for r in animated.buttons]
    assert "U1" not in labels and "Extend 1" in labels  # only what a relay runs


async def test_a_video_through_a_relay_offers_no_button_the_relay_refuses(
    runner: BotRunner, discord_fake: FakeDiscord, relay: SimulatedProxy
) -> None:
    from tests.conftest import API_KEY

    await start_on(runner, relay, key=API_KEY, style="bearer")
    message = await video(discord_fake)
    await discord_fake.wait_for(lambda: is_video_result(message) and message.buttons, timeout=15, what="the video")
    labels = [r.label or r.emoji for r in message.buttons]
    assert not [label for label in labels if label in ("U1", "U2", "U3", "U4")] and "🔄" in labels


async def test_extend_through_a_relay_is_submit_video_and_one_task_while_its_label_changes(
    runner: BotRunner, discord_fake: FakeDiscord, relay: SimulatedProxy
) -> None:
    from tests.conftest import API_KEY

    bot = await start_on(runner, relay, key=API_KEY, style="bearer")
    message = await video(discord_fake)
    await discord_fake.wait_for(lambda: is_video_result(message) and message.buttons, timeout=15, what="the video")
    parent_id = next(iter(relay.tasks))
    extended = await click_for_new_message(discord_fake, message, "Extend 2")
    await discord_fake.wait_for(lambda: is_video_result(extended), timeout=15, what="the extension")
    body = relay.submits("/submit/video")[-1].json
    assert (body["action"], body["taskId"], body["index"], body["motion"]) == ("extend", parent_id, 1, "low")
    child_id = body and next(t for t in relay.tasks if t != parent_id)
    versions = [v.embeds[0]["title"] for v in extended.history if v.embeds]
    assert "Upscale" in versions and versions[-1] == "Video"  # the label changed, the message stayed one
    records = [r for r in await bot.store.recent_tasks(discord_fake.member.id, 10) if r.id == child_id]
    assert len(records) == 1 and records[0].action == "VIDEO"


async def test_a_video_over_max_upload_bytes_is_a_link(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await runner.start(
        api_base=trueai.base_url, api_key=TOKEN, api_auth_style="raw", accounts_poll_interval=0, max_upload_bytes=1024
    )
    message = await video(discord_fake)
    await discord_fake.wait_for(lambda: message.buttons and "Open the video" in message.text(), timeout=15)
    assert not message.attachments and f"{trueai.base_url}/mj/image/" in message.text()
    assert not (message.embed or {}).get("image")


async def test_animate_on_a_remix_server_goes_through_the_prompt_step(
    runner: BotRunner, discord_fake: FakeDiscord, trueai: SimulatedProxy
) -> None:
    await start_on(runner, trueai)
    grid = await run(discord_fake, "imagine", {"prompt": "a lighthouse"})
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    upscale = await click_for_new_message(discord_fake, grid, "U1")
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    trueai.remix = True  # code 21: the server wants the prompt confirmed
    before = set(discord_fake.messages)
    await discord_fake.click(upscale, button(upscale, "Animate (Low motion)"), user=discord_fake.member)
    offer = await discord_fake.wait_for(
        lambda: next((m for i, m in discord_fake.messages.items() if i not in before and m.ephemeral), None),
        what="the prompt step",
    )
    assert offer.buttons and trueai.tasks[trueai.submits("/submit/action")[-1].json["taskId"]]
    assert [t.status for t in trueai.tasks.values()].count("MODAL") == 1


def test_a_result_takes_the_first_of_video_urls_video_url_and_image_url() -> None:
    from bot.models import MJTask

    base = {"id": "1", "action": "VIDEO", "status": "SUCCESS", "imageUrl": "https://cdn.example/preview.webp"}
    both = {**base, "videoUrl": "https://cdn.example/v.mp4", "videoUrls": [{"url": "https://cdn.example/0_0.mp4"}]}
    assert MJTask.from_json(both).image_url == "https://cdn.example/0_0.mp4"  # type: ignore[union-attr]
    assert MJTask.from_json({**base, "videoUrl": "https://cdn.example/v.mp4"}).image_url == "https://cdn.example/v.mp4"  # type: ignore[union-attr]
    assert MJTask.from_json({**base, "videoUrl": "", "videoUrls": None}).image_url == base["imageUrl"]  # type: ignore[union-attr]
    assert MJTask.from_json({**base, "videoUrl": "javascript:x"}).image_url == base["imageUrl"]  # type: ignore[union-attr]
    running = {**both, "status": "IN_PROGRESS"}
    assert MJTask.from_json(running).image_url == base["imageUrl"]  # type: ignore[union-attr]  # the preview


async def test_edit_through_a_relay_reaches_the_server_behind_it(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    """new-api relays /submit/edits (not /edit): the refusal of the Discord-account pool behind it
    comes back as code 9 in the relay's own error shape, and reads the same."""
    await runner.start(accounts_poll_interval=0)
    options = {"image": ("photo.png", png(), "image/png"), "prompt": "make it night"}
    assert "cannot edit images" in await refusal(discord_fake, "edit", options)
    assert [r.path for r in mj.requests if "/submit/edit" in r.path] == ["/mj/submit/edits"]
