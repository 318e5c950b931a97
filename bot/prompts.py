"""Prompt checks and edits done before anything is submitted (so nothing is charged for bad input)."""

from __future__ import annotations

import re

from bot.errors import InputError

# Midjourney refuses prompts much longer than this; Discord's own option limit is 6000.
MAX_PROMPT_CHARS = 4000

_PARAM = re.compile(r"(?:^|\s)--[a-zA-Z]")
_ZOOM = re.compile(r"\s*--zoom\s+\S+", re.IGNORECASE)


def clean_prompt(prompt: str) -> str:
    """Collapse whitespace (MJ ignores newlines) and check what Midjourney would refuse."""
    text = " ".join((prompt or "").split())
    if not text:
        raise InputError("input.empty_prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError("input.prompt_too_long", length=len(text), limit=MAX_PROMPT_CHARS)
    match = _PARAM.search(text)
    head = text[: match.start()] if match else text
    if not head.strip():
        raise InputError("input.only_params")
    return text


def with_zoom(prompt: str, zoom: str) -> str:
    """Custom Zoom needs `--zoom 1..2` at the end of the prompt (MJ_API.md, Buttons)."""
    try:
        value = float(zoom.strip().replace(",", "."))
    except ValueError:
        raise InputError("input.bad_zoom") from None
    if not 1.0 <= value <= 2.0:
        raise InputError("input.bad_zoom")
    base = _ZOOM.sub("", " ".join(prompt.split())).strip()
    shown = f"{value:g}"
    return f"{base} --zoom {shown}".strip()
