"""Vary (Region) as a member does it: a real headless Chromium opens the private editor link, drags a
rectangle and paints a brush stroke with the mouse, edits the prompt with the keyboard and submits;
the API receives the mask and Discord gets the new result as a reply.

Driven over the Chrome DevTools Protocol with aiohttp's websocket client (no extra dependency, no
browser download). Skips when /usr/bin/chromium is not installed (.ci/run installs it where it can).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done
from tests.e2e.test_ready import editor_link, finished_upscale, replies_to, web_settings
from tests.fakes.discord import FakeDiscord

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium)")


class Browser:
    """One page of a headless Chromium, spoken to over the DevTools protocol."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())
        self.console: list[str] = []

    async def _read(self) -> None:
        async for message in self._socket:
            data = json.loads(message.data)
            if "id" in data and data["id"] in self._waiting:
                self._waiting.pop(data["id"]).set_result(data)
            elif data.get("method") == "Runtime.exceptionThrown":
                self.console.append(json.dumps(data["params"]["exceptionDetails"])[:500])

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        call = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[call] = future
        await self._socket.send_json({"id": call, "method": method, "params": params})
        answer = await asyncio.wait_for(future, timeout=20)
        if "error" in answer:
            raise AssertionError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_until(self, expression: str, timeout: float = 15.0) -> Any:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            value = await self.evaluate(expression)
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {expression}; page errors: {self.console}")
            await asyncio.sleep(0.1)

    async def box(self, selector: str) -> dict[str, float]:
        return await self.evaluate(
            f"JSON.parse(JSON.stringify(document.querySelector({selector!r}).getBoundingClientRect()))"
        )

    async def mouse(self, kind: str, x: float, y: float, *, pressed: bool) -> None:
        await self.send(
            "Input.dispatchMouseEvent",
            type=kind,
            x=x,
            y=y,
            button="left",
            buttons=1 if pressed else 0,
            clickCount=1,
        )

    async def drag(self, points: list[tuple[float, float]]) -> None:
        await self.mouse("mouseMoved", *points[0], pressed=False)
        await self.mouse("mousePressed", *points[0], pressed=True)
        for x, y in points[1:]:
            await self.mouse("mouseMoved", x, y, pressed=True)
        await self.mouse("mouseReleased", *points[-1], pressed=False)

    async def click(self, selector: str) -> None:
        await self.evaluate(f"document.querySelector({selector!r}).scrollIntoView({{block: 'center'}})")  # scroll to it
        box = await self.box(selector)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        await self.drag([(x, y)])

    async def type_over(self, selector: str, text: str) -> None:
        """Click into a field, select all (Ctrl+A) and type the new text, as a user would."""
        await self.click(selector)
        for kind in ("keyDown", "keyUp"):
            await self.send(
                "Input.dispatchKeyEvent",
                type=kind,
                modifiers=2,
                key="a",
                code="KeyA",
                windowsVirtualKeyCode=65,
                commands=["selectAll"] if kind == "keyDown" else [],
            )
        await self.send("Input.insertText", text=text)

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._socket.close()


@contextlib.asynccontextmanager
async def chromium(profile: Path, *, width: int, height: int) -> AsyncIterator[Browser]:
    process = await asyncio.create_subprocess_exec(
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={profile}",
        f"--window-size={width},{height}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    port_file = profile / "DevToolsActivePort"
    try:
        for _ in range(300):
            if port_file.exists() and port_file.read_text().strip():
                break
            if process.returncode is not None:
                raise AssertionError(f"chromium exited with {process.returncode}")
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/json/list") as answer:
                targets = await answer.json()
            page = next(t for t in targets if t["type"] == "page")
            socket = await session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
            browser = Browser(socket)
            try:
                await browser.send("Runtime.enable")
                await browser.send("Page.enable")
                yield browser
            finally:
                await browser.close()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=10)
            except TimeoutError:
                process.kill()
                await process.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def test_member_draws_a_region_in_the_browser_and_gets_the_new_picture(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, tmp_path: Path
) -> None:
    await runner.start(**web_settings())
    upscale = await finished_upscale(discord_fake, "a yellow tram in the rain")
    _, url = await editor_link(discord_fake, upscale)

    # A narrow window: the 512 px picture is shown smaller, so the page must scale the selection.
    async with chromium(tmp_path / "profile", width=420, height=900) as browser:
        await browser.send("Page.navigate", url=url)
        await browser.wait_until(
            "document.getElementById('picture')?.naturalWidth > 0 && document.readyState === 'complete'"
        )
        assert 300 < (await browser.box("#overlay"))["width"] < 512  # really scaled down

        async def on_picture(fractions: list[tuple[float, float]]) -> list[tuple[float, float]]:
            """Screen points for positions on the picture (where it is now: clicks may scroll)."""
            shown = await browser.box("#overlay")
            return [(shown["x"] + fx * shown["width"], shown["y"] + fy * shown["height"]) for fx, fy in fractions]

        # A rectangle over the middle-left, dragged in small steps like a hand would.
        await browser.drag(await on_picture([(0.25 + 0.25 * i / 10, 0.25 + 0.5 * i / 10) for i in range(11)]))
        # A brush stroke near the top right.
        await browser.click("#tool-brush")
        assert await browser.evaluate("document.getElementById('tool-brush').getAttribute('aria-pressed')") == "true"
        await browser.drag(await on_picture([(0.78 + 0.12 * i / 6, 0.1) for i in range(7)]))
        await browser.type_over("#prompt", "a yellow tram in the rain, neon reflections")
        await browser.click("#submit")
        state = await browser.wait_until(
            "(s => ['done', 'error'].includes(s.dataset.state) ? s.dataset.state + ':' + s.textContent : '')"
            "(document.getElementById('status'))"
        )
        assert state.startswith("done:"), state
        assert await browser.evaluate("document.querySelector('#status a')?.href || ''")  # link to the new message
        assert browser.console == []

    modal = mj.submits("/submit/modal")[-1].json
    assert modal["prompt"] == "a yellow tram in the rain, neon reflections"
    mask = Image.open(io.BytesIO(base64.b64decode(modal["maskBase64"].split(",", 1)[1]))).convert("L")
    assert mask.size == (512, 512)
    assert {value for _, value in mask.getcolors() or []} == {0, 255}  # pure black and white
    assert mask.getpixel((192, 256)) == 255  # inside the rectangle
    assert mask.getpixel((435, 51)) == 255  # on the brush stroke
    for keep in ((20, 20), (100, 460), (300, 300), (480, 480), (128 - 8, 256), (256 + 8, 256)):
        assert mask.getpixel(keep) == 0, keep
    left_edge, top_edge, right_edge, bottom_edge = mask.crop((0, 100, 380, 512)).getbbox() or (0, 0, 0, 0)
    assert abs(left_edge - 128) <= 3 and abs(right_edge - 256) <= 3 and abs(top_edge + 100 - 128) <= 3
    assert abs(bottom_edge + 100 - 384) <= 3

    action = [s.json for s in mj.submits("/submit/action") if s.json["customId"].startswith("MJ::Inpaint::")]
    assert len(action) == 1
    varied = await discord_fake.wait_for_message(lambda m: replies_to(upscale)(m) and not m.ephemeral)
    await discord_fake.wait_for(lambda: is_done(varied), timeout=15)
