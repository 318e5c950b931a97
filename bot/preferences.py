"""A user's Midjourney habits (/settings, /prefer) applied to a prompt.

Pure functions: the prompt the user typed always wins; settings only fill in what is missing,
and option sets (`--cinematic`) expand in place, so the final prompt shows exactly what was sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, replace
from typing import Any

from bot.errors import InputError
from bot.models import Row

MAX_OPTION_SETS = 20
MAX_SUFFIX = 500
MAX_OPTION_VALUE = 300
SPEEDS = ("", "fast", "relax", "turbo")
VISIBILITIES = ("channel", "dm")
VERSIONS = ("", "7", "6.1", "6", "5.2", "niji 6", "niji 5")
ASPECTS = ("", "1:1", "2:3", "3:2", "4:5", "5:4", "9:16", "16:9", "21:9")
STYLIZE_LEVELS = (None, 50, 100, 250, 750)

# Midjourney's own parameters: an option set may not take one of these names.
MJ_PARAMETERS = frozenset(
    "ar aspect c chaos cref cw fast h hd iw no niji p personalize q quality r raw relax repeat s seed "
    "sameseed sref stop style stylize sv sw t tile turbo upbeta uplight v version video w weird zoom".split()
)

_FLAG = re.compile(r"--([A-Za-z][\w-]*)")
_SET_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
_FLAG_ALIASES = {"aspect": "ar", "stylize": "s", "version": "v", "niji": "v", "quality": "q", "chaos": "c"}


@dataclass(frozen=True, slots=True)
class UserPrefs:
    user_id: int
    version: str = ""
    stylize: int | None = None
    speed: str = ""
    remix: bool = False
    visibility: str = "channel"
    aspect: str = ""
    suffix: str = ""
    option_sets: dict[str, str] = field(default_factory=dict, compare=False)

    def with_changes(self, **changes: object) -> UserPrefs:
        # Field names and values come from the /settings form: checked at run time, by replace and validate.
        prefs = replace(self, **changes)  # type: ignore[arg-type]
        validate(prefs)
        return prefs

    @classmethod
    def from_row(cls, row: Row) -> UserPrefs:
        """The prefs a stored user_prefs row holds, on either backend."""
        values = {name: row[name] for name in PREFS_COLUMNS}
        values["remix"] = bool(values["remix"])
        values["option_sets"] = json.loads(values["option_sets"] or "{}")
        return cls(user_id=int(row["user_id"]), **values)

    def column_values(self) -> list[Any]:
        """The values to store, in the order of `PREFS_COLUMNS`."""
        return [prefs_column_value(name, getattr(self, name)) for name in PREFS_COLUMNS]


#: The stored columns of a user's prefs besides user_id (and updated_at, which the store sets).
PREFS_COLUMNS = tuple(f.name for f in fields(UserPrefs) if f.name != "user_id")
#: What the /settings panel sets, and its Reset puts back to the defaults (suffix and option sets are /prefer's).
PANEL_SETTINGS = ("version", "stylize", "speed", "remix", "visibility", "aspect")


def prefs_column_value(name: str, value: Any) -> Any:
    """A UserPrefs field as both backends store it: remix as 0/1, option sets as JSON."""
    if name == "remix":
        return int(bool(value))
    if name == "option_sets":
        return json.dumps(value, ensure_ascii=False)
    return value


def validate(prefs: UserPrefs) -> None:
    if prefs.speed not in SPEEDS:
        raise InputError("prefs.bad_value", name="speed")
    if prefs.visibility not in VISIBILITIES:
        raise InputError("prefs.bad_value", name="visibility")
    if prefs.version not in VERSIONS:
        raise InputError("prefs.bad_value", name="version")
    if prefs.aspect not in ASPECTS:
        raise InputError("prefs.bad_value", name="aspect")
    if prefs.stylize is not None and not 0 <= prefs.stylize <= 1000:
        raise InputError("prefs.bad_value", name="stylize")
    if len(prefs.suffix) > MAX_SUFFIX:
        raise InputError("prefs.suffix_too_long", limit=MAX_SUFFIX)


def check_option_set(name: str, value: str, existing: dict[str, str]) -> tuple[str, str]:
    """A valid (name, value) for /prefer option set, or an InputError saying what is wrong."""
    clean = name.strip().lstrip("-").lower()
    if not _SET_NAME.match(clean):
        raise InputError("prefs.bad_option_name")
    if clean in MJ_PARAMETERS:
        raise InputError("prefs.option_is_parameter", name=clean)
    text = " ".join(value.split())
    if not text or len(text) > MAX_OPTION_VALUE:
        raise InputError("prefs.bad_option_value", limit=MAX_OPTION_VALUE)
    if clean not in existing and len(existing) >= MAX_OPTION_SETS:
        raise InputError("prefs.too_many_options", limit=MAX_OPTION_SETS)
    return clean, text


def flags_in(prompt: str) -> set[str]:
    """Normalised names of the parameters a prompt already carries (--aspect counts as --ar)."""
    found = set()
    for name in _FLAG.findall(prompt):
        lowered = name.lower()
        found.add(_FLAG_ALIASES.get(lowered, lowered))
    return found


def expand_option_sets(prompt: str, option_sets: dict[str, str]) -> str:
    if not option_sets:
        return prompt

    def expand(match: re.Match[str]) -> str:
        value = option_sets.get(match.group(1).lower())
        return value if value is not None else match.group(0)

    return _FLAG.sub(expand, prompt)


def apply_preferences(prompt: str, prefs: UserPrefs | None) -> str:
    """The prompt to send: option sets expanded, the suffix added, then defaults for missing flags."""
    if prefs is None:
        return prompt
    text = expand_option_sets(prompt, prefs.option_sets)
    if prefs.suffix:
        suffix = expand_option_sets(prefs.suffix, prefs.option_sets)
        present = flags_in(text)
        # Words of the suffix go before the prompt's parameters; its flags only if not typed.
        match = _FLAG.search(suffix)
        words, flags = (suffix[: match.start()], suffix[match.start() :]) if match else (suffix, "")
        first_flag = _FLAG.search(text)
        if words.strip():
            if first_flag:
                text = f"{text[: first_flag.start()].rstrip()}, {words.strip()} {text[first_flag.start() :]}"
            else:
                text = f"{text.rstrip()}, {words.strip()}"
        for part in re.split(r"\s(?=--)", flags.strip()):
            name = _FLAG.match(part)
            if name and _FLAG_ALIASES.get(name.group(1).lower(), name.group(1).lower()) not in present:
                text = f"{text} {part}"
    present = flags_in(text)
    extra: list[str] = []
    if prefs.aspect and "ar" not in present:
        extra.append(f"--ar {prefs.aspect}")
    if prefs.version and "v" not in present:
        extra.append(
            f"--niji {prefs.version.split()[1]}" if prefs.version.startswith("niji") else f"--v {prefs.version}"
        )
    if prefs.stylize is not None and "s" not in present:
        extra.append(f"--s {prefs.stylize}")
    if prefs.speed and not present & {"fast", "relax", "turbo"}:
        extra.append(f"--{prefs.speed}")
    return " ".join([" ".join(text.split()), *extra]).strip()
