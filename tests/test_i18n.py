from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from bot.i18n import SUPPORTED, catalog, normalize, t

ROOT = Path(__file__).resolve().parents[1]


def test_every_string_exists_in_every_language() -> None:
    keys = {language: set(catalog(language)) for language in SUPPORTED}
    english = keys["en"]
    for language, found in keys.items():
        assert found == english, f"{language}: missing {sorted(english - found)}, extra {sorted(found - english)}"


def test_placeholders_match_across_languages() -> None:
    english = catalog("en")
    for language in SUPPORTED:
        for key, text in catalog(language).items():
            assert set(re.findall(r"{(\w+)}", text)) == set(re.findall(r"{(\w+)}", english[key])), (language, key)


def test_every_key_used_in_code_exists() -> None:
    pattern = re.compile(
        r"""["']((?:action|content|status|field|footer|result|failure|error|input|click|modal|button|manage|remix|settings|prefs|prefer|show|web|info|retry)\.[a-z_]+)["']"""
    )
    used: set[str] = set()
    for path in [*ROOT.joinpath("bot").rglob("*.py"), *ROOT.joinpath("cogs").rglob("*.py")]:
        used.update(pattern.findall(path.read_text(encoding="utf-8")))
    missing = sorted(key for key in used if key not in catalog("en"))
    assert not missing


def test_locale_fallbacks() -> None:
    assert normalize("zh-CN") == "zh-CN"
    assert normalize("zh-TW") == "zh-CN"
    assert normalize("en-GB") == "en"
    assert normalize(None) == "en"
    assert t("error.quota", "zh-CN") != t("error.quota", "en")
    assert t("status.queued", "fr", ahead=3) == "⏳ Queued, 3 ahead of you"
    assert t("no.such.key") == "no.such.key"


def test_catalogs_are_valid_json_shipped_with_the_package() -> None:
    for language in SUPPORTED:
        text = resources.files("bot.locales").joinpath(f"{language}.json").read_text(encoding="utf-8")
        assert isinstance(json.loads(text), dict)


async def _command_strings() -> dict[str, str]:
    """Every translatable piece of slash-command metadata of every cog: {catalog key: English text}."""
    import importlib
    import inspect

    import discord
    from discord import app_commands
    from discord.ext import commands

    from bot.bot import EXTENSIONS
    from bot.i18n import command_key

    found: dict[str, str] = {}

    class Recorder(app_commands.Translator):
        async def translate(self, string, locale, context):  # type: ignore[no-untyped-def]
            if locale is discord.Locale.chinese:
                key = command_key(string, context)
                assert key is not None, string.message
                found[key] = string.message
            return None

    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))
    for name in EXTENSIONS:
        module = importlib.import_module(name)
        for _, cog in inspect.getmembers(module, inspect.isclass):
            if issubclass(cog, commands.Cog) and cog.__module__ == module.__name__:
                for command in cog.__cog_app_commands__:
                    if command.parent is None:
                        await command.get_translated_payload(tree, Recorder())
    # cogs.accounts adds its commands to /mjadmin when it loads: translate them where they live.
    from cogs.accounts import extend_mjadmin

    mjadmin = app_commands.Group(name="mjadmin", description="-")
    app_commands.Group(name="settings", description="-", parent=mjadmin)
    group, alerts = extend_mjadmin(mjadmin, None)
    for command in (group, alerts):
        await command.get_translated_payload(tree, Recorder())
    return found


async def test_every_command_description_and_choice_exists_in_both_languages() -> None:
    strings = await _command_strings()
    descriptions = {k: v for k, v in strings.items() if not k.endswith(".name")}  # names stay English
    assert "cmd.imagine.description" in descriptions and "choice.midjourney" in descriptions
    for language in SUPPORTED:
        missing = sorted(key for key in descriptions if not catalog(language).get(key))
        assert missing == [], f"{language} lacks {missing}"
    # The English catalog repeats the code's text: a changed description shows up here, so its
    # translation is not left stale.
    stale = {k: (v, catalog("en")[k]) for k, v in descriptions.items() if catalog("en")[k] != v}
    assert stale == {}


async def test_command_keys_in_the_catalogs_are_still_used() -> None:
    used = await _command_strings()
    unused = sorted(k for k in catalog("en") if k.startswith(("cmd.", "choice.")) and k not in used)
    assert unused == []
