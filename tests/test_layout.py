"""The house rules that keep the layers apart."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from bot.bot import EXTENSIONS

ROOT = Path(__file__).resolve().parents[1]


def test_every_cog_has_setup_and_is_listed() -> None:
    modules = {f"cogs.{p.stem}" for p in ROOT.joinpath("cogs").glob("*.py") if not p.stem.startswith("_")}
    assert modules == set(EXTENSIONS)
    for name in modules:
        assert callable(getattr(importlib.import_module(name), "setup", None)), name


def test_bot_package_never_imports_cogs() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.joinpath("bot").rglob("*.py")
        if re.search(r"^\s*(from|import)\s+cogs\b", p.read_text(encoding="utf-8"), re.MULTILINE)
    ]
    assert offenders == []


def test_api_client_knows_nothing_about_discord() -> None:
    text = ROOT.joinpath("bot", "upstream", "client.py").read_text(encoding="utf-8")
    assert not re.search(r"^\s*(from|import)\s+discord\b", text, re.MULTILINE)
