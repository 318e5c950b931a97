"""Pure functions from a task to what its Discord message shows.

Nothing here does I/O: the tracker and the cogs decide when to send; this module decides what.
Discord `custom_id`s are built here too, so the buttons we send and the handlers in `cogs/` that
match them agree on one format (the long upstream customIds stay in the database).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, replace

import discord

from bot.i18n import t
from bot.models import (
    CANCEL,
    FAILURE,
    IN_PROGRESS,
    MODAL,
    SUCCESS,
    MJButton,
    TaskRecord,
)

# ---- custom ids (Discord limit: 100 characters) ---------------------------------------------------


@dataclass(frozen=True)
class CustomId:
    """One custom_id shape, written once: `format` builds ids, `template` matches clicks (a
    DynamicItem's template), so the two cannot drift apart. Ids already posted in Discord live on in
    old messages: never change an existing shape, add a new one."""

    prefix: str
    fields: tuple[tuple[str, str], ...]  # (name, regex) in order

    @property
    def format(self) -> str:
        return ":".join([self.prefix, *(f"{{{name}}}" for name, _ in self.fields)])

    @property
    def template(self) -> str:
        return ":".join([self.prefix, *(f"(?P<{name}>{pattern})" for name, pattern in self.fields)])

    def build(self, **values: object) -> str:
        return self.format.format(**values)


_TASK = ("task", r"[0-9A-Za-z_-]{1,40}")

ACTION = CustomId("mj:act", (_TASK, ("index", r"\d{1,2}")))  # an upstream button, by its index in task.buttons
CHANGE = CustomId("mj:chg", (_TASK, ("op", r"[UV][1-4]|R")))  # U1..U4 / V1..V4 / R on basic servers (no buttons)
PICK = CustomId("mj:pick", (_TASK, ("index", r"\d")))  # describe / shorten candidate -> editable imagine
MODAL_TASK = CustomId("mj:open", (_TASK,))  # open the prompt modal of a MODAL task (remix)
REDESCRIBE = CustomId("mj:redo", (_TASK,))  # describe the same image again
RETRY = CustomId("mj:retry", (_TASK,))  # a task that never finished: offer to submit it again
RETRY_CONFIRM = CustomId("mj:retryok", (_TASK,))  # ...after the user confirmed (it may be charged again)
CANCEL_TASK = CustomId("mj:cancel", (_TASK,))  # stop an in-flight task (requester or moderator)
DELETE = CustomId("mj:del", (_TASK,))  # delete a result message (requester or moderator)
SEED = CustomId("mj:seed", (_TASK,))  # ℹ️ seed, full prompt and parameters of a result (cogs/info.py)
#: Extend video `index` (0-3) through /submit/video (cogs/video.py).
EXTEND = CustomId("mj:ext", (_TASK, ("index", r"[0-3]"), ("motion", r"high|low")))
#: A submit whose answer was lost (bot/jobs.py): submit it again, after the user confirmed.
LOST_RETRY = CustomId("mj:lost", (("state", r"[0-9a-f]{16}"),))
LOST_RETRY_CONFIRM = CustomId("mj:lostok", (("state", r"[0-9a-f]{16}"),))

ACTION_ID = ACTION.format
CHANGE_ID = CHANGE.format
PICK_ID = PICK.format
MODAL_TASK_ID = MODAL_TASK.format
REDESCRIBE_ID = REDESCRIBE.format
RETRY_ID = RETRY.format
RETRY_CONFIRM_ID = RETRY_CONFIRM.format
CANCEL_ID = CANCEL_TASK.format
DELETE_ID = DELETE.format
SEED_ID = SEED.format
EXTEND_ID = EXTEND.format

MAX_ROWS = 5
ROW_WIDTH = 5

COLOR_RUNNING = 0x5865F2
COLOR_SUCCESS = 0x57F287
COLOR_FAILURE = 0xED4245

# Discord custom emoji names Midjourney uses, mapped to unicode we can always show.
EMOJI_FALLBACK = {"upscale_1": "⬆️", "upscale_2": "⬆️", "upscale_3": "⬆️", "upscale_4": "⬆️"}

# Buttons that relays and recent trueai refuse (MJ_API.md, Buttons): never offered.
_REFUSED = re.compile(r"^MJ::(BOOKMARK::|JOB::video::|Job::PicReader::all)", re.IGNORECASE)
# Video buttons (MJ_ACCOUNTS_VIDEO.md §7): Animate on an upscale, U1-U4 on a video, Extend on a pick.
_ANIMATE = re.compile(r"^MJ::JOB::animate_(high|low)(_extend)?::", re.IGNORECASE)
_VIDEO_PICK = re.compile(r"^MJ::JOB::video_virtual_upscale::", re.IGNORECASE)
# A server's link is only made clickable when it cannot break out of the markdown around it.
_PLAIN_LINK = re.compile(r"https?://[^\s()<>\[\]`]{1,1000}")
# Describe/shorten picks are done by the bot itself through /submit/imagine.
_BOT_SIDE = re.compile(r"^MJ::(Job::PicReader::|Picread::|Job::PromptAnalyzer::)", re.IGNORECASE)

_INPAINT = re.compile(r"^MJ::Inpaint::", re.IGNORECASE)
_CUSTOM_ZOOM = re.compile(r"^MJ::CustomZoom::", re.IGNORECASE)

GRID_ACTIONS = frozenset({"IMAGINE", "VARIATION", "REROLL", "BLEND", "PAN", "ZOOM", "OUTPAINT"})


def is_custom_zoom(button: MJButton) -> bool:
    return bool(_CUSTOM_ZOOM.match(button.custom_id))


def is_inpaint(button: MJButton) -> bool:
    return bool(_INPAINT.match(button.custom_id))


def action_for_button(button: MJButton) -> str:
    """The action a click will start, for our record until the server reports its own label."""
    cid = button.custom_id.lower()
    for needle, action in (
        ("::upsample", "UPSCALE"),
        ("::reroll::", "REROLL"),
        ("variation::", "VARIATION"),
        ("::pan_", "PAN"),
        ("outpaint::", "ZOOM"),
        ("customzoom::", "ZOOM"),
        ("inpaint::", "INPAINT"),
        ("::video_virtual_upscale::", "UPSCALE"),
        ("::animate_", "VIDEO"),
    ):
        if needle in cid:
            return action
    return "ACTION"


def animate_motion(button: MJButton) -> tuple[str, bool] | None:
    """(motion, is_extend) of an Animate / Extend button, else None."""
    match = _ANIMATE.match(button.custom_id)
    return (match.group(1).lower(), bool(match.group(2))) if match else None


# ---- value objects --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ButtonSpec:
    custom_id: str
    label: str = ""
    emoji: str = ""
    style: int = 2
    row: int = 0
    disabled: bool = False


@dataclass(frozen=True, slots=True)
class MessageParts:
    content: str
    embed: discord.Embed
    buttons: tuple[ButtonSpec, ...] = ()

    def fingerprint(self) -> str:
        """Stable digest of everything the user sees; equal digests mean 'do not edit'."""
        payload = {
            "content": self.content,
            "embed": self.embed.to_dict(),
            "buttons": [(b.custom_id, b.label, b.emoji, b.style, b.row, b.disabled) for b in self.buttons],
        }
        raw = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()[:32]


# ---- helpers --------------------------------------------------------------------------------------


def progress_bar(percent: int | None, width: int = 12) -> str:
    pct = max(0, min(100, percent or 0))
    filled = round(pct * width / 100)
    return "█" * filled + "░" * (width - filled)


def truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


# ---- text from upstreams and members: shown, never obeyed -----------------------------------------

ZWSP = "\u200b"
#: @everyone/@here, users <@1> <@!1>, roles <@&1>, channels <#1>, slash commands </x:1>.
_MENTION = re.compile(r"@(everyone|here)\b|<(?=[@#]|/[^\s>]+:\d+>)", re.IGNORECASE)
#: What makes Discord markdown act rather than show: masked links ([text](url)), headings and
#: sub-text at a line start (# big, -# small), and quotes that could pose as the bot's own lines.
_BRACKET = re.compile(r"[\[\]]")
_LINE_MARK = re.compile(r"^([ \t]*)(#{1,3}|-#|>>>|>)(?=\s)", re.MULTILINE)


def neutralize_mentions(text: str) -> str:
    """Mentions that can neither ping nor render as a mention: a zero-width space after the '@' of
    @everyone/@here and after the '<' of <@id>, <@&id>, <#id> and </command:id>. Plain text (button
    labels) shows no markdown, so this is all it needs."""

    def breaking(match: re.Match[str]) -> str:
        return f"@{ZWSP}{match.group(1)}" if match.group(1) else f"<{ZWSP}"

    return _MENTION.sub(breaking, text)


def neutralize(text: str) -> str:
    """Text someone else wrote (a failure reason, a prompt, describe/shorten results) made safe for
    an embed or a message: mentions broken (neutralize_mentions), masked links shown as their
    brackets and address, and headings/quotes at a line start shown as the characters they are.
    Discord hides the backslashes, so a reader sees the text as written."""
    text = _BRACKET.sub(lambda m: "\\" + m.group(0), neutralize_mentions(text))
    return _LINE_MARK.sub(lambda m: f"{m.group(1)}\\{m.group(2)}", text)


def fenced(text: str) -> str:
    """`text` inside a ``` code block that it cannot close early (a ``` in it gets a zero-width space)."""
    return "```\n" + text.replace("```", f"`{ZWSP}``") + "\n```"


def paginate(lines: list[str], limit: int = 2000) -> list[str]:
    """Lines joined into as few messages as fit Discord's content limit, never splitting a line
    (a line longer than the limit is cut)."""
    pages: list[str] = []
    page = ""
    for line in (truncate(line, limit) for line in lines):
        if page and len(page) + 1 + len(line) > limit:
            pages.append(page)
            page = ""
        page = f"{page}\n{line}" if page else line
    if page:
        pages.append(page)
    return pages


def result_filename(record: TaskRecord, extension: str = "png") -> str:
    return f"mj_{record.id}.{extension}"


def action_name(action: str, locale: str) -> str:
    key = f"action.{action.lower()}" if action else "action.task"
    text = t(key, locale)
    return text if text != key else action.title()


_FAILURE_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("failure.banned", re.compile(r"banned prompt|敏感词|违规|moderat", re.IGNORECASE)),
    ("failure.output_filter", re.compile(r"output filter", re.IGNORECASE)),
    ("failure.queue_full", re.compile(r"queue full|队列已满|并发", re.IGNORECASE)),
    ("failure.cancelled", re.compile(r"取消|cancel", re.IGNORECASE)),
    ("failure.timeout", re.compile(r"超时|time ?out|timed out", re.IGNORECASE)),
    ("failure.invalid", re.compile(r"invalid", re.IGNORECASE)),
    (
        "failure.account",
        re.compile(
            r"subscription|blocked|plan cancelled|pending mod|实例不可用|账号|无可用|任务失败，请重试",
            re.IGNORECASE,
        ),
    ),
)


def explain_failure(reason: str, locale: str) -> str:
    """Free-text failReason (Chinese or English) -> a plain sentence, with the original kept short."""
    reason = (reason or "").strip()
    if reason.startswith("bot:"):  # reasons the bot itself set are already message keys
        return t(reason[4:], locale)
    if not reason:
        return t("failure.unknown", locale)
    # The server's words: shown as text, so they can neither ping nor pose as a link or a heading.
    shown = " ".join(neutralize(reason).split())
    for key, pattern in _FAILURE_PATTERNS:
        if pattern.search(reason):
            plain = t(key, locale)
            return f"{plain}\n-# {truncate(shown, 300)}"
    return t("failure.other", locale, reason=truncate(shown, 500))


def _emoji_for(button: MJButton) -> str:
    emoji = button.emoji
    if not emoji:
        return ""
    if emoji in EMOJI_FALLBACK:
        return EMOJI_FALLBACK[emoji]
    # A bare Discord custom-emoji name (letters, digits, underscores) cannot be shown without its id.
    if re.fullmatch(r"[A-Za-z0-9_]+", emoji):
        return ""
    return emoji


def _group(custom_id: str) -> str:
    cid = custom_id.lower()
    if "::upsample::" in cid or "::reroll::" in cid:
        return "grid-u"
    if "::variation::" in cid and not cid.endswith("::solo"):
        return "grid-v"
    if "outpaint" in cid or "customzoom" in cid:
        return "zoom"
    if "::pan_" in cid:
        return "pan"
    if "upsample_" in cid or "variation" in cid or "inpaint" in cid:
        return "single"
    if "::video_virtual_upscale::" in cid:
        return "grid-u"
    if "::animate_" in cid:
        return "video"
    return "other"


def layout_rows(groups: list[tuple[str, ButtonSpec]]) -> tuple[ButtonSpec, ...]:
    """Midjourney-like rows: each kind of button starts a row; at most 5 rows of 5."""
    rows: list[list[ButtonSpec]] = []
    last_group: str | None = None
    for group, spec in groups:
        if not rows or group != last_group or len(rows[-1]) >= ROW_WIDTH:
            rows.append([])
        rows[-1].append(spec)
        last_group = group
    if len(rows) > MAX_ROWS:  # too many kinds: pack densely instead
        flat = [spec for _, spec in groups][: MAX_ROWS * ROW_WIDTH]
        rows = [flat[i : i + ROW_WIDTH] for i in range(0, len(flat), ROW_WIDTH)]
    placed: list[ButtonSpec] = []
    for row_index, row in enumerate(rows):
        for spec in row:
            placed.append(ButtonSpec(spec.custom_id, spec.label, spec.emoji, spec.style, row_index, spec.disabled))
    return tuple(placed)


def action_buttons(record: TaskRecord) -> tuple[ButtonSpec, ...]:
    """Upstream buttons of a finished task as Discord buttons (refused and bot-side ones left out)."""
    groups: list[tuple[str, ButtonSpec]] = []
    for index, button in enumerate(record.buttons):
        if _REFUSED.match(button.custom_id) or _BOT_SIDE.match(button.custom_id):
            continue
        if through_relay(record) and (_VIDEO_PICK.match(button.custom_id) or "_extend::" in button.custom_id):
            continue  # relays refuse U1-U4 on videos and Extend (unknown_action): never offer a click that fails
        label = truncate(neutralize_mentions(button.label), 80)
        emoji = _emoji_for(button)
        if not label and not emoji:
            label = truncate(button.custom_id.split("::")[2] if "::" in button.custom_id else "?", 80)
        style = button.style if button.style in (1, 2, 3, 4) else 2
        custom_id = ACTION_ID.format(task=record.id, index=index)
        groups.append((_group(button.custom_id), ButtonSpec(custom_id, label, emoji, style)))
    return layout_rows(groups + relay_extend_buttons(record))


def through_relay(record: TaskRecord) -> bool:
    """Made through a relay: /video, Animate and Extend mark their task (cogs/video.py, cogs/actions.py)."""
    return bool(record.extra.get("relay"))


def relay_extend_buttons(record: TaskRecord) -> list[tuple[str, ButtonSpec]]:
    """A video made through a relay: its Extend buttons are ours (/submit/video action=extend with
    the task id and the index), since relays refuse the server's own."""
    if not through_relay(record) or record.action != "VIDEO" or record.status != SUCCESS:
        return []
    count = sum(1 for b in record.buttons if _VIDEO_PICK.match(b.custom_id)) or 1
    specs = []
    for motion, word in (("low", "button.extend_low"), ("high", "button.extend_high")):
        for index in range(min(count, 4)):
            label = t(word, record.locale, n=index + 1)
            specs.append(
                (
                    f"extend-{motion}",
                    ButtonSpec(EXTEND_ID.format(task=record.id, index=index, motion=motion), label, "🎞️"),
                )
            )
    return specs


