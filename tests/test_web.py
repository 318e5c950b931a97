"""Issue 6 without a browser or Discord: editor links, the mask builder, the command translator and
the new settings."""

from __future__ import annotations

import io
import struct
import time
import zlib
from dataclasses import replace

import discord
import pytest
from discord import app_commands
from PIL import Image

from bot.config import ConfigError, Settings
from bot.errors import InputError
from bot.i18n import CatalogTranslator, command_key
from bot.web.inpaint import (
    LINK_TTL,
    InpaintLink,
    LinkError,
    LinkSigner,
    Rect,
    Stroke,
    build_mask,
    check_picture_size,
    link_id,
    parse_shapes,
)
from bot.web.server import _image_size, notify_token, notify_upstream

KEY = bytes(range(32))


# ---- signed editor links ------------------------------------------------------------------------------


def test_a_signed_link_grants_exactly_what_was_signed() -> None:
    signer = LinkSigner(KEY)
    token, link = signer.new_link("1748339100123456", 4, 123456789012345678, "zh-CN", now=1000.0)
    assert link == InpaintLink("1748339100123456", 4, 123456789012345678, "zh-CN", 1000 + LINK_TTL)
    assert signer.verify(token, now=1000.0 + LINK_TTL - 1) == link
    assert token.isascii() and "/" not in token and "=" not in token  # safe in a URL path


def test_an_expired_link_is_refused() -> None:
    signer = LinkSigner(KEY)
    token, link = signer.new_link("42", 1, 7, "en", now=1000.0)
    with pytest.raises(LinkError) as refused:
        signer.verify(token, now=float(link.expires))
    assert refused.value.key == "web.link_expired"


@pytest.mark.parametrize("part", ["task", "index", "user", "expiry"])
def test_a_link_with_changed_contents_is_refused(part: str) -> None:
    signer = LinkSigner(KEY)
    token, link = signer.new_link("42", 1, 7, "en", now=time.time())
    changed = {
        "task": replace(link, task_id="43"),
        "index": replace(link, index=2),
        "user": replace(link, user_id=8),
        "expiry": replace(link, expires=link.expires + 86400),
    }[part]
    forged = LinkSigner(KEY).sign(changed).split(".")[0] + "." + token.split(".")[1]  # old signature, new claims
    with pytest.raises(LinkError) as refused:
        signer.verify(forged)
    assert refused.value.key == "web.link_invalid"


@pytest.mark.parametrize(
    "token", ["", "nodot", "a.b", "!!!.???", "x" * 600, "MTox.AAAA", "OjE6Nzplbjo5OTk5OTk5OTk5.AAAA"]
)
def test_malformed_links_are_refused(token: str) -> None:
    with pytest.raises(LinkError):
        LinkSigner(KEY).verify(token)


def test_a_link_signed_with_another_key_is_refused() -> None:
    token, _ = LinkSigner(bytes(32)).new_link("42", 1, 7, "en")
    with pytest.raises(LinkError):
        LinkSigner(KEY).verify(token)


def test_a_link_has_one_spelling_so_it_cannot_claim_several_submits() -> None:
    signer = LinkSigner(KEY)
    token, _ = signer.new_link("42", 1, 7, "en", now=time.time())
    head, tail = token.split(".")
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # A 32-byte MAC leaves two unused bits in its last character: four characters decode alike.
    same_bytes = [c for c in last if c != tail[-1] and (last.index(c) >> 2) == (last.index(tail[-1]) >> 2)]
    spellings = [f"{head}.{tail}=", f"{head}=.{tail}", f"{head}.{tail[:-1]}{same_bytes[0]}", f"{head}.{tail}\n"]
    for spelling in spellings:
        with pytest.raises(LinkError):
            signer.verify(spelling)
    assert signer.verify(token).task_id == "42"


def test_the_one_submit_claim_is_keyed_by_the_signature() -> None:
    signer = LinkSigner(KEY)
    first, _ = signer.new_link("42", 1, 7, "en", now=1000.0)
    second, _ = signer.new_link("42", 1, 7, "en", now=1001.0)
    assert link_id(first) != link_id(second) and len(link_id(first)) <= 22


# ---- the mask -------------------------------------------------------------------------------------


