"""Parsing of every example payload in shared/MJ_API.md and MJ_API_DETAILS.md §12 (E1..E10)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bot.models import (
    FAILURE,
    MODAL,
    MJButton,
    MJTask,
    SubmitResult,
    coerce_id,
    describe_candidates,
    parse_progress,
    result_extra,
    shorten_result,
    split_candidates,
)

HASH = "0ddb91a0-af46-4ae9-8e8e-c271074eb6e6"
V6_HASH = "39d7cf9f-c2f0-4adf-a124-0020fb9f867f"


def load(text: str) -> dict[str, Any]:
    """Payloads are kept as JSON text, as the servers send them (numbers stay numbers)."""
    return json.loads(text)


def task_of(text: str) -> MJTask:
    task = MJTask.from_json(load(text))
    assert task is not None
    return task


def submit_of(text: str) -> SubmitResult:
    """The client builds SubmitResult the same way (code, coerced result, description, properties)."""
    data = load(text)
    return SubmitResult(
        code=data["code"],
        task_id=coerce_id(data.get("result")) or "",
        description=data.get("description", ""),
        properties=data.get("properties") or {},
    )


# ---- E1: imagine submit answers -----------------------------------------------------------------

E1_ACCEPTED = """{ "code": 1, "description": "Submit success", "result": "1748339029401828",
  "properties": { "discordChannelId": "1050703772185268251", "discordInstanceId": "1648406635623804928" } }"""
E1_QUEUED = """{ "code": 22, "description": "排队中，前面还有1个任务", "result": "0741798445574458",
  "properties": { "numberOfQueues": 1, "discordInstanceId": "1118138338562560102" } }"""
E1_QUEUE_FULL = """{ "code": 23, "description": "队列已满，请稍后尝试", "result": "14001929738841620",
  "properties": { "discordInstanceId": "1118138338562560102" } }"""
E1_BANNED = """{ "code": 24, "description": "可能包含敏感词",
  "properties": { "promptEn": "nude body", "bannedWord": "nude" } }"""


def test_e1_accepted_answer_is_neither_queued_nor_modal() -> None:
    result = submit_of(E1_ACCEPTED)
    assert result.task_id == "1748339029401828"
    assert result.queue_position is None
    assert result.needs_modal is False


def test_e1_queued_answer_keeps_leading_zero_and_queue_position() -> None:
    result = submit_of(E1_QUEUED)
    assert result.task_id == "0741798445574458"
    assert result.queue_position == 1


def test_queue_position_falls_back_to_the_description_for_code_22() -> None:
    result = SubmitResult(code=22, task_id="1", description="排队中，前面还有3个任务")
    assert result.queue_position == 3


def test_queue_position_from_properties_survives_relay_rewrite_to_code_1() -> None:
    result = SubmitResult(code=1, task_id="1", description="Submit success", properties={"numberOfQueues": "2"})
    assert result.queue_position == 2


def test_queue_position_ignores_digits_in_a_code_1_description() -> None:
    result = SubmitResult(code=1, task_id="1", description="queued behind 4 jobs")
    assert result.queue_position is None


def test_e1_error_answers_carry_their_fields() -> None:
    full = load(E1_QUEUE_FULL)
    banned = load(E1_BANNED)
    assert full["code"] == 23 and coerce_id(full["result"]) == "14001929738841620"
    assert banned["properties"]["bannedWord"] == "nude"
    assert MJTask.from_json(banned) is None  # an answer is not a task


# ---- E2 / E3: imagine in progress and finished --------------------------------------------------

E2 = """{
  "id": "1748339029401828", "action": "IMAGINE", "status": "IN_PROGRESS",
  "prompt": "dog playing ball --v 7", "promptEn": "dog playing ball --v 7",
  "description": "/imagine dog playing ball --v 7", "state": "guild:123/user:456",
  "submitTime": 1748339029401, "startTime": 1748339030665, "finishTime": null,
  "progress": "46%",
  "imageUrl": "https://cdn.discordapp.com/attachments/1050703772185268251/1376858480000000000/0ddb91a0-af46-4ae9-8e8e-c271074eb6e6_grid_0.webp?ex=…&is=…&hm=…&",
  "failReason": null, "buttons": [],
  "properties": { "finalPrompt": "dog playing ball --v 7.0", "progressMessageId": "1376858432602243142",
                  "messageHash": "0ddb91a0-af46-4ae9-8e8e-c271074eb6e6", "discordInstanceId": "1648406635623804928" }
}"""


def test_e2_in_progress_task() -> None:
    task = task_of(E2)
    assert task.id == "1748339029401828"
    assert (task.action, task.status, task.progress) == ("IMAGINE", "IN_PROGRESS", 46)
    assert task.is_running and not task.is_final
    assert task.image_url is not None and task.image_url.endswith("_grid_0.webp?ex=…&is=…&hm=…&")
    assert task.final_prompt == "dog playing ball --v 7.0"
    assert task.buttons == ()
    assert task.fail_reason == ""
    assert (task.submit_time, task.start_time, task.finish_time) == (1748339029401, 1748339030665, None)
    assert task.properties["messageHash"] == HASH


E3_BUTTONS = [
    {"customId": f"MJ::JOB::upsample::{i}::{HASH}", "emoji": "", "label": f"U{i}", "type": 2, "style": 2}
    for i in range(1, 5)
]
E3_BUTTONS.append({"customId": f"MJ::JOB::reroll::0::{HASH}::SOLO", "emoji": "🔄", "label": "", "type": 2, "style": 2})
E3_BUTTONS += [
    {"customId": f"MJ::JOB::variation::{i}::{HASH}", "emoji": "", "label": f"V{i}", "type": 2, "style": 2}
    for i in range(1, 5)
]
E3 = json.dumps(
    {
        "id": "1748339029401828",
        "properties": {
            "discordChannelId": "1050703772185268251",
            "botType": "MID_JOURNEY",
            "notifyHook": None,
            "discordInstanceId": "1648406635623804928",
            "flags": 0,
            "messageId": "1376858604266586205",
            "messageHash": HASH,
            "nonce": "1648407736855097344",
            "finalPrompt": "dog playing ball --v 7.0 --p 77724z8",
            "progressMessageId": "1376858432602243142",
            "messageContent": "**dog playing ball --v 7.0 --p 77724z8** - <@1050702627576483930> (relaxed)",
        },
        "action": "IMAGINE",
        "status": "SUCCESS",
        "prompt": "dog playing ball --v 7 --p m7318879261434052637",
        "promptEn": "dog playing ball --v 7 --p m7318879261434052637",
        "description": "/imagine dog playing ball --v 7 --p m7318879261434052637",
        "submitTime": 1748339029401,
        "startTime": 1748339030665,
        "finishTime": 1748339072775,
        "progress": "100%",
        "imageUrl": "https://cdn.discordapp.com/attachments/1050703772185268251/1376858603847417937/"
        f"lzn9819_dog_playing_ball_{HASH}.png?ex=6836daff&is=6835897f&hm=…&",
        "imageHeight": 2048,
        "imageWidth": 2048,
        "failReason": None,
        "state": None,
        "buttons": E3_BUTTONS,
    },
    ensure_ascii=False,
)


def test_e3_success_grid_has_nine_buttons_in_order() -> None:
    task = task_of(E3)
    assert task.is_final and task.status == "SUCCESS" and task.progress == 100
    assert [b.label for b in task.buttons] == ["U1", "U2", "U3", "U4", "", "V1", "V2", "V3", "V4"]
    reroll = task.buttons[4]
    assert reroll.emoji == "🔄" and reroll.custom_id == f"MJ::JOB::reroll::0::{HASH}::SOLO"
    assert all(HASH in b.custom_id for b in task.buttons)
    assert task.final_prompt == "dog playing ball --v 7.0 --p 77724z8"
    assert task.finish_time == 1748339072775


def test_button_round_trips_through_to_json() -> None:
    button = task_of(E3).buttons[0]
    assert MJButton.from_json(button.to_json()) == button


# ---- E4: upscale with the V6 button set ---------------------------------------------------------

E4_BUTTONS = [
    (f"MJ::JOB::upsample_v6_2x_subtle::1::{V6_HASH}::SOLO", "upscale_1", "Upscale (Subtle)"),
    (f"MJ::JOB::upsample_v6_2x_creative::1::{V6_HASH}::SOLO", "upscale_1", "Upscale (Creative)"),
    (f"MJ::JOB::low_variation::1::{V6_HASH}::SOLO", "🪄", "Vary (Subtle)"),
    (f"MJ::JOB::high_variation::1::{V6_HASH}::SOLO", "🪄", "Vary (Strong)"),
    (f"MJ::Inpaint::1::{V6_HASH}::SOLO", "🖌️", "Vary (Region)"),
    (f"MJ::Outpaint::50::1::{V6_HASH}::SOLO", "🔍", "Zoom Out 2x"),
    (f"MJ::Outpaint::75::1::{V6_HASH}::SOLO", "🔍", "Zoom Out 1.5x"),
    (f"MJ::CustomZoom::{V6_HASH}", "🔍", "Custom Zoom"),
    (f"MJ::JOB::pan_left::1::{V6_HASH}::SOLO", "⬅️", ""),
    (f"MJ::JOB::pan_right::1::{V6_HASH}::SOLO", "➡️", ""),
    (f"MJ::JOB::pan_up::1::{V6_HASH}::SOLO", "⬆️", ""),
    (f"MJ::JOB::pan_down::1::{V6_HASH}::SOLO", "⬇️", ""),
    (f"MJ::BOOKMARK::{V6_HASH}", "❤️", ""),
]
E4 = json.dumps(
    {
        "id": "1748339100123456",
        "action": "UPSCALE",
        "status": "SUCCESS",
        "prompt": "cat --v 6.0",
        "promptEn": "cat --v 6.0",
        "description": "Submit success",
        "submitTime": 1713961086000,
        "startTime": 1713961086500,
        "finishTime": 1713961087000,
        "progress": "100%",
        "imageUrl": "https://cdn.discordapp.com/attachments/1148151204875075657/1232666884860547194/"
        f"imgind_cat_{V6_HASH}.png?ex=662a49ff&is=6628f87f&hm=…&",
        "failReason": "",
        "state": "",
        "properties": {"finalPrompt": "cat --v 6.0", "messageHash": V6_HASH, "action_index": 1},
        "buttons": [{"customId": c, "emoji": e, "label": lab, "type": 2, "style": 2} for c, e, lab in E4_BUTTONS],
    },
    ensure_ascii=False,
)


def test_e4_upscale_keeps_all_thirteen_buttons_with_custom_emoji_names() -> None:
    task = task_of(E4)
    assert task.action == "UPSCALE"
    assert [(b.custom_id, b.emoji, b.label) for b in task.buttons] == E4_BUTTONS
    assert task.buttons[0].emoji == "upscale_1"  # a Discord custom-emoji name, mapped later
    assert task.properties["action_index"] == 1
    assert task.fail_reason == ""


# ---- E5: describe --------------------------------------------------------------------------------

E5_FINAL = (
    "1️⃣ A simple, flat cartoon drawing of a blonde-haired, blue-eyed woman in a pink dress … \n\n"
    "2️⃣ A blonde girl with blue eyes, wearing a pink dress and yellow wings … \n\n"
    "3️⃣ A simple, flat cartoon drawing of a blonde-haired, blue-eyed girl … \n\n"
    "4️⃣ A simple, flat cartoon drawing of a blonde girl with blue eyes …"
)
E5_SHORT = "1️⃣ A simple, flat cartoon drawing … \n\n2️⃣ … \n\n3️⃣ … \n\n4️⃣ …"
E5 = json.dumps(
    {
        "id": "1748599984985576",
        "properties": {
            "finalZhPrompt": "1️⃣ …(中文)…",
            "discordChannelId": "1050703772185268251",
            "botType": "MID_JOURNEY",
            "notifyHook": None,
            "discordInstanceId": "1648406635623804928",
            "flags": 0,
            "messageId": "1377952972033626132",
            "nonce": "1649502263904890880",
            "progressMessageId": "1377952972033626132",
            "finalPrompt": E5_FINAL,
        },
        "action": "DESCRIBE",
        "status": "SUCCESS",
        "prompt": E5_SHORT,
        "promptEn": E5_SHORT,
        "description": "/describe 1748599984985576.jpg",
        "submitTime": 1748599984985,
        "startTime": 1748599988911,
        "finishTime": 1748599995216,
        "progress": "100%",
        "imageUrl": "https://cdn.discordapp.com/ephemeral-attachments/1092492867185950852/1377952966417453166/"
        "1748599984985576.jpg?ex=683ad634&is=683984b4&hm=…&",
        "imageHeight": None,
        "imageWidth": None,
        "failReason": None,
        "state": None,
        "buttons": [
            {"customId": "MJ::Job::PicReader::1", "emoji": "1️⃣", "label": "", "type": 2, "style": 2},
            {"customId": "MJ::Job::PicReader::2", "emoji": "2️⃣", "label": "", "type": 2, "style": 2},
            {"customId": "MJ::Job::PicReader::3", "emoji": "3️⃣", "label": "", "type": 2, "style": 2},
            {"customId": "MJ::Job::PicReader::4", "emoji": "4️⃣", "label": "", "type": 2, "style": 2},
            {"customId": "MJ::Picread::Retry", "emoji": "🔄", "label": "", "type": 2, "style": 2},
            {"customId": "MJ::Job::PicReader::all", "emoji": "🎉", "label": "Imagine all", "type": 2, "style": 2},
        ],
    },
    ensure_ascii=False,
)


def test_e5_describe_gives_four_candidates_from_final_prompt_without_keycaps() -> None:
    task = task_of(E5)
    candidates = describe_candidates(task)
    assert len(candidates) == 4
    assert candidates[0] == "A simple, flat cartoon drawing of a blonde-haired, blue-eyed woman in a pink dress …"
    assert candidates[1].startswith("A blonde girl with blue eyes")
    assert not any(c[0].isdigit() or "\u20e3" in c for c in candidates)
    assert [b.custom_id for b in task.buttons][-1] == "MJ::Job::PicReader::all"


def _describe_task(final: str | None, prompt_en: str, prompt: str) -> MJTask:
    task = MJTask.from_json(
        {
            "id": "1",
            "action": "DESCRIBE",
            "status": "SUCCESS",
            "prompt": prompt,
            "promptEn": prompt_en,
            "properties": {"finalPrompt": final},
        }
    )
    assert task is not None
    return task


def test_describe_candidates_prefer_final_prompt() -> None:
    task = _describe_task("1️⃣ final A\n\n2️⃣ final B", "1️⃣ en A", "1️⃣ raw A")
    assert describe_candidates(task) == ["final A", "final B"]


def test_describe_candidates_fall_back_to_prompt_en_then_prompt() -> None:
    assert describe_candidates(_describe_task(None, "1️⃣ en A\n\n2️⃣ en B", "1️⃣ raw A")) == ["en A", "en B"]
    # trueai leaves prompt empty; a relay may have only prompt
    assert describe_candidates(_describe_task("", "", "1️⃣ raw A\n2️⃣ raw B")) == ["raw A", "raw B"]


def test_describe_candidates_keep_at_most_four_and_accept_keycaps_without_fe0f() -> None:
    text = "\n".join(f"{n}\u20e3 option {n}" for n in range(1, 7))
    assert describe_candidates(_describe_task(text, "", "")) == [f"option {n}" for n in range(1, 5)]


def test_describe_candidates_empty_when_nothing_is_numbered() -> None:
    assert describe_candidates(_describe_task("just text", "", "")) == []


def test_split_candidates_keeps_markdown_links_and_drops_blank_lines() -> None:
    text = "1️⃣ a [cat](https://s.mj.run/abc) on a mat --ar 5:4\n\n\n  2️⃣   second  \n"
    assert split_candidates(text) == ["a [cat](https://s.mj.run/abc) on a mat --ar 5:4", "second"]


# ---- E6: shorten ---------------------------------------------------------------------------------

E6_FINAL = (
    "## Important tokens\n**appdash** **appdash**, in the ~~style~~ of ~~expert~~ **draftsmanship**, commission for, "
    "ethereal, dreamlike quality, ~~dadaistic~~, **toonami**\n## Shortened prompts\n"
    "1️⃣ appdash appdash, draftsmanship, commission for, ethereal, toonami\n\n"
    "2️⃣ appdash appdash, draftsmanship, commission, toonami\n\n"
    "3️⃣ appdash appdash, draftsmanship, toonami\n\n"
    "4️⃣ appdash appdash, toonami\n\n"
    "5️⃣ appdash appdash"
)
E6_PROMPT = (
    "appdash appdash, in the style of expert draftsmanship, commission for, ethereal, dreamlike quality, "
    "dadaistic, toonami"
)
E6 = json.dumps(
    {
        "id": "1689252749098647",
        "action": "SHORTEN",
        "status": "SUCCESS",
        "prompt": E6_PROMPT,
        "description": f"/shorten {E6_PROMPT}",
        "progress": "100%",
        "imageUrl": None,
        "properties": {"finalPrompt": E6_FINAL},
        "buttons": [
            {"customId": "MJ::Job::PromptAnalyzer::1", "emoji": "1️⃣", "label": "", "type": 2, "style": 2},
            {"customId": "MJ::Job::PromptAnalyzer::5", "emoji": "5️⃣", "label": "", "type": 2, "style": 2},
            {"customId": "<?>", "emoji": "", "label": "Show Details", "type": 2, "style": 2},
        ],
    },
    ensure_ascii=False,
)
E6_OPTIONS = (
    "appdash appdash, draftsmanship, commission for, ethereal, toonami",
    "appdash appdash, draftsmanship, commission, toonami",
    "appdash appdash, draftsmanship, toonami",
    "appdash appdash, toonami",
    "appdash appdash",
)


def test_e6_shorten_gives_analysis_and_five_options() -> None:
    task = task_of(E6)
    result = shorten_result(task)
    assert result.options == E6_OPTIONS
    assert result.analysis.startswith("**appdash** **appdash**, in the ~~style~~")
    assert "Important tokens" not in result.analysis and "##" not in result.analysis
    assert task.image_url is None
    assert [b.label for b in task.buttons] == ["", "", "Show Details"]


def test_shorten_reads_description_when_final_prompt_is_missing() -> None:
    """trueai also puts the text in description; a relay only in finalPrompt (read first)."""
    task = MJTask.from_json({"id": "2", "action": "SHORTEN", "status": "SUCCESS", "description": E6_FINAL})
    assert task is not None
    assert shorten_result(task).options == E6_OPTIONS


def test_shorten_without_section_marker_still_finds_numbered_options() -> None:
    task = MJTask.from_json({"id": "3", "properties": {"finalPrompt": "1️⃣ one\n\n2️⃣ two"}})
    assert task is not None
    assert shorten_result(task).options == ("one", "two")


def test_result_extra_per_action() -> None:
    assert result_extra(task_of(E5))["candidates"][1].startswith("A blonde girl")
    extra = result_extra(task_of(E6))
    assert extra["options"] == list(E6_OPTIONS)
    assert result_extra(task_of(E3)) == {}


# ---- E7: failure ---------------------------------------------------------------------------------

E7 = """{ "id": "1748340000000123", "action": "IMAGINE", "status": "FAILURE", "prompt": "…", "promptEn": "…",
  "description": "/imagine …", "submitTime": 1748340000000, "startTime": 1748340001200, "finishTime": 1748340004100,
  "progress": "", "imageUrl": null,
  "failReason": "[Banned prompt detected] Sorry! Our AI moderator thinks this prompt is probably against our \
community standards. …",
  "buttons": [], "properties": { "finalPrompt": null } }"""


def test_e7_failure_is_final_with_reason_and_unknown_progress() -> None:
    task = task_of(E7)
    assert task.status == FAILURE and task.is_final
    assert task.progress is None
    assert task.fail_reason.startswith("[Banned prompt detected] Sorry!")
    assert task.final_prompt == ""
    assert task.image_url is None


def test_relay_failure_with_100_percent_is_still_a_failure() -> None:
    task = MJTask.from_json(
        {"id": "9", "status": "FAILURE", "progress": "100%", "failReason": "上游任务超时（超过1小时）"}
    )
    assert task is not None
    assert task.status == FAILURE and task.progress == 100 and task.fail_reason == "上游任务超时（超过1小时）"


# ---- E8: the modal flow --------------------------------------------------------------------------

E8_ACTION_ANSWER = """{ "code": 21, "description": "Waiting for window confirm", "result": "1748339200456789",
  "properties": { "finalPrompt": "cat --v 6.0", "remix": true } }"""
E8_MODAL_TASK = """{ "id": "1748339200456789", "action": "ZOOM", "status": "MODAL", "parentId": "1748339100123456",
  "description": "Waiting for window confirm", "progress": null, "buttons": [] }"""
E8_MODAL_ANSWER = """{ "code": 1, "description": "提交成功", "result": "1748339200456789",
  "properties": { "discordInstanceId": "…", "discordChannelId": "…" } }"""
E8_RELAY_REMIX = """{ "code": 1, "description": "Waiting for window confirm", "result": "1748339200456790",
  "properties": { "finalPrompt": "cat --v 6.0", "remix": true } }"""
E8_PICREADER_ALL = """{ "code": 1, "description": "成功",
  "result": "1748600000000111,1748600000200222,1748600000400333,1748600000600444" }"""


def test_e8_code_21_needs_modal_and_prefills_final_prompt() -> None:
    result = submit_of(E8_ACTION_ANSWER)
    assert result.needs_modal
    assert result.final_prompt == "cat --v 6.0"
    assert result.task_id == "1748339200456789"


def test_e8_fetched_modal_task() -> None:
    task = task_of(E8_MODAL_TASK)
    assert task.status == MODAL and not task.is_final and not task.is_running
    assert task.progress is None and task.action == "ZOOM"


def test_e8_modal_submit_answer_is_plain_success() -> None:
    result = submit_of(E8_MODAL_ANSWER)
    assert result.code == 1 and not result.needs_modal and result.task_id == "1748339200456789"


def test_relay_rewritten_remix_answer_still_needs_modal() -> None:
    assert submit_of(E8_RELAY_REMIX).needs_modal


@pytest.mark.parametrize(
    ("description", "properties", "expected"),
    [
        ("Waiting for window confirm", {}, True),  # relay rewrote 21 -> 1
        ("Submit success", {"remix": True}, True),
        ("Submit success", {"remix": "true"}, False),  # only a real boolean counts
        ("Submit success", {}, False),
    ],
)
def test_needs_modal_for_code_1(description: str, properties: dict[str, Any], expected: bool) -> None:
    assert SubmitResult(code=1, task_id="1", description=description, properties=properties).needs_modal is expected


def test_e8_picreader_all_result_is_a_comma_joined_id_list() -> None:
    data = load(E8_PICREADER_ALL)
    ids = str(data["result"]).split(",")
    assert len(ids) == 4 and all(len(i) == 16 for i in ids)


# ---- E9: relay error bodies are not tasks ---------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        '{ "description": "unknown_action:MJ::Job::PicReader::1 ", "type": "upstream_error", "code": 4 }',
        '{ "description": "task_no_found ", "type": "upstream_error", "code": 4 }',
        '{ "error": { "message": "invalid token (request id: x)", "type": "new_api_error", "code": "" } }',
        '{ "success": false, "code": -1, "message": "今日绘图次数已达上限", "timestamp": "638" }',
    ],
)
def test_e9_error_bodies_do_not_parse_as_tasks(body: str) -> None:
    assert MJTask.from_json(load(body)) is None


# ---- E10: notifyHook body ------------------------------------------------------------------------

E10 = """{ "id": "14001929738841620", "action": "IMAGINE", "status": "SUCCESS", "prompt": "猫猫", "promptEn": "Cat",
  "description": "/imagine 猫猫", "submitTime": 1689231405854, "startTime": 1689231442755, "finishTime": 1689231544312,
  "progress": "100%", "imageUrl": "https://cdn.discordapp.com/attachments/xxx/xxx/xxxx.png", "failReason": null,
  "properties": { "finalPrompt": "Cat" }, "buttons": [] }"""


def test_e10_hook_body_parses_like_fetch() -> None:
    task = task_of(E10)
    assert task.id == "14001929738841620"
    assert (task.prompt, task.prompt_en, task.final_prompt) == ("猫猫", "Cat", "Cat")
    assert task.is_final and task.image_url == "https://cdn.discordapp.com/attachments/xxx/xxx/xxxx.png"


# ---- ids, missing fields, unknown values ---------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1748339029401828", "1748339029401828"),
        (1320098173412546, "1320098173412546"),
        (14001929738841620, "14001929738841620"),  # 17 digits: beyond float precision
        ("0741798445574458", "0741798445574458"),
        ("  42 ", "42"),
        (1.0e15, "1000000000000000"),
        ("", None),
        (None, None),
        (True, None),
    ],
)
def test_coerce_id(raw: Any, expected: str | None) -> None:
    assert coerce_id(raw) == expected


def test_numeric_task_id_in_json_text_stays_exact() -> None:
    task = task_of('{"id": 14001929738841621, "status": "SUCCESS"}')
    assert task.id == "14001929738841621"


def test_minimal_task_has_safe_defaults() -> None:
    task = task_of('{"id": "1"}')
    assert (task.action, task.status, task.progress, task.prompt, task.image_url) == ("", "", None, "", None)
    assert task.buttons == () and task.properties == {} and task.final_prompt == ""
    assert not task.is_final and not task.is_running


@pytest.mark.parametrize("data", [None, [], "task", 5, {}, {"id": None}, {"id": ""}, {"status": "SUCCESS"}])
def test_not_a_task(data: Any) -> None:
    assert MJTask.from_json(data) is None


def test_wrong_types_are_tolerated() -> None:
    task = task_of(
        '{"id": "1", "properties": "oops", "buttons": {"a": 1}, "submitTime": "1748339029401",'
        ' "startTime": "soon", "imageUrl": "  ", "failReason": 0}'
    )
    assert task.properties == {} and task.buttons == ()
    assert task.submit_time == 1748339029401 and task.start_time is None
    assert task.image_url is None
    assert task.fail_reason == "0"


def test_unknown_status_and_action_are_kept_as_text() -> None:
    task = task_of('{"id": "1", "action": "video_extend", "status": "Paused"}')
    assert task.action == "VIDEO_EXTEND" and task.status == "PAUSED"
    assert not task.is_final


def test_relay_empty_status_means_not_started() -> None:
    task = task_of('{"id": "1", "status": "", "progress": "0%"}')
    assert task.status == "" and task.progress == 0 and not task.is_final and not task.is_running


def test_lowercase_status_is_normalised() -> None:
    assert task_of('{"id": "1", "status": "success"}').is_final


def test_buttons_without_custom_id_are_dropped_and_style_defaults() -> None:
    task = task_of(
        json.dumps(
            {
                "id": "1",
                "buttons": [
                    {"label": "Web", "style": 5, "url": "https://midjourney.com"},
                    "junk",
                    {"customId": "MJ::JOB::upsample::1::h", "label": "U1"},
                    {"customId": "MJ::JOB::upsample::2::h", "label": "U2", "style": "1"},
                ],
            }
        )
    )
    assert [(b.custom_id, b.style) for b in task.buttons] == [
        ("MJ::JOB::upsample::1::h", 2),
        ("MJ::JOB::upsample::2::h", 1),
    ]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("45%", 45),
        ("0%", 0),
        ("100%", 100),
        (" 7 %", 7),
        ("(33%) (relaxed)", 33),
        ("150%", 100),
        (46, 46),
        (12.7, 12),
        ("", None),
        (None, None),
        ("Waiting to start", None),
        ("Stopped", None),
        (True, None),
    ],
)
def test_parse_progress(raw: Any, expected: int | None) -> None:
    assert parse_progress(raw) == expected


def test_progress_forms_inside_a_task() -> None:
    assert task_of('{"id": "1", "progress": "Waiting to start"}').progress is None
    assert task_of('{"id": "1", "progress": null}').progress is None
    assert task_of('{"id": "1", "progress": "45%"}').progress == 45
