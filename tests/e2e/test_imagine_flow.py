"""Issue 2's flow, end to end: the real bot between the fake Discord and the simulated API."""

from __future__ import annotations

import io
import itertools

from PIL import Image

from bot.bot import MJBot
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done
from tests.fakes.discord import FakeDiscord, FakeMessage


async def imagine(fake: FakeDiscord, prompt: str, **options: object) -> FakeMessage:
    handle = await fake.slash("imagine", user=fake.member, channel=fake.channel, options={"prompt": prompt, **options})
    return await handle.wait_original()


def button_id(message: FakeMessage, label: str) -> str:
    for row in message.buttons:
        if label in (row.label, row.emoji):
            assert row.custom_id is not None
            return row.custom_id
    raise AssertionError(f"no button {label!r} in {message.buttons}")


async def test_imagine_shows_progress_then_uploads_the_grid_with_nine_buttons(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await imagine(discord_fake, "a lighthouse in a storm --ar 3:2")
    assert "a lighthouse in a storm" in message.text()

    done = await discord_fake.wait_for(lambda: is_done(message) and message, timeout=15)
    labels = [row.label or row.emoji for row in done.buttons]
    assert labels == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4", "ℹ️", "🗑️"]
    assert all(len(row.custom_id or "") <= 100 for row in done.buttons)
    # The grid was downloaded and re-uploaded: a real PNG attachment, shown in the embed.
    attachment = done.attachments[0]
    assert Image.open(io.BytesIO(attachment.data)).format == "PNG"
    assert done.embed is not None and done.embed["image"]["url"].endswith(attachment.filename)

    texts = [
        version.embeds[0]["fields"][0]["value"]
        for version in message.history
        if version.embeds and version.embeds[0].get("fields") and not version.attachments
    ]
    assert any("%" in text for text in texts), texts  # live progress was shown
    # Never an edit that changes nothing.
    shown = [(v.content, v.embeds, v.components, [a.filename for a in v.attachments]) for v in message.history]
    assert all(a != b for a, b in itertools.pairwise(shown))

    submitted = mj.submits("/submit/imagine")
    assert len(submitted) == 1 and submitted[0].json["prompt"] == "a lighthouse in a storm --ar 3:2"
    assert submitted[0].headers["authorization"] == "Bearer sk-test-0123456789abcdef"
    # Polling used list-by-condition.
    assert any(r.path.endswith("/task/list-by-condition") for r in mj.requests)
    assert discord_fake.unknown_routes == []


async def test_click_u1_then_custom_zoom_modal_reaches_the_api(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    grid = await imagine(discord_fake, "a red fox")
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)

    click = await discord_fake.click(grid, button_id(grid, "U1"), user=discord_fake.member)
    await click.response()
    upscale = await discord_fake.wait_for_message(lambda m: m.reply_to == grid.id)
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    action = mj.submits("/submit/action")[0].json
    assert action["customId"].startswith("MJ::JOB::upsample::1::")
    labels = [row.label or row.emoji for row in upscale.buttons]
    assert "Custom Zoom" in labels and "Zoom Out 2x" in labels and "❤️" not in labels

    zoom_click = await discord_fake.click(upscale, button_id(upscale, "Custom Zoom"), user=discord_fake.member)
    callback = await zoom_click.response()
    assert callback.type == 9 and zoom_click.modal is not None
    prompt_input = zoom_click.modal.inputs[0]
    assert "a red fox" in (prompt_input.value or "")
    await zoom_click.submit_modal(
        {prompt_input.custom_id: "a red fox in snow", zoom_click.modal.inputs[1].custom_id: "1.5"}
    )

    modal_call = await discord_fake.wait_for(lambda: mj.submits("/submit/modal"), timeout=10)
    assert modal_call[0].json["prompt"] == "a red fox in snow --zoom 1.5"
    zoom_action = mj.submits("/submit/action")[-1].json
    assert zoom_action["customId"].startswith("MJ::CustomZoom::")
    assert modal_call[0].json["taskId"] != zoom_action["taskId"]  # the MODAL task, not the parent
    zoomed = await discord_fake.wait_for_message(lambda m: m.reply_to == upscale.id)
    await discord_fake.wait_for(lambda: is_done(zoomed), timeout=15)


async def test_vary_region_says_it_is_not_supported(bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy) -> None:
    grid = await imagine(discord_fake, "a blue bird")
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    await (await discord_fake.click(grid, button_id(grid, "U2"), user=discord_fake.member)).response()
    upscale = await discord_fake.wait_for_message(lambda m: m.reply_to is not None)
    await discord_fake.wait_for(lambda: is_done(upscale), timeout=15)
    actions_before = len(mj.submits("/submit/action"))

    click = await discord_fake.click(upscale, button_id(upscale, "Vary (Region)"), user=discord_fake.member)
    callback = await click.response()
    assert callback.type == 4
    reply = await click.wait_original()
    assert reply.ephemeral and "Vary (Region)" in reply.text()
    assert len(mj.submits("/submit/action")) == actions_before


async def test_restart_mid_task_resumes_and_old_buttons_still_work(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start()
    message = await imagine(discord_fake, "a quiet harbour")
    task_id = mj.submits("/submit/imagine")[0]
    task = next(iter(mj.tasks.values()))
    mj.hold(task.id)
    await runner.stop()

    mj.release(task.id)
    await runner.start()
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    assert task_id is not None

    await runner.restart()
    click = await discord_fake.click(message, button_id(message, "V3"), user=discord_fake.member)
    await click.response()
    variation = await discord_fake.wait_for_message(lambda m: m.reply_to is not None)
    await discord_fake.wait_for(lambda: is_done(variation), timeout=15)
    assert mj.submits("/submit/action")[0].json["customId"].startswith("MJ::JOB::variation::3::")
