from __future__ import annotations

import io
import os

import pytest
from PIL import Image

from bot.errors import InputError
from bot.images import SHRINK_FACTOR, check_image, sniff_image


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("fmt", "mime"), [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("GIF", "image/gif"), ("WEBP", "image/webp")]
)
def test_sniffs_real_formats(fmt: str, mime: str) -> None:
    assert sniff_image(encode(Image.new("RGB", (8, 8)), fmt)) == mime


def test_refuses_text_with_an_image_name() -> None:
    with pytest.raises(InputError) as caught:
        check_image(b"GIF? no, just text", max_bytes=1000)
    assert caught.value.key == "input.not_image"


def test_refuses_a_truncated_png() -> None:
    data = encode(Image.new("RGB", (64, 64), "red"), "PNG")
    with pytest.raises(InputError) as caught:
        check_image(data[: len(data) // 2], max_bytes=10**6)
    assert caught.value.key == "input.corrupt_image"


def test_shrinks_an_oversized_transparent_png_to_jpeg() -> None:
    noisy = Image.frombytes("RGBA", (600, 600), os.urandom(600 * 600 * 4))
    data = encode(noisy, "PNG")
    limit = len(data) // 3
    checked = check_image(data, max_bytes=limit)
    assert checked.mime == "image/jpeg" and len(checked.data) <= limit


def test_refuses_far_too_large_files_without_decoding() -> None:
    with pytest.raises(InputError) as caught:
        check_image(b"\x89PNG\r\n\x1a\n" + b"0" * (SHRINK_FACTOR * 1000 + 1), max_bytes=1000)
    assert caught.value.key == "input.too_large"


def test_refuses_decompression_bombs() -> None:
    bomb = encode(Image.new("1", (10000, 5000)), "PNG")  # tiny file, 50 million pixels
    with pytest.raises(InputError) as caught:
        check_image(bomb, max_bytes=10**6)
    assert caught.value.key == "input.too_large"
