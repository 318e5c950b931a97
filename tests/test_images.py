from __future__ import annotations

import io
import os
import threading

import pytest
from PIL import Image

from bot import images
from bot.errors import InputError
from bot.images import MAX_DECODE_PIXELS, SHRINK_FACTOR, check_image, sniff_image


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


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_refuses_decompression_bombs_by_their_pixels() -> None:
    bomb = encode(Image.new("1", (12000, 12000)), "PNG")  # tiny file, 144 million pixels
    assert len(bomb) < 10**6
    with pytest.raises(InputError) as caught:
        check_image(bomb, max_bytes=10**6)
    assert caught.value.key == "input.too_many_pixels"
    assert caught.value.params["megapixels"] == "144"
    assert caught.value.params["limit_mp"] == f"{MAX_DECODE_PIXELS / 1e6:.0f}"


def test_a_48_megapixel_phone_photo_is_shrunk_by_its_pixels() -> None:
    """Issue 17 item 3: an 8000x6000 JPEG of half a megabyte was refused as "0.5 MB; the limit is 10 MB"."""
    photo = Image.radial_gradient("L").resize((8000, 6000)).convert("RGB")
    data = encode(photo, "JPEG")
    assert len(data) < 10 * 1048576
    checked = check_image(data, max_bytes=10 * 1048576)
    assert checked.mime == "image/jpeg" and max(checked.width, checked.height) == 2048
    assert checked.width * checked.height < 8000 * 6000 and len(checked.data) <= 10 * 1048576


async def test_checking_an_upload_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Item 9: Pillow work on members' attachments runs in a worker thread, not on the event loop."""
    threads: list[threading.Thread] = []

    def watched(data: bytes, *, max_bytes: int) -> images.Media:
        threads.append(threading.current_thread())
        return check_image(data, max_bytes=max_bytes)

    monkeypatch.setattr(images, "check_image", watched)
    checked = await images.check_upload(encode(Image.new("RGB", (64, 64), "blue"), "PNG"), max_bytes=10**6)
    assert checked.width == 64 and threads and threads[0] is not threading.main_thread()
