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

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

log = logging.getLogger(__name__)

DEFAULT_LOCALE = "en"
SUPPORTED = ("en", "zh-CN")


@cache
def catalog(language: str) -> dict[str, str]:
    try:
        text = resources.files("bot.locales").joinpath(f"{language}.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    entries: dict[str, str] = json.loads(text)
    return entries


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


# ---- slash command metadata -----------------------------------------------------------------------


def _path(command: Any) -> str:
    return str(getattr(command, "qualified_name", "") or getattr(command, "name", "")).replace(" ", ".").lower()


def command_key(string: app_commands.locale_str, context: app_commands.TranslationContextTypes) -> str | None:
    """The catalog key of one piece of command metadata.

    An explicit `locale_str(..., key=...)` wins; otherwise the key follows the command tree
    (`cmd.<command path>.description`, `cmd.<command path>.<option>.description`, `choice.<value>`),
    so new commands need catalog entries rather than code.
    """
    explicit = string.extras.get("key")
    if explicit:
        return str(explicit)
    where, data = context.location, context.data
    if where in (Where.command_name, Where.group_name):
        return f"cmd.{_path(data)}.name"
    if where in (Where.command_description, Where.group_description):
        return f"cmd.{_path(data)}.description"
    if where in (Where.parameter_name, Where.parameter_description) and isinstance(data, app_commands.Parameter):
        kind = "name" if where is Where.parameter_name else "description"
        return f"cmd.{_path(data.command)}.{data.name}.{kind}"
    if where is Where.choice_name and isinstance(data, app_commands.Choice):
        return f"choice.{str(data.value).lower()}"
    return None


class CatalogTranslator(app_commands.Translator):
    """Command names, descriptions and choices from the same catalogs as messages.

    English stays in the code (Discord's default); other languages come from their catalog. A key
    missing there means "no localization" (Discord shows English), never an error. Names have no
    catalog entries on purpose: members type /imagine as on Midjourney itself.
    """

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        language = normalize(locale)
        if language == DEFAULT_LOCALE:
            return None
        key = command_key(string, context)
        return catalog(language).get(key) if key else None
