"""Issue 9: what Midjourney users reach for — /settings, /prefer, remix, /show, cancel and delete."""

from __future__ import annotations

from bot.upstream.simulator import SimulatedProxy
from tests.conftest import API_KEY, BotRunner, is_done
from tests.fakes.discord import FakeDiscord, FakeMessage


async def imagine(fake: FakeDiscord, prompt: str, user: object = None) -> FakeMessage:
    handle = await fake.slash("imagine", user=user or fake.member, channel=fake.channel, options={"prompt": prompt})
    return await handle.wait_original()


async def open_settings(fake: FakeDiscord) -> FakeMessage:
    handle = await fake.slash("settings", user=fake.member, channel=fake.channel)
    return await handle.wait_original()


def custom_id(message: FakeMessage, label: str) -> str:
    return next(r.custom_id for r in message.buttons if label in (r.label, r.emoji) and r.custom_id)


async def test_settings_change_survives_a_restart_and_shapes_the_prompt(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start()
    panel = await open_settings(discord_fake)
    assert panel.ephemeral
    await (await discord_fake.select(panel, "mj:set:version", ["7"], user=discord_fake.member)).response()
    await (await discord_fake.select(panel, "mj:set:aspect", ["16:9"], user=discord_fake.member)).response()
    await discord_fake.wait_for(lambda: "16:9" in panel.text(), timeout=5)

    await runner.restart()
    again = await open_settings(discord_fake)
    assert "7" in again.text() and "16:9" in again.text()
    await imagine(discord_fake, "a cat --ar 1:1")
    sent = await discord_fake.wait_for(lambda: mj.submits("/submit/imagine"), timeout=5)
    assert sent[0].json["prompt"] == "a cat --ar 1:1 --v 7"  # the typed --ar wins over the setting


async def test_option_set_expands_in_the_submitted_and_shown_prompt(
    bot: object, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    handle = await discord_fake.slash(
        "prefer",
        subcommand="option set",
        user=discord_fake.member,
        channel=discord_fake.channel,
        options={"name": "cinematic", "value": "--ar 21:9 --s 250"},
    )
    assert "--cinematic" in (await handle.wait_original()).text()
    message = await imagine(discord_fake, "a street at night --cinematic")
    sent = await discord_fake.wait_for(lambda: mj.submits("/submit/imagine"), timeout=5)
    assert sent[0].json["prompt"] == "a street at night --ar 21:9 --s 250"
    assert "--ar 21:9 --s 250" in message.text()

    listing = await discord_fake.slash(
        "prefer", subcommand="option list", user=discord_fake.member, channel=discord_fake.channel
    )
    assert "cinematic" in (await listing.wait_original()).text()


async def test_remix_setting_edits_the_prompt_before_a_variation(runner: BotRunner, discord_fake: FakeDiscord) -> None:
    async with SimulatedProxy(flavor="trueai", api_key=API_KEY, clock="reads", progress_steps=2) as proxy:
        await runner.start(api_base=proxy.base_url, api_auth_style="raw")
        panel = await open_settings(discord_fake)
        await (await discord_fake.click(panel, "mj:tog:remix", user=discord_fake.member)).response()
        grid = await imagine(discord_fake, "a paper crane")
        await discord_fake.wait_for(lambda: is_done(grid), timeout=15)

        click = await discord_fake.click(grid, custom_id(grid, "V1"), user=discord_fake.member)
        await click.response()
        assert click.modal is not None and "a paper crane" in (click.modal.inputs[0].value or "")
        await click.submit_modal({"Prompt": "a golden paper crane"})
        modal = await discord_fake.wait_for(lambda: proxy.submits("/submit/modal"), timeout=10)
        assert modal[0].json["prompt"] == "a golden paper crane"
        assert proxy.submits("/submit/action")[0].json["enableRemix"] is True


async def test_show_brings_back_a_result_from_before_a_restart_with_live_buttons(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start()
    grid = await imagine(discord_fake, "a lantern")
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    task_id = next(iter(mj.tasks))
    await runner.restart()

    handle = await discord_fake.slash(
        "show", user=discord_fake.member, channel=discord_fake.channel2, options={"task_id": task_id}
    )
    shown = await handle.wait_original()
    assert shown.channel_id == discord_fake.channel2.id and shown.attachments
    await (await discord_fake.click(shown, custom_id(shown, "U4"), user=discord_fake.member)).response()
    await discord_fake.wait_for(lambda: mj.submits("/submit/action"), timeout=10)

    stranger = discord_fake.add_member("stranger")
    other = await discord_fake.slash("show", user=stranger, channel=discord_fake.channel, options={"task_id": task_id})
    assert "No result" in (await other.wait_original()).text()


async def test_cancel_is_refused_to_others_and_stops_tracking_for_the_requester(
    bot: object, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await imagine(discord_fake, "a slow river")
    mj.hold(next(iter(mj.tasks)))
    cancel = await discord_fake.wait_for(
        lambda: next(
            (r.custom_id for r in message.buttons if r.custom_id and r.custom_id.startswith("mj:cancel:")), None
        )
    )
    stranger = discord_fake.add_member("stranger")
    refused = await discord_fake.click(message, cancel, user=stranger)
    await refused.response()
    assert "Only the person" in (await refused.wait_original()).text()
    assert "Cancel" in [r.label for r in message.buttons]

    done = await discord_fake.click(message, cancel, user=discord_fake.member)
    await done.response()
    await discord_fake.wait_for(lambda: "Cancelled" in message.text(), timeout=5)
    assert bot.tracker.active_ids == []  # type: ignore[attr-defined]


async def test_delete_removes_the_result_message(bot: object, discord_fake: FakeDiscord, mj: SimulatedProxy) -> None:
    grid = await imagine(discord_fake, "a kite")
    await discord_fake.wait_for(lambda: is_done(grid), timeout=15)
    await (await discord_fake.click(grid, custom_id(grid, "🗑️"), user=discord_fake.member)).response()
    await discord_fake.wait_for(lambda: grid.deleted, timeout=5)


async def test_info_lists_the_running_queue_quota_speed_and_key(
    bot: object, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    message = await imagine(discord_fake, "a long night")
    mj.hold(next(iter(mj.tasks)))
    handle = await discord_fake.slash("settings", user=discord_fake.member, channel=discord_fake.channel)
    panel = await handle.wait_original()
    await (await discord_fake.select(panel, "mj:set:speed", ["relax"], user=discord_fake.member)).response()

    info = await discord_fake.slash("info", user=discord_fake.member, channel=discord_fake.channel)
    shown = await info.wait_original()
    text = shown.text()
    assert shown.ephemeral
    assert "a long night" in text and str(message.id) in str(shown.embeds)
    assert "relax" in text
    assert "Today" in text or "today" in text
    assert "default key" in text


async def test_stalled_task_ends_with_a_working_retry_after_confirmation(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    await runner.start(task_timeout=1.0)
    message = await imagine(discord_fake, "a stuck clock")
    mj.hold(next(iter(mj.tasks)))
    await discord_fake.wait_for(lambda: "stopped waiting" in message.text(), timeout=10)
    retry = custom_id(message, "Retry")

    stranger = discord_fake.add_member("stranger")
    refused = await discord_fake.click(message, retry, user=stranger)
    assert "Only the person" in (await refused.wait_original()).text()

    ask = await discord_fake.click(message, retry, user=discord_fake.member)
    confirm = await ask.wait_original()
    assert confirm.ephemeral and "charge" in confirm.text()
    assert len(mj.submits("/submit/imagine")) == 1  # nothing re-sent before the user confirms

    await runner.restart(task_timeout=600.0)  # the confirm button survives a restart too
    await (
        await discord_fake.click(confirm, custom_id(confirm, "Yes, submit again"), user=discord_fake.member)
    ).response()
    again = await discord_fake.wait_for(
        lambda: len(mj.submits("/submit/imagine")) == 2 and mj.submits("/submit/imagine")
    )
    assert again[1].json["prompt"] == "a stuck clock"
    new = await discord_fake.wait_for_message(lambda m: m.reply_to == message.id)
    await discord_fake.wait_for(lambda: is_done(new), timeout=15)


async def test_a_task_whose_listing_stalls_is_read_on_its_own_and_finishes(
    runner: BotRunner, discord_fake: FakeDiscord, mj: SimulatedProxy
) -> None:
    bot = await runner.start(stall_seconds=1.0)
    message = await imagine(discord_fake, "a frozen river")
    task_id = next(iter(mj.tasks))
    await discord_fake.wait_for(lambda: mj.tasks[task_id].status == "IN_PROGRESS", timeout=10)
    mj.freeze_listing(task_id)  # list-by-condition now answers the same progress forever
    await discord_fake.wait_for(lambda: is_done(message), timeout=15)
    fetches = [r for r in mj.requests if r.path.endswith(f"/task/{task_id}/fetch")]
    assert fetches, "the stalled task was never read on its own"
    assert bot.tracker.counters.stall_reads >= 1
