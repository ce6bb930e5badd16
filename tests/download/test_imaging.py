"""Decoding and resizing: img2dataset's resize semantics, faster, and safe on hostile bytes."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from openwit.config import ImageConfig
from openwit.pipeline.download.resize import (
    ImageRejected,
    Img2datasetResizer,
    PillowResizer,
    geometry,
)
from tests.download.servers import photo, png_bomb, png_of

MODES = ["keep_ratio_largest", "keep_ratio", "center_crop", "border", "no"]
SIZES = [(300, 200), (1600, 1200), (333, 777), (1001, 999), (257, 1000), (641, 479), (255, 100)]
SIZES += [(200, 300), (256, 256), (256, 400), (512, 256), (1200, 1600), (2000, 667), (97, 3)]


def decoded(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


@pytest.mark.parametrize("only_if_bigger", [True, False])
@pytest.mark.parametrize("mode", MODES)
def test_output_sizes_match_img2dataset_resizer(mode, only_if_bigger):
    ours = PillowResizer(
        ImageConfig(resize_max_side=256, resize_mode=mode, resize_only_if_bigger=only_if_bigger)
    )
    theirs = Img2datasetResizer(
        ImageConfig(
            resize_max_side=256,
            resize_mode=mode,
            resize_only_if_bigger=only_if_bigger,
            resizer="img2dataset",
        )
    )
    for width, height in SIZES:
        data = png_of(width, height, "RGB")
        a, b = ours(data), theirs(data)
        assert (a.width, a.height) == (b.width, b.height), (mode, width, height)
        assert (a.original_width, a.original_height) == (width, height)
        assert decoded(a.data).size == (a.width, a.height)


def test_reduced_size_jpeg_decode_gives_the_same_picture():
    data = photo(1600, 1200, seed=5)
    fast = PillowResizer(ImageConfig(resize_max_side=256))(data)
    plain = Image.open(io.BytesIO(data)).convert("RGB").resize((256, 192), Image.Resampling.BOX)
    assert (fast.width, fast.height) == (256, 192)
    difference = np.abs(np.asarray(decoded(fast.data), float) - np.asarray(plain, float))
    assert difference.mean() < 3.0  # within JPEG noise of a full decode + resize


def test_geometry_never_enlarges_with_only_if_bigger():
    assert geometry(200, 100, 256, "keep_ratio_largest", True).resize is None
    assert geometry(200, 100, 256, "keep_ratio_largest", False).resize == (256, 128)
    plan = geometry(200, 100, 256, "keep_ratio_largest", False)
    assert plan.enlarge


def test_default_mode_adds_no_borders():
    stored = PillowResizer(ImageConfig())(photo(900, 300, seed=2))
    assert (stored.width, stored.height) == (256, 85)
    border = PillowResizer(ImageConfig(resize_mode="border"))(photo(900, 300, seed=2))
    assert (border.width, border.height) == (256, 256)


def test_transparency_is_composited_on_white_and_everything_is_rgb():
    stored = PillowResizer(ImageConfig(resize_max_side=64))(png_of(100, 80, "RGBA"))
    image = decoded(stored.data)
    assert image.mode == "RGB"
    r, g, b = image.getpixel((30, 30))
    # 50% blue-ish over white: lighter than the colour, darker than white
    assert 130 < r < 160 and 175 < g < 200 and 215 < b < 240
    grey = PillowResizer(ImageConfig(resize_max_side=64))(png_of(100, 80, "L"))
    assert decoded(grey.data).mode == "RGB"


def test_exif_orientation_is_applied():
    image = Image.open(io.BytesIO(photo(400, 300, seed=3)))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif.tobytes())
    stored = PillowResizer(ImageConfig(resize_max_side=256))(buffer.getvalue())
    assert (stored.original_width, stored.original_height) == (300, 400)
    assert (stored.width, stored.height) == (192, 256)


def test_webp_output():
    stored = PillowResizer(ImageConfig(encode_format="webp", encode_quality=80))(photo(500, 400))
    assert stored.data[:4] == b"RIFF" and stored.data[8:12] == b"WEBP"


@pytest.mark.parametrize("resizer", ["pillow", "img2dataset"])
def test_hostile_bytes_are_rejected_with_reasons(resizer):
    settings = ImageConfig(resizer=resizer)
    resize = PillowResizer(settings) if resizer == "pillow" else Img2datasetResizer(settings)
    good = photo(640, 480, seed=1)
    cases = {
        "decode_error": good[: len(good) // 2],
        "decompression_bomb": png_bomb(),
        "not_an_image": b"<html><body>not an image</body></html>",
    }
    for reason, data in cases.items():
        with pytest.raises(ImageRejected) as caught:
            resize(data)
        assert caught.value.reason == reason, caught.value.detail


def test_pixel_limit_is_the_setting_not_only_pillows():
    data = png_of(1200, 1000, "RGB")
    PillowResizer(ImageConfig(max_pixels=1_200_000))(data)
    with pytest.raises(ImageRejected) as caught:
        PillowResizer(ImageConfig(max_pixels=1_000_000))(data)
    assert caught.value.reason == "decompression_bomb"


def test_formats_outside_the_web_set_are_not_opened():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(ImageRejected) as caught:
        PillowResizer(ImageConfig())(eps)
    assert caught.value.reason == "not_an_image"


def test_img2dataset_resizer_in_threads_leaves_stdout_alone():
    before = os.fstat(1), os.fstat(2)
    resize = Img2datasetResizer(ImageConfig(resizer="img2dataset"))
    images = [photo(500, 400, seed=i) for i in range(4)] * 8
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(resize, images))
    assert all(r.width == 256 for r in results)
    after = os.fstat(1), os.fstat(2)
    assert [(s.st_dev, s.st_ino) for s in before] == [(s.st_dev, s.st_ino) for s in after]


def test_using_img2dataset_as_a_library_keeps_our_sigint_handler():
    import signal

    before = signal.getsignal(signal.SIGINT)
    Img2datasetResizer(ImageConfig(resizer="img2dataset"))(photo(300, 200))
    assert signal.getsignal(signal.SIGINT) is before  # only its download() replaces it


def float_tiff(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.float32)).save(buffer, "TIFF")  # mode F
    return buffer.getvalue()


@pytest.mark.parametrize("resizer", ["pillow", "img2dataset"])
@pytest.mark.parametrize("low, high", [(0.0, 1.0), (-40.0, 3000.0)])  # a 0-1 image, heights
def test_a_float_tiff_is_stretched_over_its_own_range(resizer, low, high):
    ramp = np.linspace(low, high, 400, dtype=np.float64)
    values = np.tile(ramp, (300, 1))
    values[0, 0], values[0, 1], values[0, 2] = np.nan, np.inf, -np.inf
    settings = ImageConfig(resize_max_side=400, resizer=resizer)
    resize = PillowResizer(settings) if resizer == "pillow" else Img2datasetResizer(settings)
    stored = resize(float_tiff(values))
    grey = np.asarray(Image.open(io.BytesIO(stored.data)).convert("L"), dtype=np.float64)
    assert grey.shape == (300, 400)
    expected = (ramp - low) * 255 / (high - low)
    row = grey[150]
    assert np.abs(row - expected).max() < 6  # JPEG's error on a smooth ramp
    assert row[:20].mean() < 10 and row[-20:].mean() > 245


def test_a_flat_float_tiff_keeps_its_level_and_one_without_numbers_is_rejected():
    grey = PillowResizer(ImageConfig())(float_tiff(np.full((300, 400), 0.5)))
    level = np.asarray(Image.open(io.BytesIO(grey.data)).convert("L")).mean()
    assert abs(level - 127.5) < 2
    with pytest.raises(ImageRejected) as caught:
        PillowResizer(ImageConfig())(float_tiff(np.full((300, 400), np.nan)))
    assert (caught.value.reason, caught.value.detail) == (
        "decode_error",
        "a float image without one finite pixel",
    )
