"""Issue 6, end to end: translated commands, try-it mode, push updates, the web server (/health, the
Vary (Region) editor), the ℹ️ seed button and a graceful SIGTERM, with the real bot between the
fake Discord and the simulated API."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.__main__ import GracefulExit
from bot.bot import MJBot
from bot.models import TaskKey
from bot.upstream.simulator import SimulatedProxy
from bot.web import inpaint
from bot.web.inpaint import LinkSigner
from tests.conftest import API_KEY, BotRunner, is_done
from tests.fakes.discord import FakeDiscord, FakeMessage, walk_components

# ---- helpers (also used by test_inpaint_browser.py) ---------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def web_settings(**changes: Any) -> dict[str, Any]:
    """Settings for a bot whose web server the simulator and a browser on this machine can reach."""
    port = free_port()
    return {"public_url": f"http://127.0.0.1:{port}", "web_port": port, **changes}


async def imagine(fake: FakeDiscord, prompt: str) -> FakeMessage:
    handle = await fake.slash("imagine", user=fake.member, channel=fake.channel, options={"prompt": prompt})
    return await handle.wait_original()


def button(message: FakeMessage, label: str) -> str:
    for row in message.buttons:
        if label in (row.label, row.emoji) and row.custom_id:
            return row.custom_id
    raise AssertionError(f"no button {label!r} in {message.buttons}")


def replies_to(message: FakeMessage) -> Callable[[FakeMessage], bool]:
    return lambda m: m.reply_to == message.id


async def finished_upscale(fake: FakeDiscord, prompt: str) -> FakeMessage:
    """/imagine, then U1: the finished upscale, whose buttons include Vary (Region)."""
    grid = await imagine(fake, prompt)
    await fake.wait_for(lambda: is_done(grid), timeout=15)
    await (await fake.click(grid, button(grid, "U1"), user=fake.member)).response()
    upscale = await fake.wait_for_message(replies_to(grid))
    await fake.wait_for(lambda: is_done(upscale), timeout=15)
    return upscale


def link_buttons(message: FakeMessage) -> list[str]:
    return [c["url"] for c in walk_components(message.history[-1].components) if c.get("type") == 2 and c.get("url")]


async def editor_link(fake: FakeDiscord, upscale: FakeMessage, *, locale: str = "en-US") -> tuple[FakeMessage, str]:
    click = await fake.click(upscale, button(upscale, "Vary (Region)"), user=fake.member, locale=locale)
    await click.response()
    reply = await click.wait_original()
    urls = link_buttons(reply)
    assert reply.ephemeral and len(urls) == 1, (reply.text(), urls)
    return reply, urls[0]


@asynccontextmanager
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        yield session


def png_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        return image.size


# ---- 1. command metadata in Chinese -------------------------------------------------------------------


def _options(command: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for option in command.get("options") or []:
        yield option
        yield from _options(option)


async def test_synced_commands_carry_chinese_descriptions_for_every_command_option_and_choice(
    bot: MJBot, discord_fake: FakeDiscord
) -> None:
    commands = [c for c in discord_fake.commands if c.get("type", 1) == 1]
    assert {"imagine", "blend", "describe", "shorten", "swapface"} <= {c["name"] for c in commands}
    missing = []
    for command in commands:
        if not (command.get("description_localizations") or {}).get("zh-CN"):
            missing.append(command["name"])
        for option in _options(command):
            if not (option.get("description_localizations") or {}).get("zh-CN"):
                missing.append(f"{command['name']} {option['name']}")
            for choice in option.get("choices") or []:
                if not (choice.get("name_localizations") or {}).get("zh-CN"):
                    missing.append(f"{command['name']} {option['name']}={choice['value']}")
    assert missing == []
    imagine_command = next(c for c in commands if c["name"] == "imagine")
    assert imagine_command["description_localizations"]["zh-CN"] == "根据文字提示词生成图片"
    # English stays the default; names stay as on Midjourney (/imagine), so nobody has to relearn them.
    assert imagine_command["description"] == "Create images from a text prompt"
    assert not (imagine_command.get("name_localizations") or {}).get("zh-CN")


async def test_a_new_translation_changes_the_sync_digest(bot: MJBot) -> None:
    with_translations = await bot.command_tree_hash()
    translator = bot.tree.translator
    await bot.tree.set_translator(None)
    try:
        assert await bot.command_tree_hash() != with_translations
    finally:
        await bot.tree.set_translator(translator)


# ---- 2. try-it mode ---------------------------------------------------------------------------------


async def test_try_it_mode_runs_imagine_to_a_finished_grid_with_the_real_buttons(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    bot = await runner.start(api_base="simulator", api_key="", simulator_step_seconds=0.05)
    started = time.monotonic()
    message = await imagine(discord_fake, "a paper boat on a pond")
    done = await discord_fake.wait_for(lambda: is_done(message) and message, timeout=15)
    assert time.monotonic() - started < 10  # SIMULATOR_STEP_SECONDS applies (the default is 2 s a step)
    labels = [row.label or row.emoji for row in done.buttons]
    assert labels == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4", "ℹ️", "🗑️"]
    assert png_size(done.attachments[0].data) == (512, 512)
    simulator = bot._simulator
    assert simulator is not None and simulator.step_seconds == 0.05
    assert [t.prompt for t in simulator.tasks.values()] == ["a paper boat on a pond"]


# ---- 3. push updates ----------------------------------------------------------------------------------


async def test_push_updates_finish_a_task_without_waiting_for_the_next_poll(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    async with SimulatedProxy(
        flavor="trueai", api_key=API_KEY, clock="time", step_seconds=0.15, progress_steps=3
    ) as proxy:
        bot = await runner.start(
            api_base=proxy.base_url,
            api_auth_style="mj-api-secret",
            **web_settings(push_poll_interval=120.0),  # one poll right after the submit, then none for 2 min
        )
        assert bot.web is not None and bot.web.notify_hook("default") is not None
        message = await imagine(discord_fake, "a lantern in fog")
        await discord_fake.wait_for(lambda: is_done(message), timeout=15)

        hook = proxy.submits("/submit/imagine")[0].json["notifyHook"]
        assert hook == bot.web.notify_hook("default") and hook.startswith(bot.settings.public_url + "/mj/notify/")
        assert {payload["status"] for _, payload in proxy.hook_deliveries} >= {"IN_PROGRESS", "SUCCESS"}
        polls = [r for r in proxy.requests if r.path.endswith("/task/list-by-condition")]
        assert len(polls) <= 2  # the result came by push, not by polling
        assert bot.web.pushes_received >= 3
        async with http() as session, session.get(bot.web.base_url + "/health") as answer:
            push = (await answer.json())["push"]
        assert push["received"] == bot.web.pushes_received and 1 <= push["applied"] <= push["received"]


async def test_a_push_is_only_a_hint_its_content_is_never_shown(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    """Whoever learns a hook cannot finish a task, or post a picture of their choosing: the bot only
    reads the task again from its own upstream."""
    bot = await runner.start(**web_settings(push_poll_interval=120.0))
    assert bot.web is not None
    hook = (bot.web.notify_hook("default") or "").replace(bot.settings.public_url, bot.web.base_url)
    message = await imagine(discord_fake, "a slow river")
    task_id = next(iter(mj.tasks))
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    reads_before = len([r for r in mj.requests if r.path.endswith(f"/task/{task_id}/fetch")])
    forged = {
        "id": task_id,
        "status": "SUCCESS",
        "progress": "100%",
        "imageUrl": "http://169.254.169.254/latest/meta-data/",
        "failReason": "[click here](https://evil.example)",
        "buttons": [{"customId": "MJ::JOB::upsample::1::x", "label": "Free money"}],
    }
    async with http() as session, session.post(hook, json=forged) as answer:
        assert answer.status == 200
    await discord_fake.wait_for(
        lambda: len([r for r in mj.requests if r.path.endswith(f"/task/{task_id}/fetch")]) > reads_before, timeout=5
    )
    await asyncio.sleep(0.3)
    assert not is_done(message) and "Free money" not in str(message.buttons) and not message.attachments
    record = await bot.store.get_task(task_id)
    assert record is not None and record.status != "SUCCESS" and "169.254" not in (record.image_url or "")


async def test_a_push_reaches_only_tasks_of_the_upstream_its_hook_was_made_for(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(**web_settings(push_poll_interval=120.0))
    assert bot.web is not None
    await imagine(discord_fake, "a quiet pier")
    task_id = next(iter(mj.tasks))
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    other = (bot.web.notify_hook("key:99") or "").replace(bot.settings.public_url, bot.web.base_url)
    assert other != (bot.web.notify_hook("default") or "").replace(bot.settings.public_url, bot.web.base_url)
    reads = len(mj.requests)
    async with http() as session, session.post(other, json={"id": task_id, "status": "SUCCESS"}) as answer:
        assert answer.status == 202  # another upstream's hook: ignored, nothing read
    assert len(mj.requests) == reads
    assert not await bot.tracker.hint("key:99", task_id)


async def test_notify_endpoint_refuses_bad_requests_and_ignores_unknown_tasks(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(**web_settings(push_poll_interval=120.0, notify_secret="the-old-global-secret-123"))
    assert bot.web is not None and bot.web.notify_hook("default") is not None
    hook = (bot.web.notify_hook("default") or "").replace(bot.settings.public_url, bot.web.base_url)
    wrong = hook.rsplit(".", 1)[0] + ".bm90LXRoZS1zZWNyZXQtbm90LXRoZS1zZWNyZXQ="
    old_style = f"{bot.web.base_url}/mj/notify/the-old-global-secret-123"  # one secret for every upstream: gone
    message = await imagine(discord_fake, "a stone bridge")
    task_id = next(iter(mj.tasks))
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    async with http() as session:
        for refused in (wrong, old_style):
            async with session.post(refused, json={"id": task_id, "status": "SUCCESS"}) as answer:
                assert answer.status == 404
        async with session.post(hook, data=b"x" * (300 * 1024), headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 413
        async with session.post(hook, data=b"<html>not json", headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 400
        async with session.post(hook, json={"no": "id"}) as answer:
            assert answer.status == 400
        deep = b"[" * 100_000 + b"]" * 100_000  # under the size cap, deeper than json.loads can go
        async with session.post(hook, data=deep, headers={"Content-Type": "application/json"}) as answer:
            assert answer.status == 400
        async with session.post(hook, json={"id": "12345", "status": "SUCCESS"}) as answer:
            assert answer.status == 202
        assert not is_done(message)
        async with session.post(hook, json={"id": task_id, "status": "IN_PROGRESS", "progress": "77%"}) as answer:
            assert answer.status == 200
    assert bot.web.pushes_received == 2


async def test_health_reports_gateway_database_and_tracked_tasks(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(web_port=0)  # /health only: no PUBLIC_URL, so no push and no editor
    assert bot.web is not None and bot.web.notify_hook("default") is None
    await imagine(discord_fake, "a windmill")
    mj.hold(next(iter(mj.tasks)))
    async with http() as session, session.get(bot.web.base_url + "/health") as answer:
        body = await answer.json()
    assert answer.status == 200
    assert body["status"] == "ok" and body["gateway"] is True and body["database"] is True
    assert body["tracked_tasks"] == 1 and body["push"]["enabled"] is False
    # Through a proxy (or from anywhere but this machine): the status, nothing else.
    async with http() as session:
        async with session.get(bot.web.base_url + "/health", headers={"X-Forwarded-For": "203.0.113.9"}) as answer:
            assert answer.status == 200 and await answer.json() == {"status": "ok"}


async def probe(env: dict[str, str]) -> int:
    """Exit code of the container health probe (compose.yaml), run as Docker would."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.healthcheck",
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(Path.cwd()), **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_container_health_probe_follows_the_bot(runner: BotRunner) -> None:
    bot = await runner.start(web_port=0)
    assert bot.web is not None
    port = bot.web.base_url.rsplit(":", 1)[1]
    assert await probe({"WEB_PORT": port}) == 0
    await runner.stop()
    assert await probe({"WEB_PORT": port}) == 1
    assert await probe({}) == 0  # no web server configured: nothing to ask