def change_buttons(record: TaskRecord) -> tuple[ButtonSpec, ...]:
    """Basic servers send no buttons: offer U1-4 / V1-4 / reroll built on /submit/change."""
    specs: list[tuple[str, ButtonSpec]] = []
    for op in ("U1", "U2", "U3", "U4", "R"):
        label, emoji = (op, "") if op != "R" else ("", "🔄")
        specs.append(("grid-u", ButtonSpec(CHANGE_ID.format(task=record.id, op=op), label, emoji)))
    for op in ("V1", "V2", "V3", "V4"):
        specs.append(("grid-v", ButtonSpec(CHANGE_ID.format(task=record.id, op=op), op)))
    return layout_rows(specs)


def pick_buttons(record: TaskRecord, count: int) -> tuple[ButtonSpec, ...]:
    keycaps = ("1️⃣", "2️⃣", "3️⃣", "4️⃣", "5️⃣")
    specs = [
        ("pick", ButtonSpec(PICK_ID.format(task=record.id, index=i + 1), "", keycaps[i]))
        for i in range(min(count, len(keycaps)))
    ]
    return layout_rows(specs)


def result_buttons(record: TaskRecord) -> tuple[ButtonSpec, ...]:
    if record.action == "DESCRIBE":
        picks = pick_buttons(record, len(record.extra.get("candidates", [])))
        retry = ButtonSpec(REDESCRIBE_ID.format(task=record.id), "", "🔄", 2, row=picks[-1].row if picks else 0)
        return (*picks, retry)
    if record.action == "SHORTEN":
        return pick_buttons(record, len(record.extra.get("options", [])))
    specs = action_buttons(record)
    if not record.buttons and record.action in GRID_ACTIONS:
        specs = change_buttons(record)
    return specs


