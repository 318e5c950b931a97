"""Issue 16, end to end: a slash command's message is edited through its interaction token (not
counted against Discord's bot-wide limit) while the token lives, and with the bot token after."""

from __future__ import annotations

from bot.bot import MJBot
from bot.upstream.simulator import SimulatedProxy
from tests.conftest import is_done
from tests.fakes.discord import FakeDiscord


async def test_imagine_is_edited_through_its_interaction_token(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    handle = await discord_fake.slash(
        "imagine", user=discord_fake.member, channel=discord_fake.channel, options={"prompt": "a lighthouse"}
    )
    message = await handle.wait_original()
    done = await discord_fake.wait_for(lambda: is_done(message) and message, timeout=15)
    assert done.attachments

    token_writes = [r for r in discord_fake.requests if r.method == "PATCH" and r.path.startswith("/webhooks/")]
    bot_writes = [
        r
        for r in discord_fake.requests
        if r.method in ("POST", "PATCH") and r.path.startswith(f"/channels/{discord_fake.channel.id}/messages")
    ]
    assert any(r.files for r in token_writes)  # the result went through the token
    assert len(token_writes) >= 2  # and progress before it
    assert bot_writes == []  # nothing with the bot token
    assert discord_fake.failed_requests == []


async def test_a_token_discord_refuses_early_falls_back_to_the_bot_token(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    """Discord's clock and ours disagree and the token is refused (401) before our 14 minutes: the
    tracker drops it after that one 401 and finishes the task with the bot token."""
    handle = await discord_fake.slash(
        "imagine", user=discord_fake.member, channel=discord_fake.channel, options={"prompt": "a lighthouse"}
    )
    message = await handle.wait_original()
    handle.created_at -= 15 * 60  # on the fake's clock only
    done = await discord_fake.wait_for(lambda: is_done(message) and message, timeout=15)
    assert done.attachments
    refused = [r for r in discord_fake.requests if r.status == 401]
    assert len(refused) == 1 and refused[0].path.startswith("/webhooks/")
    results = [r for r in discord_fake.requests if r.files]
    assert len(results) == 1 and results[0].path.startswith(f"/channels/{discord_fake.channel.id}/messages/")


async def test_a_click_posts_its_task_as_the_interactions_followup_and_edits_it_through_the_token(
    bot: MJBot, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    """U1 under a grid: the upscale's message is the click's followup (shown as answering the grid)
    and every write of it goes through the click's token, none with the bot token."""
    handle = await discord_fake.slash(
        "imagine", user=discord_fake.member, channel=discord_fake.channel, options={"prompt": "a lighthouse"}
    )
    first = await handle.wait_original()
    grid = await discord_fake.wait_for(lambda: is_done(first) and first, timeout=15)
    u1 = next(row.custom_id for row in grid.buttons if row.label == "U1" and row.custom_id)
    click = await discord_fake.click(grid, u1, user=discord_fake.member)
    await click.response()
    upscale = await discord_fake.wait_for_message(lambda m: m.reply_to == grid.id and not m.ephemeral)
    assert upscale.source == "followup" and upscale in click.followups
    done = await discord_fake.wait_for(lambda: is_done(upscale) and upscale, timeout=15)
    assert done.attachments
    channel_writes = [
        r
        for r in discord_fake.requests
        if r.method in ("POST", "PATCH") and r.path.startswith(f"/channels/{discord_fake.channel.id}/messages")
    ]
    upscale_token_writes = [
        r for r in discord_fake.requests if r.method == "PATCH" and r.path.endswith(f"/messages/{upscale.id}")
    ]
    assert channel_writes == []  # neither the post nor any edit used the bot token
    assert upscale_token_writes and all(r.path.startswith("/webhooks/") for r in upscale_token_writes)
    assert any(r.files for r in upscale_token_writes)
