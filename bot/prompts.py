"""Prompt checks and edits done before anything is submitted (so nothing is charged for bad input)."""

from __future__ import annotations

import re
import unicodedata

from bot.errors import InputError

# Midjourney refuses prompts much longer than this; Discord's own option limit is 6000.
MAX_PROMPT_CHARS = 4000

_PARAM = re.compile(r"(?:^|\s)--[a-zA-Z]")
_ZOOM = re.compile(r"\s*--zoom\s+\S+", re.IGNORECASE)

#: Letters and symbols that draw nothing although Unicode does not class them as format or space
#: characters (Hangul fillers, the blank Braille pattern, Mongolian vowel separator...).
_BLANK_GLYPHS = frozenset("\u115f\u1160\u180e\u2800\u3164\uffa0\u034f\u17b4\u17b5")


def is_invisible(char: str) -> bool:
    """Draws nothing: whitespace, a format character (zero-width space, joiners, direction marks,
    tag characters...), a combining mark with nothing to sit on, or a known blank glyph."""
    if char.isspace() or char in _BLANK_GLYPHS:
        return True
    return unicodedata.category(char) in ("Cf", "Cc", "Zs", "Zl", "Zp", "Mn", "Me")


def has_visible_text(text: str) -> bool:
    return any(not is_invisible(char) for char in text)


def clean_prompt(prompt: str) -> str:
    """Collapse whitespace (MJ ignores newlines) and check what Midjourney would refuse."""
    text = " ".join((prompt or "").split())
    if not has_visible_text(text):
        # Zero-width spaces, direction marks or Hangul fillers alone would be charged for an image
        # of nothing, and show as an empty message.
        raise InputError("input.empty_prompt")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError("input.prompt_too_long", length=len(text), limit=MAX_PROMPT_CHARS)
    match = _PARAM.search(text)
    head = text[: match.start()] if match else text
    if not has_visible_text(head):
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
