"""The hash convention every stage shares: imagehash 8x8 as uint64, bars trimmed first."""

from __future__ import annotations

import imagehash
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from openwit.dedup import transforms as tf
from openwit.hashes.images import (
    border_box,
    bytes_hashes,
    hamming,
    hash_pair,
    hash_to_int,
    image_hashes,
    int_to_hash,
    trim_borders,
)
from tests.dedup.images import jpeg_bytes, photo


def test_integer_is_the_number_imagehash_hex_spells():
    h = imagehash.phash(photo("astronaut"))
    assert hash_to_int(h) == int(str(h), 16)
    assert int_to_hash(hash_to_int(h)) == h


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_int_and_hash_round_trip(value):
    assert hash_to_int(int_to_hash(value)) == value


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_hamming_matches_imagehash_difference(a, b):
    assert hamming(a, b) == int_to_hash(a) - int_to_hash(b)


def test_hashes_fit_the_uint64_arrow_column():
    values = [0, 2**64 - 1, *image_hashes(photo("coffee"))]
    assert pa.array(values, type=pa.uint64()).to_pylist() == values


def test_a_picture_without_bars_is_hashed_as_imagehash_hashes_it():
    image = photo("chelsea")
    assert trim_borders(image) is image
    assert image_hashes(image) == (
        hash_to_int(imagehash.phash(image)),
        hash_to_int(imagehash.dhash(image)),
    )


@pytest.mark.parametrize(
    "bars",
    [
        tf.letterbox(0.3, (0, 0, 0)),
        tf.letterbox(0.4, (255, 255, 255), vertical=False),
        tf.letterbox(0.2, (128, 128, 128)),
    ],
)
def test_letterboxed_copy_hashes_like_the_picture(bars):
    image = photo("astronaut")
    boxed = tf.store(bars(image))
    trimmed = hamming(image_hashes(boxed)[0], image_hashes(image)[0])
    untrimmed = hamming(hash_pair(boxed)[0], hash_pair(image)[0])
    assert trimmed <= 4
    assert untrimmed >= trimmed + 6  # what trimming fixes


def test_border_box_finds_the_bars():
    image = tf.letterbox(0.5, (0, 0, 0))(photo("coffee"))  # 600x400 -> 600x600
    left, top, right, bottom = border_box(image)
    assert (left, right) == (0, 600)
    assert abs(top - 100) <= 10 and abs(bottom - 500) <= 10


def test_a_flat_image_is_trimmed_at_most_to_its_middle():
    from PIL import Image

    flat = Image.new("RGB", (100, 80), (40, 40, 40))
    left, top, right, bottom = border_box(flat)
    assert right - left >= 20 and bottom - top >= 16


def test_bytes_hashes_hash_the_decoded_jpeg():
    data = jpeg_bytes(photo("rocket"), quality=80)
    from io import BytesIO

    from PIL import Image

    assert bytes_hashes(data) == image_hashes(Image.open(BytesIO(data)))


def test_hashes_are_stable_under_recompression():
    image = photo("camera").convert("RGB")
    a = image_hashes(image)
    b = image_hashes(tf.jpeg(40)(tf.rescale(0.5)(image)))
    assert hamming(a[0], b[0]) <= 4
    assert np.uint64(a[0]) == a[0]
