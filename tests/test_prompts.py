from __future__ import annotations

import pytest

from bot.errors import InputError
from bot.prompts import MAX_PROMPT_CHARS, clean_prompt, with_zoom


def test_clean_prompt_collapses_whitespace() -> None:
    assert clean_prompt("  a  cat\n\n on a mat --ar 16:9 ") == "a cat on a mat --ar 16:9"


@pytest.mark.parametrize(
    ("prompt", "key"),
    [
        ("", "input.empty_prompt"),
        ("   \n ", "input.empty_prompt"),
        ("--ar 16:9 --v 7", "input.only_params"),
        ("x" * (MAX_PROMPT_CHARS + 1), "input.prompt_too_long"),
    ],
)
def test_bad_prompts_are_refused(prompt: str, key: str) -> None:
    with pytest.raises(InputError) as caught:
        clean_prompt(prompt)
    assert caught.value.key == key


def test_with_zoom_replaces_existing_zoom() -> None:
    assert with_zoom("cat --ar 1:1 --zoom 1.2", "1.5") == "cat --ar 1:1 --zoom 1.5"
    assert with_zoom("cat", "2") == "cat --zoom 2"


@pytest.mark.parametrize("zoom", ["0.5", "2.5", "big", ""])
def test_with_zoom_refuses_out_of_range(zoom: str) -> None:
    with pytest.raises(InputError):
        with_zoom("cat", zoom)


@pytest.mark.parametrize(
    "prompt",
    [
        "\u200b\u200b\u200b",  # zero-width spaces
        "\u3164\u3164",  # Hangul fillers
        "\u2800 \u200d \u2060",  # blank Braille, zero-width joiner, word joiner
        "\u200e\u200f\u202e",  # direction marks and overrides
        "\U000e0061\U000e0062",  # tag characters
        "\u3000\u00a0",  # ideographic and no-break spaces
    ],
)
def test_a_prompt_of_only_invisible_characters_is_refused(prompt: str) -> None:
    with pytest.raises(InputError) as caught:
        clean_prompt(prompt)
    assert caught.value.key == "input.empty_prompt"


def test_invisible_characters_before_parameters_do_not_count_as_a_description() -> None:
    with pytest.raises(InputError) as caught:
        clean_prompt("\u200b\u3164 --ar 16:9")
    assert caught.value.key == "input.only_params"


@pytest.mark.parametrize("prompt", ["👨\u200d👩\u200d👧 family", "猫", "e\u0301", "🐈"])
def test_visible_text_with_joiners_or_marks_is_kept_as_typed(prompt: str) -> None:
    assert clean_prompt(prompt) == prompt