def pixels(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.mode == "RGB"  # opaque: no alpha channel
    return image


def test_rectangle_mask_is_white_inside_black_outside_and_the_image_size() -> None:
    image = pixels(build_mask(640, 480, [Rect(10, 20, 30, 40)]))
    assert image.size == (640, 480)
    assert {value for _, value in image.getcolors() or []} == {(0, 0, 0), (255, 255, 255)}
    assert image.getbbox() == (10, 20, 30, 40)  # pixels 10..29 x 20..39
    assert image.getpixel((10, 20)) == (255, 255, 255) and image.getpixel((29, 39)) == (255, 255, 255)
    assert image.getpixel((30, 39)) == (0, 0, 0) and image.getpixel((9, 20)) == (0, 0, 0)


def test_a_partly_covered_pixel_is_repainted_and_shapes_are_clipped_to_the_image() -> None:
    image = pixels(build_mask(100, 100, [Rect(90.5, -20, 150, 10.2)]))
    assert image.getbbox() == (90, 0, 100, 11)


def test_brush_stroke_covers_its_path_with_its_width() -> None:
    image = pixels(build_mask(200, 100, [Stroke(20, ((20, 50), (180, 50)))]))
    assert image.getpixel((100, 50)) == (255, 255, 255) and image.getpixel((100, 58)) == (255, 255, 255)
    assert image.getpixel((100, 70)) == (0, 0, 0) and image.getpixel((100, 30)) == (0, 0, 0)
    assert image.getpixel((12, 50)) == (255, 255, 255)  # round cap
    dot = pixels(build_mask(50, 50, [Stroke(10, ((25, 25),))]))
    assert dot.getpixel((25, 25)) == (255, 255, 255) and dot.getpixel((25, 35)) == (0, 0, 0)


def test_a_selection_outside_the_picture_is_refused() -> None:
    with pytest.raises(InputError) as refused:
        build_mask(100, 100, [Rect(150, 150, 190, 190)])
    assert refused.value.key == "web.empty_selection"


def test_a_selection_that_would_ink_the_picture_many_times_over_is_refused_before_drawing() -> None:
    points = [[x % 512, (x * 7) % 512] for x in range(2000)]
    with pytest.raises(InputError) as refused:
        parse_shapes([{"type": "brush", "size": 512, "points": points}], 512, 512)
    assert refused.value.key == "web.selection_too_large"
    assert parse_shapes([{"type": "brush", "size": 20, "points": points}], 512, 512)  # an ordinary brush


def test_a_picture_whose_header_claims_too_many_pixels_is_refused_before_decoding() -> None:
    # A few dozen bytes of PNG that claim 12000 x 12000: Pillow reads the size without decoding anything.
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", 12000, 12000, 8, 2, 0, 0, 0)
    bomb = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")
    assert len(bomb) <= 65 and _image_size(bomb) == (12000, 12000)
    with pytest.raises(InputError) as refused:
        check_picture_size(*_image_size(bomb))
    assert refused.value.key == "web.image_too_large"
    check_picture_size(4096, 4096)  # a 4x upscale is fine


def test_browser_shapes_are_parsed_in_picture_pixels() -> None:
    raw = [
        {"type": "rect", "x": 50, "y": 40, "w": -30, "h": 20},  # dragged right to left
        {"type": "brush", "size": 12, "points": [[1, 2], [3.5, 4]]},
    ]
    assert parse_shapes(raw, 100, 100) == [Rect(20, 40, 50, 60), Stroke(12, ((1, 2), (3.5, 4)))]


@pytest.mark.parametrize(
    "raw",
    [
        None,
        "rect",
        [{"type": "circle", "x": 1}],
        [{"type": "rect", "x": 1, "y": 2, "w": True, "h": 3}],
        [{"type": "rect", "x": float("nan"), "y": 2, "w": 3, "h": 3}],
        [{"type": "brush", "size": 0, "points": [[1, 1]]}],
        [{"type": "brush", "size": 5000, "points": [[1, 1]]}],
        [{"type": "brush", "size": 5, "points": [[1, 1, 1]]}],
        [{"type": "brush", "size": 5, "points": [[0, 0]] * 20_001}],
        [{"type": "rect", "x": 0, "y": 0, "w": 1, "h": 1}] * 201,
        # Finite, but x + w is not (and no browser drags a million pictures wide).
        [{"type": "rect", "x": 1e308, "y": 0, "w": 1e308, "h": 10}],
        [{"type": "brush", "size": 5, "points": [[1e300, 1e300]]}],
    ],
)
def test_malformed_selections_are_refused(raw: object) -> None:
    with pytest.raises(InputError) as refused:
        parse_shapes(raw, 100, 100)
    assert refused.value.key == "web.bad_selection"


def test_an_empty_selection_says_so() -> None:
    with pytest.raises(InputError) as refused:
        parse_shapes([], 100, 100)
    assert refused.value.key == "web.empty_selection"


# ---- command metadata translator --------------------------------------------------------------------


@app_commands.command(name="imagine", description=app_commands.locale_str("Create images from a text prompt"))
@app_commands.describe(prompt=app_commands.locale_str("What to draw, with optional parameters such as --ar 16:9"))
async def _imagine(interaction: discord.Interaction, prompt: str) -> None:  # pragma: no cover - metadata only
    pass


async def test_translator_gives_chinese_for_chinese_locales_and_nothing_for_english() -> None:
    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))
    payload = await _imagine.get_translated_payload(tree, CatalogTranslator())
    assert payload["description_localizations"]["zh-CN"] == "根据文字提示词生成图片"
    assert payload["description_localizations"]["zh-TW"] == "根据文字提示词生成图片"
    assert "en-US" not in payload["description_localizations"]
    option = payload["options"][0]
    assert option["description_localizations"]["zh-CN"].startswith("要画什么")
    assert not payload.get("name_localizations")  # /imagine stays /imagine


