"""Proves the fake Discord against a tiny, unmodified discord.py bot (not the project's bot).

Every flow the end-to-end tests rely on is exercised once here: login/READY/GUILD_CREATE,
command sync, slash -> embed + button, DynamicItem button -> modal -> submit -> followup,
attachment download + re-upload, defer -> edit @original -> edit via channel route, a 429 that
discord.py must retry, and a gateway drop that must RESUME with replay of missed events.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord import FLAG_EPHEMERAL, FLAG_LOADING, FakeDiscord

TOKEN = "harness-token"
# 1x1 transparent PNG: small, and a real image so the fake reports its dimensions.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000100e221bc330000000049454e44ae426082"
)


class FeedbackModal(discord.ui.Modal):
    """One legacy text input (action row) and one Label-wrapped input: both modal layouts."""

    def __init__(self, job: int) -> None:
        super().__init__(title="Feedback", custom_id=f"feedback:{job}")
        self.name = discord.ui.TextInput(label="Name", custom_id="name", max_length=32)
        self.bio = discord.ui.TextInput(
            custom_id="bio", style=discord.TextStyle.paragraph, required=False, placeholder="Tell us more"
        )
        self.add_item(self.name)
        self.add_item(discord.ui.Label(text="Bio", component=self.bio))

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"Thanks {self.name.value}", ephemeral=True)
        await interaction.followup.send(f"{self.name.value} says: {self.bio.value or '-'}")


class OpenFormButton(discord.ui.DynamicItem[discord.ui.Button], template=r"form:(?P<job>\d+)"):
    """Persistent button: works after restarts because its state lives in the custom_id."""

    def __init__(self, job: int) -> None:
        button = discord.ui.Button(
            label="Open form", style=discord.ButtonStyle.primary, custom_id=f"form:{job}", emoji="📝"
        )
        super().__init__(button)
        self.job = job

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /
    ) -> OpenFormButton:
        return cls(int(match["job"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(FeedbackModal(self.job))


def build_commands() -> list[app_commands.Command]:
    """Fresh command objects per bot, so tests never share tree state."""

    @app_commands.command(name="ping", description="Health check with a form button")
    async def ping(interaction: discord.Interaction) -> None:
        embed = discord.Embed(title="Pong", description="All systems go", colour=0x5865F2)
        view = discord.ui.View(timeout=None)
        view.add_item(OpenFormButton(7))
        await interaction.response.send_message(embed=embed, view=view)

    @app_commands.command(name="echo", description="Send an attachment back")
    async def echo(interaction: discord.Interaction, file: discord.Attachment) -> None:
        data = await file.read()
        await interaction.response.send_message(
            f"{file.filename}: {len(data)} bytes", file=discord.File(io.BytesIO(data), filename=f"echo-{file.filename}")
        )

    @app_commands.command(name="slow", description="Defer, then edit twice")
    async def slow(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.edit_original_response(content="step 1")
        original = await interaction.original_response()
        assert isinstance(interaction.channel, discord.TextChannel)
        await interaction.channel.get_partial_message(original.id).edit(content="step 2")

    @app_commands.command(name="config", description="Admin only")
    @app_commands.default_permissions(manage_guild=True)
    async def config(interaction: discord.Interaction, retries: int, verbose: bool = False) -> None:
        allowed = interaction.permissions.manage_guild
        await interaction.response.send_message(f"retries={retries} verbose={verbose} admin={allowed}", ephemeral=True)

    return [ping, echo, slow, config]


class HarnessBot(commands.Bot):
    def __init__(self, guild_id: int) -> None:
        # guild_ready_timeout: discord.py waits this long after the last GUILD_CREATE before READY.
        super().__init__(command_prefix="!", intents=discord.Intents.default(), guild_ready_timeout=0.05)
        self.guild_id = guild_id
        self.synced: list[app_commands.AppCommand] = []
        self.resumed = asyncio.Event()
        self.deleted: list[int] = []

    async def setup_hook(self) -> None:
        self.add_dynamic_items(OpenFormButton)
        guild = discord.Object(self.guild_id)
        for command in build_commands():
            self.tree.add_command(command, guild=guild)
        self.synced = await self.tree.sync(guild=guild)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None  # the default sleeps 5 s before every re-IDENTIFY

    async def on_resumed(self) -> None:
        self.resumed.set()

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        self.deleted.append(payload.message_id)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(token=TOKEN) as server:
        yield server


@pytest.fixture
async def bot(fake: FakeDiscord) -> AsyncIterator[HarnessBot]:
    client = HarnessBot(fake.guild.id)
    runner = asyncio.create_task(client.start(TOKEN))
    await fake.wait_for(lambda: client.is_ready() or runner.done(), timeout=10, what="bot READY")
    if runner.done():
        await client.close()
        runner.result()  # surface the start-up error
    await client.wait_until_ready()
    yield client
    await client.close()
    await runner
    assert fake.unknown_routes == []
    assert fake.failed_requests == []


async def test_login_ready_guild_cache_and_sync(fake: FakeDiscord, bot: HarnessBot) -> None:
    assert bot.user is not None and bot.user.id == fake.bot_user.id
    assert bot.application_id == fake.application_id
    guild = bot.get_guild(fake.guild.id)
    assert guild is not None and guild.name == fake.guild.name and guild.owner_id == fake.owner.id
    assert {c.name for c in guild.text_channels} == {"general", "random"}
    assert guild.me is not None and guild.me.guild_permissions.manage_messages
    assert fake.identifies[0]["intents"] == discord.Intents.default().value

    routes = [r.route for r in fake.requests]
    assert routes[:2] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert f"PUT /applications/{fake.application_id}/guilds/{fake.guild.id}/commands" in routes
    assert {c["name"] for c in fake.commands} == {"ping", "echo", "slow", "config"}
    assert {c.id for c in bot.synced} == {int(c["id"]) for c in fake.commands}
    assert fake.command("config", guild=fake.guild)["default_member_permissions"] == str(1 << 5)
    assert "authorization" not in {k.lower() for k in fake.requests[0].headers}


async def test_wrong_token_is_a_login_failure(fake: FakeDiscord) -> None:
    client = HarnessBot(fake.guild.id)
    with pytest.raises(discord.LoginFailure):
        await client.start("not-the-token")
    await client.close()  # Client.start() leaves its HTTP session open when login fails
    assert fake.requests[-1].status == 401
    assert not fake.sessions


async def test_ping_button_modal_and_followup(fake: FakeDiscord, bot: HarnessBot) -> None:
    ping = await fake.slash("ping", user=fake.member, channel=fake.channel)
    reply = await ping.response()
    assert reply.type == 4 and reply.latency < 3
    message = reply.message
    assert message is not None and not message.ephemeral and message.type == 20
    assert message.embed is not None and message.embed["title"] == "Pong"
    assert message.buttons == [("form:7", "Open form", "📝", 1, False)]
    assert fake.channel_messages(fake.channel) == [message]

    click = await fake.click(message, "form:7", user=fake.member)
    opened = await click.response()
    assert opened.type == 9 and opened.modal is not None
    modal = opened.modal
    assert (modal.custom_id, modal.title) == ("feedback:7", "Feedback")
    fields = [(i.custom_id, i.label, i.style, i.max_length, i.placeholder, i.required) for i in modal.inputs]
    assert fields == [("name", "Name", 1, 32, None, True), ("bio", "Bio", 2, None, "Tell us more", False)]

    with pytest.raises(ValueError, match="allows 32 characters"):
        await click.submit_modal({"Name": "x" * 33})
    submit = await click.submit_modal({"Name": "Ada", "bio": "hello"})
    assert [c["type"] for c in submit.data["components"]] == [1, 18]  # action row + label layouts
    thanks = await submit.response()
    assert thanks.type == 4 and thanks.message is not None
    assert thanks.message.content == "Thanks Ada" and thanks.message.flags & FLAG_EPHEMERAL
    [followup] = await submit.wait_followups(1)
    assert followup.content == "Ada says: hello" and not followup.ephemeral
    assert fake.followups == [followup]

    await fake.delete_message(fake.channel, message)
    await fake.wait_for(lambda: message.id in bot.deleted, timeout=5)
    with pytest.raises(ValueError, match="deleted"):
        await fake.click(message, "form:7", user=fake.member)


async def test_attachment_is_downloaded_and_sent_back(fake: FakeDiscord, bot: HarnessBot) -> None:
    handle = await fake.slash(
        "echo", user=fake.member, channel=fake.channel, attachments=[("cat.png", PNG, "image/png")]
    )
    uploaded = handle.data["resolved"]["attachments"]
    [(upload_id, upload)] = uploaded.items()
    assert handle.data["options"] == [{"name": "file", "type": 11, "value": upload_id}]
    assert (upload["width"], upload["height"], upload["content_type"]) == (1, 1, "image/png")

    reply = await handle.response()
    assert reply.message is not None and reply.message.content == f"cat.png: {len(PNG)} bytes"
    [sent] = reply.files
    assert (sent.filename, sent.data, sent.content_type) == ("echo-cat.png", PNG, "image/png")
    assert reply.message.attachments == [sent]
    assert reply.message.to_payload()["attachments"][0]["url"].startswith(fake.base_url)


async def test_defer_then_edit_original_then_channel_edit(fake: FakeDiscord, bot: HarnessBot) -> None:
    handle = await fake.slash("slow", user=fake.admin, channel=fake.channel2)
    assert (await handle.response()).type == 5
    message = await handle.wait_original(lambda m: m.content == "step 2")
    assert [v.content for v in message.history] == ["", "step 1", "step 2"]
    assert message.history[0].flags & FLAG_LOADING and not message.loading
    assert message.history[1].edited_timestamp is None  # filling in a deferral is not an "edit"
    assert message.edited_timestamp is not None
    routes = [r.route for r in fake.requests]
    assert f"PATCH /webhooks/{fake.application_id}/{handle.token}/messages/@original" in routes
    assert f"PATCH /channels/{fake.channel2.id}/messages/{message.id}" in routes


async def test_rate_limited_edit_is_retried(fake: FakeDiscord, bot: HarnessBot) -> None:
    fake.rate_limit_next("PATCH /channels/", count=1, retry_after=0.1)
    handle = await fake.slash("slow", user=fake.member, channel=fake.channel)
    message = await handle.wait_original(lambda m: m.content == "step 2")
    assert fake.rate_limits_sent == 1
    edits = [r for r in fake.requests if r.route == f"PATCH /channels/{fake.channel.id}/messages/{message.id}"]
    assert [(r.status, r.injected) for r in edits] == [(429, True), (200, False)]


async def test_gateway_drop_resumes_and_replays_missed_events(fake: FakeDiscord, bot: HarnessBot) -> None:
    assert await fake.drop_gateway() == 1
    # Sent while the bot is disconnected: buffered and replayed on RESUME.
    handle = await fake.slash("ping", user=fake.member, channel=fake.channel)
    assert (await handle.response()).type == 4
    await asyncio.wait_for(bot.resumed.wait(), 5)
    [session] = fake.sessions
    assert session.resumes == 1 and session.replayed >= 1
    assert [path for path, _ in fake.gateway_connections] == ["/gateway", "/gateway-resume"]


async def test_default_member_permissions_and_typed_options(fake: FakeDiscord, bot: HarnessBot) -> None:
    with pytest.raises(PermissionError):
        await fake.slash("config", user=fake.member, channel=fake.channel, options={"retries": 3})
    with pytest.raises(ValueError, match="missing required"):
        await fake.slash("config", user=fake.admin, channel=fake.channel)
    handle = await fake.slash("config", user=fake.admin, channel=fake.channel, options={"retries": 3, "verbose": True})
    assert [(o["type"], o["value"]) for o in handle.data["options"]] == [(4, 3), (5, True)]
    reply = await handle.response()
    assert reply.message is not None and reply.message.content == "retries=3 verbose=True admin=True"
    assert reply.message.ephemeral and reply.message.visible_to == fake.admin.id


async def test_unknown_routes_are_recorded(fake: FakeDiscord, bot: HarnessBot) -> None:
    with pytest.raises(discord.NotFound):
        await bot.http.request(discord.http.Route("GET", "/nowhere/{channel_id}", channel_id=1))
    assert fake.unknown_routes == ["GET /nowhere/1"]
    fake.unknown_routes.clear()
    fake.requests.clear()
