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
        r"""["']((?:action|content|status|field|footer|result|failure|error|input|click|modal|button|manage|remix|settings|prefs|prefer|show)\.[a-z_]+)["']"""
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
