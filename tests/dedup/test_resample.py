"""The matrix-product resampler gives Pillow's bytes, and the hashes stay imagehash's."""

from __future__ import annotations

import imagehash
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from openwit.hashes import resample
from openwit.hashes.images import hash_to_int, image_hashes, trim_borders
from openwit.hashes.resample import (
    _lanczos_resample,
    lanczos_grey,
    lanczos_thumbnails,
    pillow_resize,
)


def pixels(kind: str, height: int, width: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "noise":
        values = rng.integers(0, 256, (height, width))
    elif kind == "gradient":
        values = np.cumsum(rng.integers(-12, 13, (height, width)), axis=0) % 256
    elif kind == "checkerboard":  # the largest overshoot: clipping at 0 and 255
        values = (np.indices((height, width)).sum(axis=0) % 2) * 255
    else:
        values = np.full((height, width), seed % 256)
    return values.astype(np.uint8)


kinds = st.sampled_from(["noise", "gradient", "checkerboard", "flat"])
sizes = st.integers(1, 300)
out_sizes = st.integers(1, 80)


@settings(max_examples=300, deadline=None)
@given(kinds, sizes, sizes, out_sizes, out_sizes, st.integers(0, 2**16))
def test_lanczos_gives_pillows_bytes(kind, height, width, out_width, out_height, seed):
    source = pixels(kind, height, width, seed)
    mine = _lanczos_resample(source, out_width, out_height).astype(np.uint8)
    assert np.array_equal(mine, pillow_resize(source, out_width, out_height))


@settings(max_examples=200, deadline=None)
@given(
    kinds,
    sizes,
    sizes,
    st.lists(st.tuples(out_sizes, out_sizes), min_size=1, max_size=3),
    st.integers(0, 2**16),
)
def test_thumbnails_from_one_row_pass_are_pillows(kind, height, width, thumbnails, seed):
    source = pixels(kind, height, width, seed)
    got = lanczos_thumbnails(source, tuple(thumbnails))
    assert len(got) == len(thumbnails)
    for thumbnail, size in zip(got, thumbnails, strict=True):
        assert np.array_equal(thumbnail, pillow_resize(source, *size))


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((250, 2), (9, 8)),  # over 100x taller than wide: Image.resize shrinks height first
        ((217, 2), (58, 50)),
        ((7, 2), (32, 32)),  # enlarging 2 px: weights whose C int sums wrap around
        ((250, 2), (9, 500)),  # tall but made taller: the usual order again
        ((2, 2), (32, 32)),
        ((1, 1), (9, 8)),
        ((32, 32), (32, 32)),  # same size: Pillow copies
        ((192, 256), (256, 192)),
    ],
)
def test_edge_shapes_match_pillow(shape, size):
    for kind in ("noise", "checkerboard"):
        source = pixels(kind, *shape, seed=7)
        assert np.array_equal(lanczos_grey(source, *size), pillow_resize(source, *size))


def test_the_self_check_passes_here_and_the_fallback_is_pillow(monkeypatch):
    assert resample.lanczos_matches_pillow()
    source = pixels("noise", 60, 90, seed=3)
    fast = lanczos_grey(source, 32, 32)
    monkeypatch.setattr(resample, "_verified", False)  # as on a Pillow that differs
    assert np.array_equal(lanczos_grey(source, 32, 32), fast)


@pytest.mark.parametrize(
    "bad", [np.zeros((0, 5), np.uint8), np.zeros((4, 4), np.float32), np.zeros((2, 2, 3), np.uint8)]
)
def test_refuses_what_is_not_a_greyscale_image(bad):
    with pytest.raises(ValueError, match="2-d uint8"):
        lanczos_grey(bad, 8, 8)


@settings(max_examples=60, deadline=None)
@given(
    kinds,
    st.integers(8, 260),
    st.integers(8, 260),
    st.sampled_from(["RGB", "L", "RGBA", "P"]),
    st.integers(0, 2**16),
    st.integers(0, 40),
)
def test_hashes_are_imagehash_of_the_trimmed_image(kind, height, width, mode, seed, bar):
    grey = pixels(kind, height, width, seed)
    if bar:  # a letterbox bar on top and bottom
        grey = np.pad(grey, ((bar, bar), (0, 0)), constant_values=0)
    image = Image.fromarray(grey, "L").convert(mode)
    trimmed = trim_borders(image.convert("L"))
    expected = (hash_to_int(imagehash.phash(trimmed)), hash_to_int(imagehash.dhash(trimmed)))
    assert image_hashes(image) == expected


def test_large_images_go_to_pillow_not_to_dense_matrices(monkeypatch):
    def dense(*args):
        raise AssertionError("a dense float64 copy of a large image")

    monkeypatch.setattr(resample, "_lanczos_resample", dense)
    source = pixels("gradient", 30, resample.MATRIX_MAX_SIDE + 1, seed=5)
    resized = lanczos_grey(source, 32, 32)
    assert np.array_equal(resized, pillow_resize(source, 32, 32))
    with pytest.raises(AssertionError, match="dense"):
        lanczos_grey(source[:, :300], 32, 32)  # small enough: the matrix path


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((2, 2), (3, 1)),  # Pillow 13 runs the column pass first here, Pillow 12 did not
        ((40, 10), (60, 4)),
        ((256, 192), (32, 32)),  # stored portrait images
        ((192, 256), (9, 8)),
    ],
)
def test_the_pass_order_is_found_and_gives_pillows_bytes(shape, size):
    assert resample.pass_order(*shape, *size) in ("rows", "columns")
    for kind in ("noise", "gradient", "checkerboard"):
        source = pixels(kind, *shape, seed=11)
        assert np.array_equal(lanczos_grey(source, *size), pillow_resize(source, *size))


def test_a_shape_whose_pass_order_is_unknown_goes_to_pillow(monkeypatch):
    def no_order(*args):
        return None

    def no_products(*args):
        raise AssertionError("matrix products for a shape of unknown pass order")

    monkeypatch.setattr(resample, "pass_order", no_order)
    monkeypatch.setattr(resample, "_both_passes", no_products)
    source = pixels("noise", 60, 90, seed=3)
    assert np.array_equal(lanczos_grey(source, 32, 20), pillow_resize(source, 32, 20))
