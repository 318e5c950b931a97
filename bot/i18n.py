"""The one place user-facing text comes from.

Messages live in `bot/locales/<lang>.json`; `t(key, locale, **params)` picks the user's language
and falls back to English, then to the key itself (so a missing string shows up, never crashes).
"""

from __future__ import annotations

import json
import logging
from functools import cache
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en"
SUPPORTED = ("en", "zh-CN")


@cache
def catalog(language: str) -> dict[str, str]:
    try:
        text = resources.files("bot.locales").joinpath(f"{language}.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    return json.loads(text)


def normalize(locale: object) -> str:
    """Discord locales ('zh-CN', 'zh-TW', 'en-US', Locale enums) -> a catalog name."""
    value = str(getattr(locale, "value", locale) or "").strip()
    lowered = value.lower()
    if lowered.startswith("zh"):
        return "zh-CN"
    return DEFAULT_LOCALE


class _Params(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def t(key: str, locale: object = DEFAULT_LOCALE, /, **params: Any) -> str:
    language = normalize(locale)
    text = catalog(language).get(key)
    if text is None:
        text = catalog(DEFAULT_LOCALE).get(key)
    if text is None:
        log.warning("Missing translation key %r", key)
        return key
    return text.format_map(_Params(params))