def with_tool_button(buttons: tuple[ButtonSpec, ...], tool: ButtonSpec) -> tuple[ButtonSpec, ...]:
    """Our own button (delete...) goes at the end of the last row, or on a row of its own."""
    if not buttons:
        return (replace(tool, row=0),)
    last_row = max(b.row for b in buttons)
    in_last = sum(1 for b in buttons if b.row == last_row)
    if in_last < ROW_WIDTH:
        return (*buttons, replace(tool, row=last_row))
    if last_row + 1 < MAX_ROWS:
        return (*buttons, replace(tool, row=last_row + 1))
    return buttons


def seed_button(record: TaskRecord) -> ButtonSpec:
    return ButtonSpec(SEED_ID.format(task=record.id), "", "ℹ️", 2)


def tool_buttons(record: TaskRecord) -> tuple[ButtonSpec, ...]:
    """A finished task's buttons plus ℹ️ (seed, prompt, parameters) on Midjourney pictures."""
    buttons = result_buttons(record)
    if record.action in ("DESCRIBE", "SHORTEN", "SWAP_FACE"):  # text results and face swaps have no seed
        return buttons
    return with_tool_button(buttons, seed_button(record))


STUCK_REASON = "bot:failure.bot_timeout"


def is_stuck(record: TaskRecord) -> bool:
    """Ended by the bot's own timeout: the API never reported a result."""
    return record.status == FAILURE and record.fail_reason == STUCK_REASON


