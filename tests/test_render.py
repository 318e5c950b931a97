from __future__ import annotations

import re

from bot import render
from bot.models import MJTask, TaskRecord
from bot.tracking.tracker import apply_update

HASH = "0ddb91a0-af46-4ae9-8e8e-c271074eb6e6"
GRID = [
    *({"customId": f"MJ::JOB::upsample::{i}::{HASH}", "label": f"U{i}", "emoji": "", "style": 2} for i in range(1, 5)),
    {"customId": f"MJ::JOB::reroll::0::{HASH}::SOLO", "label": "", "emoji": "🔄", "style": 2},
    *({"customId": f"MJ::JOB::variation::{i}::{HASH}", "label": f"V{i}", "emoji": "", "style": 2} for i in range(1, 5)),
]
UPSCALED = [
    {"customId": f"MJ::JOB::upsample_v6_2x_subtle::1::{HASH}::SOLO", "label": "Upscale (Subtle)", "emoji": "upscale_1"},
    {
        "customId": f"MJ::JOB::upsample_v6_2x_creative::1::{HASH}::SOLO",
        "label": "Upscale (Creative)",
        "emoji": "upscale_1",
    },
    {"customId": f"MJ::JOB::low_variation::1::{HASH}::SOLO", "label": "Vary (Subtle)", "emoji": "🪄"},
    {"customId": f"MJ::JOB::high_variation::1::{HASH}::SOLO", "label": "Vary (Strong)", "emoji": "🪄"},
    {"customId": f"MJ::Inpaint::1::{HASH}::SOLO", "label": "Vary (Region)", "emoji": "🖌️"},
    {"customId": f"MJ::Outpaint::50::1::{HASH}::SOLO", "label": "Zoom Out 2x", "emoji": "🔍"},
    {"customId": f"MJ::Outpaint::75::1::{HASH}::SOLO", "label": "Zoom Out 1.5x", "emoji": "🔍"},
    {"customId": f"MJ::CustomZoom::{HASH}", "label": "Custom Zoom", "emoji": "🔍"},
    *(
        {"customId": f"MJ::JOB::pan_{d}::1::{HASH}::SOLO", "label": "", "emoji": e}
        for d, e in (("left", "⬅️"), ("right", "➡️"), ("up", "⬆️"), ("down", "⬇️"))
    ),
    {"customId": f"MJ::BOOKMARK::{HASH}", "label": "", "emoji": "❤️"},
]


def record(**kw) -> TaskRecord:
    base = dict(id="1748339100123456", action="IMAGINE", user_id=5, channel_id=6, prompt="a cat", created_at=1000.0)
    base.update(kw)
    return TaskRecord(**base)


def finished(buttons: list[dict], action: str = "IMAGINE") -> TaskRecord:
    task = MJTask.from_json(
        {
            "id": "1748339100123456",
            "action": action,
            "status": "SUCCESS",
            "progress": "100%",
            "imageUrl": "http://x/img.png",
            "buttons": buttons,
        }
    )
    assert task is not None
    return apply_update(record(action=action), task)


def test_grid_buttons_become_two_rows_of_discord_buttons() -> None:
    specs = render.result_buttons(finished(GRID))
    assert [s.label or s.emoji for s in specs] == ["U1", "U2", "U3", "U4", "🔄", "V1", "V2", "V3", "V4"]
    assert [s.row for s in specs] == [0] * 5 + [1] * 4
    assert all(len(s.custom_id) <= 100 for s in specs)
    assert all(re.fullmatch(render.ACTION.template, s.custom_id) for s in specs)


def test_upscale_set_maps_custom_emoji_and_drops_refused_buttons() -> None:
    specs = render.result_buttons(finished(UPSCALED, "UPSCALE"))
    labels = [s.label or s.emoji for s in specs]
    assert "❤️" not in labels  # BOOKMARK is refused by relays and recent trueai
    assert specs[0].emoji == "⬆️"  # upscale_1 is a Discord custom emoji name
    assert len(specs) == 12
    assert max(s.row for s in specs) <= 4
    rows = {}
    for s in specs:
        rows.setdefault(s.row, []).append(s.label or s.emoji)
    assert all(len(r) <= 5 for r in rows.values())


def test_basic_server_grid_without_buttons_gets_change_buttons() -> None:
    specs = render.result_buttons(finished([]))
    assert [re.fullmatch(render.CHANGE.template, s.custom_id)["op"] for s in specs] == [  # type: ignore[index]
        "U1",
        "U2",
        "U3",
        "U4",
        "R",
        "V1",
        "V2",
        "V3",
        "V4",
    ]


def test_progress_render_shows_percent_bar_and_preview() -> None:
    parts = render.render_task(record(status="IN_PROGRESS", progress=45, image_url="http://x/p.png"))
    embed = parts.embed.to_dict()
    status = embed["fields"][0]["value"]
    assert "45%" in status and "█" in status
    assert embed["image"]["url"] == "http://x/p.png"
    assert "<t:1000:R>" in str(embed)


def test_queue_position_and_chinese_locale() -> None:
    parts = render.render_task(record(queue_position=3, locale="zh-CN"))
    assert "前面还有 3 个任务" in str(parts.embed.to_dict())


