"""Issue 3: /blend, /describe, /shorten and /swapface end to end, and every bad input refused early."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from PIL import Image

from bot.bot import MJBot
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import is_done
from tests.fakes.discord import FakeDiscord, FakeMessage


def png(width: int = 64, height: int = 64, color: str = "red") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def noisy_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buffer, "PNG")
    return buffer.getvalue()


async def run(fake: FakeDiscord, name: str, options: dict[str, Any]) -> FakeMessage:
    handle = await fake.slash(name, user=fake.member, channel=fake.channel, options=options)
    return await handle.wait_original()


def done_with_text(message: FakeMessage) -> bool:
    return bool(message.embed) and message.embed.get("color") == 0x57F287  # type: ignore[union-attr]


async def test_blend_submits_all_images_and_tracks_the_grid(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await run(
        discord_fake,
        "blend",
        {
            "image1": ("a.png", png(color="red"), "image/png"),
            "image2": ("b.png", png(color="blue"), "image/png"),
            "image3": ("c.png", png(color="green"), "image/png"),
            "dimensions": "LANDSCAPE",
        },
    )
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    body = mj.submits("/submit/blend")[0].json
    assert body["dimensions"] == "LANDSCAPE"
    assert len(body["base64Array"]) == 3 and all(i.startswith("data:image/png;base64,") for i in body["base64Array"])
    assert [r.label or r.emoji for r in message.buttons][:4] == ["U1", "U2", "U3", "U4"]


async def test_describe_pick_two_edit_in_modal_then_imagine(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await run(discord_fake, "describe", {"image": ("photo.png", png(), "image/png")})
    await discord_fake.wait_for(lambda: done_with_text(message) and len(message.buttons) == 6, timeout=15)
    assert mj.submits("/submit/describe")[0].json["base64"].startswith("data:image/png;base64,")
    text = message.text()
    assert "1." in text and "4." in text and "1️⃣" not in text  # candidates shown readably, keycaps stripped

    pick = next(r for r in message.buttons if r.emoji == "2️⃣")
    click = await discord_fake.click(message, pick.custom_id or "", user=discord_fake.member)
    await click.response()
    assert click.modal is not None
    candidate = click.modal.inputs[0].value or ""
    assert candidate and candidate in text
    await click.submit_modal({"Prompt": candidate + " --ar 2:3"})

    imagine = await discord_fake.wait_for(lambda: mj.submits("/submit/imagine"), timeout=10)
    assert imagine[0].json["prompt"] == candidate + " --ar 2:3"
    assert not mj.submits("/submit/action")  # picks are done by the bot, never as relay buttons
    new = await discord_fake.wait_for_message(lambda m: m.reply_to is not None)
    await discord_fake.wait_for(lambda: is_done(new), timeout=15)


async def test_describe_again_resubmits_the_same_image(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await run(discord_fake, "describe", {"image": ("photo.png", png(), "image/png")})
    await discord_fake.wait_for(lambda: done_with_text(message) and len(message.buttons) == 6, timeout=15)
    retry = next(r for r in message.buttons if r.emoji == "🔄")
    await (await discord_fake.click(message, retry.custom_id or "", user=discord_fake.member)).response()
    await discord_fake.wait_for(lambda: len(mj.submits("/submit/describe")) == 2, timeout=10)
    assert mj.submits("/submit/describe")[1].json["base64"].startswith("data:image/")


async def test_shorten_shows_options_and_imagines_a_pick(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    long_prompt = "appdash appdash, in the style of expert draftsmanship, ethereal, dreamlike quality, toonami"
    message = await run(discord_fake, "shorten", {"prompt": long_prompt})
    await discord_fake.wait_for(lambda: done_with_text(message) and len(message.buttons) == 6, timeout=15)
    assert mj.submits("/submit/shorten")[0].json["prompt"] == long_prompt
    assert "Important tokens" in message.text() and "Shortened prompts" in message.text()

    click = await discord_fake.click(message, message.buttons[0].custom_id or "", user=discord_fake.member)
    await click.response()
    assert click.modal is not None
    await click.submit_modal({"Prompt": click.modal.inputs[0].value or ""})
    await discord_fake.wait_for(lambda: mj.submits("/submit/imagine"), timeout=10)


async def test_swapface_uploads_the_result(bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy) -> None:
    message = await run(
        discord_fake,
        "swapface",
        {
            "source": ("face.png", png(color="white"), "image/png"),
            "target": ("pic.png", png(color="black"), "image/png"),
        },
    )
    await discord_fake.wait_for(lambda: bool(message.attachments), timeout=15)
    body = mj.submits("/insight-face/swap")[0].json
    assert body["sourceBase64"].startswith("data:image/png") and body["targetBase64"].startswith("data:image/png")
    assert body["sourceBase64"] != body["targetBase64"]
    assert [r.emoji for r in message.buttons] == ["🗑️"]  # a face swap has no Midjourney buttons


BAD_INPUTS: list[tuple[str, str, dict[str, Any], str]] = [
    ("not an image", "describe", {"image": ("notes.png", b"just some text, no picture", "image/png")}, "not an image"),
    ("corrupt image", "describe", {"image": ("broken.png", png()[:60], "image/png")}, "damaged"),
    ("too large even to shrink", "describe", {"image": ("huge.png", noisy_png(1300), "image/png")}, "the limit is"),
    (
        "blend too large in total",
        "blend",
        {"image1": ("a.png", noisy_png(550), "image/png"), "image2": ("b.png", noisy_png(550), "image/png")},
        "for one command",
    ),
    ("empty prompt", "imagine", {"prompt": "   "}, "type a prompt"),
    ("only parameters", "imagine", {"prompt": "--ar 16:9 --v 7"}, "only parameters"),
    ("too long prompt", "imagine", {"prompt": "x" * 4500}, "limit is 4000"),
    ("url to another host", "describe", {"url": "https://evil.example.com/cat.png"}, "evil.example.com"),
    ("not a url", "describe", {"url": "ftp://cdn.discordapp.com/x.png"}, "valid"),
    ("no image at all", "describe", {}, "exactly one image"),
    (
        "blend with a text file",
        "blend",
        {"image1": ("a.png", png(), "image/png"), "image2": ("b.txt", b"hello", "text/plain")},
        "not an image",
    ),
]


@pytest.mark.parametrize(("case", "command", "options", "expected"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
async def test_bad_input_gets_a_clear_private_message_and_nothing_is_submitted(
    runner: Any,
    discord_fake: FakeDiscord,
    mj: SimulatedProxy,
    case: str,
    command: str,
    options: dict[str, Any],
    expected: str,
) -> None:
    await runner.start(max_image_bytes=1024 * 1024, max_request_bytes=1200 * 1024)
    handle = await discord_fake.slash(command, user=discord_fake.member, channel=discord_fake.channel, options=options)
    await handle.response()
    notice = await discord_fake.wait_for_message(lambda m: m.ephemeral and "⚠️" in m.text())
    assert expected in notice.text(), notice.text()
    assert mj.submits() == []
    visible = [m for m in discord_fake.channel_messages(discord_fake.channel) if not m.ephemeral]
    assert visible == [], [m.text() for m in visible]


async def test_oversized_upload_is_shrunk_to_fit_and_submitted(
    runner: Any, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start(max_image_bytes=1024 * 1024)
    big = noisy_png(800)  # about 1.9 MB: over the limit, under four times it
    assert len(big) > 1024 * 1024
    message = await run(discord_fake, "describe", {"image": ("big.png", big, "image/png")})
    await discord_fake.wait_for(lambda: done_with_text(message), timeout=15)
    sent = mj.submits("/submit/describe")[0].json["base64"]
    assert sent.startswith("data:image/jpeg;base64,")
    assert len(sent) * 3 // 4 <= 1024 * 1024 + 3


async def test_describe_url_from_the_api_host_is_allowed(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    grid = await run(discord_fake, "imagine", {"prompt": "a teapot"})
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    task_id = next(iter(mj.tasks))
    url = f"{mj.base_url}/mj/image/{task_id}"
    message = await run(discord_fake, "describe", {"url": url})
    await discord_fake.wait_for(lambda: done_with_text(message), timeout=15)
    assert mj.submits("/submit/describe")[0].json["base64"].startswith("data:image/png;base64,")


async def test_image_download_failure_is_reported(bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy) -> None:
    handle = await discord_fake.slash(
        "describe",
        user=discord_fake.member,
        channel=discord_fake.channel,
        options={"url": f"{mj.base_url}/mj/image/does-not-exist"},
    )
    await handle.response()
    notice = await discord_fake.wait_for_message(lambda m: m.ephemeral and "⚠️" in m.text())
    assert "could not be downloaded" in notice.text()
    assert mj.submits() == []