def delete_button(record: TaskRecord) -> ButtonSpec:
    return ButtonSpec(DELETE_ID.format(task=record.id), "", "🗑️", 2)


def cancel_button(record: TaskRecord) -> ButtonSpec:
    return ButtonSpec(CANCEL_ID.format(task=record.id), t("button.cancel", record.locale), "✖️", 4)


# ---- the message ----------------------------------------------------------------------------------


def status_line(record: TaskRecord, locale: str) -> str:
    if record.status == IN_PROGRESS:
        if record.progress is None:
            return t("status.running_unknown", locale)
        return t("status.running", locale, bar=progress_bar(record.progress), percent=record.progress)
    if record.status == MODAL:
        return t("status.modal", locale)
    if record.queue_position:
        return t("status.queued", locale, ahead=record.queue_position)
    return t("status.waiting", locale)


def _body_text(record: TaskRecord, locale: str) -> str:
    """The main text of a result: the prompt, or the candidates of describe/shorten."""
    if record.action == "DESCRIBE" and record.status == SUCCESS:
        candidates = record.extra.get("candidates", [])
        lines = [f"**{i + 1}.** {truncate(neutralize(c), 900)}" for i, c in enumerate(candidates)]
        return "\n\n".join(lines) or t("result.no_candidates", locale)
    if record.action == "SHORTEN" and record.status == SUCCESS:
        analysis = truncate(neutralize(record.extra.get("analysis", "")), 1500)
        options = record.extra.get("options", [])
        lines = [f"**{i + 1}.** {truncate(neutralize(o), 400)}" for i, o in enumerate(options)]
        parts = []
        if analysis:
            parts.append(f"**{t('result.important_tokens', locale)}**\n{analysis}")
        parts.append(f"**{t('result.shortened', locale)}**\n" + "\n".join(lines))
        return "\n\n".join(parts)
    prompt = record.final_prompt or record.prompt
    return truncate(neutralize(prompt), 3500) if prompt else ""


