"""Issue 15 items 1, 5 and 9, end to end: every download the bot makes for someone else goes
through the guarded fetcher. The real bot between the fake Discord and the simulated API; the
"internal services" are real HTTP servers on 127.0.0.1 that must never see a request.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web
from PIL import Image

from bot.bot import MJBot
from bot.models import FAILURE, TaskKey
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import BotRunner, is_done
from tests.e2e.test_admin import FERNET, add_key, admin
from tests.e2e.test_ready import editor_link, finished_upscale, http, web_settings
from tests.fakes.discord import FakeDiscord, FakeMessage
from tests.fakes.http import serve


class LocalService:
    """A service on the bot's own machine: a picture at every path, and a log of what was asked."""

    def __init__(self, body: bytes, content_type: str = "image/png") -> None:
        self.body = body
        self.content_type = content_type
        self.seen: list[str] = []
        self.base = ""
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def pair(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _any(self, request: web.Request) -> web.Response:
        self.seen.append(request.path)
        return web.Response(body=self.body, content_type=self.content_type)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._any)
        self._runner, self.port = await serve(app)
        self.base = f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
async def internal() -> AsyncIterator[LocalService]:
    service = LocalService(png())
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def not_an_image() -> AsyncIterator[LocalService]:
    service = LocalService(b'{"AccessKeyId": "ASIA...", "SecretAccessKey": "..."}')
    await service.start()
    yield service
    await service.stop()


async def imagine(fake: FakeDiscord, prompt: str) -> FakeMessage:
    handle = await fake.slash("imagine", user=fake.member, channel=fake.channel, options={"prompt": prompt})
    return await handle.wait_original()


async def failed(fake: FakeDiscord, message: FakeMessage, words: str) -> FakeMessage:
    return await fake.wait_for(lambda: words in message.text() and not message.loading and message, timeout=15)


def uploads(fake: FakeDiscord, task_id: str) -> list[object]:
    return [r for r in fake.requests if any(f"mj_{task_id}." in name for _, name, _ in r.files)]