def test_explicit_keys_win_over_tree_keys() -> None:
    context = app_commands.TranslationContext(
        app_commands.TranslationContextLocation.choice_name, app_commands.Choice(name="Niji", value="NIJI_JOURNEY")
    )
    assert command_key(app_commands.locale_str("Niji", key="choice.niji"), context) == "choice.niji"
    assert command_key(app_commands.locale_str("Niji"), context) == "choice.niji_journey"


# ---- settings --------------------------------------------------------------------------------------

BASE = {"DISCORD_TOKEN": "token-value", "MJ_API_BASE": "https://relay.example.com"}


def test_web_settings_default_off_and_poll_as_before() -> None:
    settings = Settings.from_env(BASE)
    assert not settings.web_enabled and settings.public_url == "" and settings.web_port is None
    assert settings.simulator_step_seconds == 2.0 and settings.log_format == "text"
    assert settings.tracker_poll_interval == settings.poll_interval


def test_public_url_turns_the_web_server_on_and_push_polling_is_opt_in() -> None:
    env = {**BASE, "PUBLIC_URL": "https://bot.example.com/mj-bot/", "NOTIFY_SECRET": "s" * 24}
    settings = Settings.from_env(env)
    assert settings.web_enabled and settings.public_url == "https://bot.example.com/mj-bot"
    assert settings.tracker_poll_interval == 3.0  # relays drop notifyHook: polling stays fast unless asked
    assert Settings.from_env({**env, "PUSH_POLL_INTERVAL": "20"}).tracker_poll_interval == 20.0
    assert "s" * 24 not in repr(settings)
    assert Settings.from_env({**BASE, "WEB_PORT": "8081"}).web_enabled  # /health only


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PUBLIC_URL": "bot.example.com"}, "PUBLIC_URL"),
        ({"PUBLIC_URL": "https://bot.example.com/?x=1"}, "PUBLIC_URL"),
        ({"WEB_PORT": "http"}, "WEB_PORT"),
        ({"WEB_PORT": "70000"}, "WEB_PORT"),
        ({"NOTIFY_SECRET": "short"}, "NOTIFY_SECRET"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"SIMULATOR_STEP_SECONDS": "0"}, "SIMULATOR_STEP_SECONDS"),
        ({"PUSH_POLL_INTERVAL": "soon"}, "PUSH_POLL_INTERVAL"),
    ],
)
def test_bad_web_settings_name_the_setting(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named) as refused:
        Settings.from_env({**BASE, **env})
    if named == "NOTIFY_SECRET":
        assert "short" not in str(refused.value)  # a secret is never echoed


# ---- push hooks ----------------------------------------------------------------------------------


def test_each_upstream_has_its_own_notify_token_that_names_it() -> None:
    default, key = notify_token("s3cret-push", "default"), notify_token("s3cret-push", "key:7")
    assert default != key and "s3cret-push" not in default + key
    assert notify_upstream("s3cret-push", default) == "default" and notify_upstream("s3cret-push", key) == "key:7"
    assert notify_upstream("another-secret", default) is None
    forged = (
        notify_token("s3cret-push", "key:7").split(".")[0] + "." + default.split(".")[1]
    )  # key 7's name, default's MAC
    assert notify_upstream("s3cret-push", forged) is None
    for junk in ("", "nodot", "s3cret-push", "!!.??", "x" * 400):
        assert notify_upstream("s3cret-push", junk) is None