# ---- 4. Vary (Region) -----------------------------------------------------------------------------------


async def test_vary_region_link_page_and_submit_send_the_mask_and_post_the_result(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(**web_settings())
    upscale = await finished_upscale(discord_fake, "a red kite")
    actions_before = len(mj.submits("/submit/action"))
    reply, url = await editor_link(discord_fake, upscale)
    assert url.startswith(bot.settings.public_url + "/inpaint/") and "15" in reply.text()
    assert len(mj.submits("/submit/action")) == actions_before  # a link costs nothing

    async with http() as session:
        async with session.get(url) as page:
            html = await page.text()
            assert page.status == 200 and "a red kite" in html and "Content-Security-Policy" in page.headers
        async with session.get(url + "/image") as picture:
            image = await picture.read()
        selection = {
            "prompt": "a red kite with a long tail",
            "shapes": [{"type": "rect", "x": 100, "y": 50, "w": 200, "h": 100}],
        }
        async with session.post(url, json=selection) as answer:
            result = await answer.json()
            assert answer.status == 200 and result["ok"], result
        async with session.post(url, json=selection) as again:  # one submit per link
            assert again.status == 422 and "already used" in (await again.json())["error"]

    action = mj.submits("/submit/action")[-1].json
    upscale_id = upscale.text().rsplit("Task ", 1)[1].strip()
    assert action["customId"].startswith("MJ::Inpaint::") and action["taskId"] == upscale_id
    modal = mj.submits("/submit/modal")[-1].json
    assert modal["taskId"] != action["taskId"] and modal["prompt"] == "a red kite with a long tail"
    assert modal["maskBase64"].startswith("data:image/png;base64,")
    mask = Image.open(io.BytesIO(base64.b64decode(modal["maskBase64"].split(",", 1)[1])))
    assert mask.size == png_size(image) == (512, 512)
    assert mask.getpixel((150, 100))[:3] == (255, 255, 255) and mask.getpixel((50, 50))[:3] == (0, 0, 0)
    assert mask.getbbox() == (100, 50, 300, 150)

    varied = await discord_fake.wait_for_message(lambda m: replies_to(upscale)(m) and m.id != reply.id)
    await discord_fake.wait_for(lambda: is_done(varied), timeout=15)
    assert result["url"].endswith(str(varied.id))


async def test_editor_refuses_expired_tampered_and_empty_submissions(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(**web_settings())
    upscale = await finished_upscale(discord_fake, "a green door")
    _, url = await editor_link(discord_fake, upscale, locale="zh-CN")
    token = url.rsplit("/", 1)[1]
    key = await bot.store.get_meta("web:link_key")
    assert key is not None
    signer = LinkSigner(bytes.fromhex(key))
    link = signer.verify(token)
    expired, _ = signer.new_link(link.task_id, link.index, link.user_id, "en", now=time.time() - 3600)
    base = url.rsplit("/", 1)[0]
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    async with http() as session:
        async with session.get(f"{base}/{expired}") as page:
            assert page.status == 410 and "expired" in await page.text()
        async with session.get(f"{base}/{tampered}") as page:
            assert page.status == 403
        async with session.post(f"{base}/{tampered}", json={"prompt": "x", "shapes": []}) as answer:
            assert answer.status == 403
        async with session.get(url) as page:  # the clicker's language: zh-CN
            assert "提交" in await page.text()
        async with session.post(url, json={"prompt": "a green door", "shapes": []}) as answer:
            assert answer.status == 422 and "请先选择" in (await answer.json())["error"]
        outside = [{"type": "rect", "x": 600, "y": 600, "w": 50, "h": 50}]
        async with session.post(url, json={"prompt": "a green door", "shapes": outside}) as answer:
            assert answer.status == 422
        form = {"Content-Type": "application/x-www-form-urlencoded"}  # what a cross-site form could send
        async with session.post(url, data="prompt=x", headers=form) as answer:
            assert answer.status == 415
    assert not mj.submits("/submit/modal")
    assert not [s for s in mj.submits("/submit/action") if "Inpaint" in s.json["customId"]]


async def test_replaying_one_editor_link_draws_one_mask_and_submits_once(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The link is claimed before the picture is read or the mask drawn: ten copies of one request
    sent at once cost one mask, and every other spelling of the link is refused."""
    bot = await runner.start(**web_settings())
    upscale = await finished_upscale(discord_fake, "a yellow tram")
    _, url = await editor_link(discord_fake, upscale)
    drawn: list[tuple[int, int]] = []
    real_build_mask = inpaint.build_mask

    def counting_build_mask(width: int, height: int, shapes: list[inpaint.Shape]) -> bytes:
        drawn.append((width, height))
        return real_build_mask(width, height, shapes)

    monkeypatch.setattr(inpaint, "build_mask", counting_build_mask)
    selection = {"prompt": "a yellow tram", "shapes": [{"type": "rect", "x": 10, "y": 10, "w": 100, "h": 100}]}
    base, token = url.rsplit("/", 1)
    head, tail = token.split(".")
    respelled = [f"{base}/{head}.{tail}=", f"{base}/{head}=.{tail}"]
    async with http() as session:

        async def post(target: str) -> int:
            async with session.post(target, json=selection) as answer:
                return answer.status

        statuses = await asyncio.gather(*(post(url) for _ in range(10)), *(post(other) for other in respelled))
    assert sorted(statuses[:10]) == [200] + [422] * 9 and statuses[10:] == [403, 403]
    assert drawn == [(512, 512)]
    assert len(mj.submits("/submit/modal")) == 1
    assert bot.web is not None


async def test_editor_asks_discord_for_a_fresh_image_link_when_the_stored_ones_expired(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(**web_settings())
    upscale = await finished_upscale(discord_fake, "a blue kettle")
    upscale_id = upscale.text().rsplit("Task ", 1)[1].strip()
    # The row is written just after Discord answered the result edit: let that land first.
    await discord_fake.wait_for(lambda: upscale_id not in bot.tracker.active_ids)
    await bot.tracker.flush()
    expired = f"{discord_fake.base_url}/attachments/1/2/expired.png"  # what a day-old signed link does
    await bot.store.update_task(TaskKey("default", upscale_id), result_url=expired, image_url=expired)
    _, url = await editor_link(discord_fake, upscale)
    async with http() as session, session.get(url + "/image") as picture:
        assert picture.status == 200 and png_size(await picture.read()) == (512, 512)
    assert any(r.method == "GET" and f"/messages/{upscale.id}" in r.path for r in discord_fake.requests)


# ---- 5. ℹ️ seed, prompt and parameters ------------------------------------------------------------------


async def _info(fake: FakeDiscord, message: FakeMessage) -> FakeMessage:
    click = await fake.click(message, button(message, "ℹ️"), user=fake.member)
    await click.response()
    return await click.wait_original(lambda m: bool(m.embeds))


async def test_info_button_shows_seed_prompt_and_parameters_privately(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    grid = await imagine(discord_fake, "a copper teapot --ar 3:2 --no steam --v 6")
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    info = await _info(discord_fake, grid)
    task = next(iter(mj.tasks.values()))
    expected_seed = str(int(task.hash.replace("-", "")[:8], 16))
    text = info.text()
    assert info.ephemeral and expected_seed in text
    assert "a copper teapot --ar 3:2 --no steam --v 6" in text
    assert "`--ar 3:2`" in text and "`--no steam`" in text and "`--v 6`" in text
    assert any(r.path.endswith(f"/task/{task.id}/image-seed") for r in mj.requests)


async def test_info_button_on_a_basic_server_says_seeds_are_not_available(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    async with SimulatedProxy(flavor="basic", api_key="secret", clock="reads", progress_steps=2) as proxy:
        await runner.start(api_base=proxy.base_url, api_key="secret", api_auth_style="mj-api-secret")
        grid = await imagine(discord_fake, "an old clock")
        await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
        info = await _info(discord_fake, grid)
    assert info.ephemeral and "does not report seeds" in info.text() and "an old clock" in info.text()


# ---- 6. graceful shutdown ---------------------------------------------------------------------------


async def test_sigterm_lets_the_edit_in_flight_land_before_closing(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(poll_interval=120.0, **web_settings())
    message = await imagine(discord_fake, "a harbour at dusk")
    task_id = next(iter(mj.tasks))
    mj.hold(task_id)
    await discord_fake.wait_for(lambda: task_id in bot.tracker.active_ids)
    web_url = bot.web.base_url if bot.web else ""
    # The result's edit will be held up by a rate limit: it is still in flight when SIGTERM arrives.
    discord_fake.rate_limit_next(f"/messages/{message.id}", retry_after=1.5)  # its token's route (issue 16)
    mj.finish(task_id)
    assert await bot.tracker.hint("default", task_id)  # as a push would: read the task now
    await discord_fake.wait_for(lambda: discord_fake.rate_limits_sent, timeout=5)
    assert not is_done(message)

    graceful = GracefulExit(bot)
    assert signal.SIGTERM in graceful.install()  # never send a signal nobody handles
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        await discord_fake.wait_for(lambda: graceful.closing is not None, timeout=5)
        await asyncio.wait_for(graceful.wait(), timeout=20)
    finally:
        graceful.remove()
    assert bot.is_closed()
    assert is_done(message)  # the rate-limited edit was retried and landed before Discord was closed
    with pytest.raises(aiohttp.ClientConnectionError):
        async with http() as session, session.get(web_url + "/health"):
            pass