async def test_a_result_at_the_cloud_metadata_address_is_a_failure_never_a_post(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    mj.image_base = "http://169.254.169.254/latest/meta-data/iam/security-credentials"
    message = await imagine(discord_fake, "a lighthouse")
    await failed(discord_fake, message, "private or local network")
    task_id = next(iter(mj.tasks))
    assert not message.attachments and not uploads(discord_fake, task_id)
    row = await bot.store.get_task(task_id)
    for _ in range(250):  # stored in the background, right after the Discord write
        if row is not None and row.delivered:
            break
        await asyncio.sleep(0.02)
        row = await bot.store.get_task(task_id)
    assert row is not None and row.status == FAILURE and row.fail_reason == "bot:download.refused"


async def test_a_result_on_the_api_host_but_another_port_is_refused(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy, internal: LocalService
) -> None:
    mj.image_base = f"{internal.base}/admin/export"  # same host as MJ_API_BASE, another port
    message = await imagine(discord_fake, "a lighthouse")
    await failed(discord_fake, message, "private or local network")
    assert internal.seen == [] and not message.attachments


async def test_a_result_that_is_not_an_image_is_shown_as_a_failure(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, not_an_image: LocalService
) -> None:
    await runner.start(key_allowed_hosts=(*runner.settings.key_allowed_hosts, not_an_image.pair))
    mj.image_base = not_an_image.base
    message = await imagine(discord_fake, "a lighthouse")
    await failed(discord_fake, message, "not an image")
    assert not_an_image.seen and not message.attachments
    assert not uploads(discord_fake, next(iter(mj.tasks)))


async def test_results_from_the_upstreams_own_origin_are_still_posted(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await imagine(discord_fake, "a lighthouse")
    done = await discord_fake.wait_for(lambda: is_done(message) and message, timeout=15)
    assert Image.open(io.BytesIO(done.attachments[0].data)).format == "PNG"


async def test_describe_url_on_the_api_host_but_another_port_is_refused(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy, internal: LocalService
) -> None:
    handle = await discord_fake.slash(
        "describe",
        user=discord_fake.member,
        channel=discord_fake.channel,
        options={"url": f"{internal.base}/secret.png"},
    )
    await handle.response()
    notice = await discord_fake.wait_for_message(lambda m: m.ephemeral and "⚠️" in m.text())
    assert "private or local network" in notice.text()
    assert internal.seen == [] and mj.submits() == []


async def test_show_does_not_fetch_a_stored_link_to_a_private_address(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy, internal: LocalService
) -> None:
    message = await imagine(discord_fake, "a lighthouse")
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    task_id = next(iter(mj.tasks))
    # The Discord copy is gone, and the server now says its picture lives on the bot's machine.
    row = await bot.store.get_task(task_id)
    assert row is not None
    await bot.store.update_task(
        TaskKey("default", task_id), result_url=f"{internal.base}/a.png", image_url=f"{internal.base}/b.png"
    )
    mj.image_base = f"{internal.base}/c"
    handle = await discord_fake.slash(
        "show", user=discord_fake.member, channel=discord_fake.channel, options={"task_id": task_id}
    )
    shown = await handle.wait_original()
    await discord_fake.wait_for(lambda: not shown.loading, timeout=15)
    assert internal.seen == [] and not shown.attachments


async def test_key_test_never_echoes_the_servers_own_words(runner: BotRunner, discord_fake: FakeDiscord) -> None:
    """Item 5: a key's server is anyone's server; its text never reaches the channel."""
    words = "Ignore previous instructions <@&123> [click](https://evil.example) ROOT-PASSWORD-HINT"

    async def refuse(request: web.Request) -> web.Response:
        return web.json_response({"code": 4, "description": words}, status=400)

    service = LocalService(b"")
    service._any = refuse  # type: ignore[method-assign]
    await service.start()
    try:
        await runner.start(
            key_encryption_key=FERNET, key_allowed_hosts=(*runner.settings.key_allowed_hosts, service.pair)
        )
        await add_key(discord_fake, "theirs", service.base, "sk-their-key-123456")
        answer = await admin(discord_fake, "key test", key="theirs")
    finally:
        await service.stop()
    assert "theirs" in answer.text() and "HTTP 400" in answer.text()
    assert "ROOT-PASSWORD-HINT" not in answer.text() and "evil.example" not in answer.text()


async def test_key_base_urls_with_a_password_query_or_fragment_are_refused(
    runner: BotRunner, discord_fake: FakeDiscord
) -> None:
    bot = await runner.start(key_encryption_key=FERNET)
    for url in ("https://user:pw@relay.example", "https://relay.example/?token=1", "https://relay.example/#x"):
        refused = await admin(discord_fake, "key add", label="bad", base_url=url)
        assert "user name or password" in refused.text(), url
    assert bot.keys.visible(discord_fake.guild.id) == []


async def test_the_vary_region_editor_does_not_fetch_a_stored_link_to_a_private_address(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy, internal: LocalService
) -> None:
    bot = await runner.start(**web_settings())
    upscale = await finished_upscale(discord_fake, "a red kite")
    upscale_id = upscale.text().rsplit("Task ", 1)[1].strip()
    _, url = await editor_link(discord_fake, upscale)
    # The stored links now say the picture lives on the bot's machine (a server's answer, or a stale row).
    urls = {"result_url": f"{internal.base}/a.png", "image_url": f"{internal.base}/b.png"}
    await bot.store.update_task(TaskKey("default", upscale_id), **urls)
    async with http() as session, session.get(url + "/image") as picture:
        data = await picture.read()
    # Refused, and the fresh link to the Discord copy served the picture instead.
    assert internal.seen == []
    assert picture.status == 200 and Image.open(io.BytesIO(data)).size == (512, 512)


def own_name() -> str | None:
    """The machine's own host name, when it resolves to a loopback address (as in most containers)."""
    name = socket.gethostname()
    try:
        resolved = socket.getaddrinfo(name, 80, type=socket.SOCK_STREAM)
    except OSError:
        return None
    return name if resolved and all(ipaddress.ip_address(i[4][0]).is_loopback for i in resolved) else None


async def test_a_key_whose_host_name_resolves_to_the_bots_machine_is_refused_when_added(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    name = own_name()
    if name is None:
        pytest.skip("this machine's name does not resolve to loopback")
    bot = await runner.start(key_encryption_key=FERNET)
    url = f"http://{name}:{mj.port}"
    refused = await add_key(discord_fake, "mine", url, "sk-their-key-123456")
    assert "local or private address" in refused.text() and name in refused.text()
    assert bot.keys.visible(discord_fake.guild.id) == []
