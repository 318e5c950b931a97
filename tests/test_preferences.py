from __future__ import annotations

import pytest

from bot.errors import InputError
from bot.preferences import MAX_OPTION_SETS, UserPrefs, apply_preferences, check_option_set, flags_in


def test_typed_flags_override_settings() -> None:
    prefs = UserPrefs(1, version="6.1", stylize=250, aspect="16:9", speed="relax")
    assert apply_preferences("a cat --ar 1:1 --v 7", prefs) == "a cat --ar 1:1 --v 7 --s 250 --relax"
    assert apply_preferences("a cat", prefs) == "a cat --ar 16:9 --v 6.1 --s 250 --relax"


def test_niji_version_and_aliases() -> None:
    prefs = UserPrefs(1, version="niji 6", aspect="2:3")
    assert apply_preferences("a cat --aspect 3:4", prefs) == "a cat --aspect 3:4 --niji 6"
    assert flags_in("x --stylize 5 --Niji 6") == {"s", "v"}


def test_option_set_expands_in_place() -> None:
    prefs = UserPrefs(1, option_sets={"cinematic": "--ar 21:9 --s 250"})
    assert apply_preferences("a street at night --cinematic", prefs) == "a street at night --ar 21:9 --s 250"
    assert apply_preferences("a street --unknown", prefs) == "a street --unknown"


def test_suffix_words_before_parameters_and_flags_only_if_missing() -> None:
    prefs = UserPrefs(1, suffix="soft light --ar 3:2 --s 100")
    assert apply_preferences("a cat --ar 1:1", prefs) == "a cat, soft light --ar 1:1 --s 100"
    assert apply_preferences("a dog", prefs) == "a dog, soft light --ar 3:2 --s 100"


def test_no_prefs_means_prompt_untouched() -> None:
    assert apply_preferences("a cat  --ar 1:1", None) == "a cat  --ar 1:1"


@pytest.mark.parametrize(("name", "key"), [("ar", "prefs.option_is_parameter"), ("bad name!", "prefs.bad_option_name")])
def test_option_set_names_are_checked(name: str, key: str) -> None:
    with pytest.raises(InputError) as caught:
        check_option_set(name, "--s 100", {})
    assert caught.value.key == key


def test_at_most_twenty_option_sets() -> None:
    existing = {f"set{i}": "--s 1" for i in range(MAX_OPTION_SETS)}
    with pytest.raises(InputError):
        check_option_set("one-more", "--s 2", existing)
    assert check_option_set("set3", "--s 9", existing) == ("set3", "--s 9")  # replacing is fine


def test_bad_settings_are_refused() -> None:
    with pytest.raises(InputError):
        UserPrefs(1).with_changes(speed="warp")
    with pytest.raises(InputError):
        UserPrefs(1).with_changes(stylize=5000)