def render_task(record: TaskRecord, *, image: str | None = None) -> MessageParts:
    """What the task's message shows now. `image` is the final picture ('attachment://...' or a URL)."""
    locale = record.locale
    title = action_name(record.action, locale)
    mention = f"<@{record.user_id}>"
    started = int(record.created_at) if record.created_at else None
    description = _body_text(record, locale)

    if record.status == SUCCESS:
        embed = discord.Embed(title=title, description=description or None, color=COLOR_SUCCESS)
        shown_image = image or record.result_url or record.image_url
        if record.extra.get("video"):
            # A video is an attachment Discord plays; only a file too large to upload is a link.
            link = record.image_url or ""
            if not image and not record.result_url and _PLAIN_LINK.fullmatch(link):
                embed.add_field(name=t("field.video", locale), value=t("field.video_link", locale, url=link))
        elif shown_image:
            embed.set_image(url=shown_image)
        if record.finished_at and record.created_at:
            took = max(0, int(record.finished_at - record.created_at))
            embed.add_field(name=t("field.took", locale), value=t("duration", locale, m=took // 60, s=took % 60))
        embed.set_footer(text=t("footer.task", locale, id=record.id))
        content = t("content.done", locale, mention=mention)
        return MessageParts(content, embed, with_tool_button(tool_buttons(record), delete_button(record)))

    if record.status in (FAILURE, CANCEL):
        embed = discord.Embed(title=title, description=description or None, color=COLOR_FAILURE)
        embed.add_field(
            name=t("field.failed", locale), value=truncate(explain_failure(record.fail_reason, locale), 1024)
        )
        embed.set_footer(text=t("footer.task", locale, id=record.id))
        buttons: tuple[ButtonSpec, ...] = (delete_button(record),)
        if is_stuck(record) and record.request is not None:
            retry = ButtonSpec(RETRY_ID.format(task=record.id), t("button.retry", locale), "🔁", 1)
            buttons = (retry, *buttons)
        return MessageParts(t("content.failed", locale, mention=mention), embed, buttons)

    embed = discord.Embed(title=title, description=description or None, color=COLOR_RUNNING)
    embed.add_field(name=t("field.status", locale), value=status_line(record, locale), inline=True)
    if started:
        # Discord renders <t:..:R> live ("2 minutes ago"), so elapsed time needs no edits.
        embed.add_field(name=t("field.started", locale), value=f"<t:{started}:R>", inline=True)
    if record.image_url and record.status == IN_PROGRESS:
        embed.set_image(url=record.image_url)
    embed.set_footer(text=t("footer.task", locale, id=record.id))
    return MessageParts(t("content.running", locale, mention=mention), embed, (cancel_button(record),))


def render_submitted(record: TaskRecord) -> MessageParts:
    """The first message, before the tracker has seen the task."""
    return render_task(record)


class StaticView(discord.ui.View):
    """Buttons to show, never to listen on: clicks are handled by the DynamicItems registered in
    cogs/, so this view must stay out of discord.py's view store (which would answer them too)."""

    def is_dispatchable(self) -> bool:
        return False


def build_view(buttons: tuple[ButtonSpec, ...]) -> discord.ui.View | None:
    if not buttons:
        return None
    view = StaticView(timeout=None)
    for spec in buttons:
        view.add_item(
            discord.ui.Button(
                custom_id=spec.custom_id,
                label=spec.label or None,
                emoji=spec.emoji or None,
                style=discord.ButtonStyle(spec.style),
                row=spec.row,
                disabled=spec.disabled,
            )
        )
    view.stop()
    return view