def test_fingerprint_changes_only_with_what_is_shown() -> None:
    a = render.render_task(record(status="IN_PROGRESS", progress=10)).fingerprint()
    b = render.render_task(record(status="IN_PROGRESS", progress=10, updated_at=99.0)).fingerprint()
    c = render.render_task(record(status="IN_PROGRESS", progress=20)).fingerprint()
    assert a == b
    assert a != c


def test_failure_reasons_are_explained_in_plain_words() -> None:
    cases = {
        "[Banned prompt detected] Sorry! Our AI moderator thinks this prompt is probably against": "content rules",
        "可能包含敏感词": "content rules",
        "执行超时 5 分钟": "took too long",
        "上游任务超时（超过1小时）": "took too long",
        "任务失败，请重试": "account",
        "bot:failure.bot_timeout": "stopped waiting",
    }
    for reason, expected in cases.items():
        assert expected in render.explain_failure(reason, "en"), reason


def test_success_render_uses_the_attachment() -> None:
    parts = render.render_task(finished(GRID), image="attachment://mj_1.png")
    assert parts.embed.to_dict()["image"]["url"] == "attachment://mj_1.png"


def test_static_view_is_stopped_so_dynamic_items_handle_clicks() -> None:
    view = render.build_view(render.result_buttons(finished(GRID)))
    assert view is not None and not view.is_dispatchable()
    assert len(view.children) == 9


def test_apply_update_keeps_unknown_status_and_describe_candidates() -> None:
    task = MJTask.from_json({"id": "1", "status": "WEIRD_NEW", "progress": None})
    assert apply_update(record(), task).status == "WEIRD_NEW"  # type: ignore[arg-type]
    described = MJTask.from_json(
        {
            "id": "1",
            "action": "DESCRIBE",
            "status": "SUCCESS",
            "properties": {"finalPrompt": "1️⃣ red fox\n\n2️⃣ blue fox\n\n3️⃣ green fox\n\n4️⃣ gold fox"},
        }
    )
    updated = apply_update(record(action="DESCRIBE"), described)  # type: ignore[arg-type]
    assert updated.extra["candidates"] == ["red fox", "blue fox", "green fox", "gold fox"]
    assert [s.emoji for s in render.result_buttons(updated)] == ["1️⃣", "2️⃣", "3️⃣", "4️⃣", "🔄"]


# ---- text from upstreams is shown, not obeyed -------------------------------------------------------

HOSTILE = "[Free Nitro](https://evil.example) @everyone @here <@123456789012345678> <@&987654321098765432> <#42>"
PINGS = re.compile(r"@everyone|@here|<@!?\d+>|<@&\d+>|<#\d+>|</[^>]+:\d+>")
MASKED_LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")


def shown_text(parts: render.MessageParts) -> str:
    embed = parts.embed.to_dict()
    fields = " ".join(f"{f['name']} {f['value']}" for f in embed.get("fields", []))
    labels = " ".join(b.label for b in parts.buttons)
    return f"{parts.content} {embed.get('title', '')} {embed.get('description', '')} {fields} {labels}"


def assert_inert(text: str, own_mention: str = "") -> None:
    assert PINGS.findall(text.replace(own_mention, "")) == [], text
    assert MASKED_LINK.search(text) is None, text


def test_a_failure_reason_cannot_ping_or_link() -> None:
    failed = record(status="FAILURE", fail_reason=HOSTILE + "\n# Your account is banned\n-# see above")
    parts = render.render_task(failed)
    assert_inert(shown_text(parts), own_mention="<@5>")
    assert "evil.example" in shown_text(parts)  # shown, as text, with its real address
    assert "\n#" not in parts.embed.fields[0].value  # no heading of the server's making


def test_a_prompt_from_the_server_cannot_ping_or_link() -> None:
    task = MJTask.from_json(
        {"id": "1748339100123456", "status": "IN_PROGRESS", "progress": "10%", "properties": {"finalPrompt": HOSTILE}}
    )
    assert task is not None
    parts = render.render_task(apply_update(record(), task))
    assert_inert(shown_text(parts), own_mention="<@5>")


def test_describe_and_shorten_results_cannot_ping_or_link() -> None:
    described = record(action="DESCRIBE", status="SUCCESS", extra={"candidates": [HOSTILE, "a cat"]})
    shortened = record(action="SHORTEN", status="SUCCESS", extra={"analysis": HOSTILE, "options": [HOSTILE]})
    for task in (described, shortened):
        assert_inert(shown_text(render.render_task(task)), own_mention="<@5>")


def test_button_labels_from_the_server_cannot_ping() -> None:
    buttons = [{"customId": f"MJ::JOB::upsample::1::{HASH}", "label": "@everyone <@&987654321098765432>"}]
    parts = render.render_task(finished(buttons))
    labels = " ".join(b.label for b in parts.buttons)
    assert "everyone" in labels and PINGS.findall(labels) == []


def test_neutralized_text_keeps_every_visible_character() -> None:
    text = "a [cat](dog) @everyone <@1> # not a heading"
    shown = render.neutralize(text)
    assert shown.replace("\\", "").replace(render.ZWSP, "") == text
    assert render.neutralize("a cat --ar 16:9") == "a cat --ar 16:9"


def test_a_fenced_block_cannot_be_closed_from_inside() -> None:
    block = render.fenced("a ``` @everyone")
    assert block.startswith("```\n") and block.endswith("\n```") and block.count("```") == 2
