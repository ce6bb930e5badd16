"""Image preprocessing: open_clip's transform batched, and the device-side decode path."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.train.device_images import (
    CROP_RATIO,
    CROP_SCALE,
    DeviceAugment,
    Prefetcher,
    crop_boxes,
)
from openwit.train.models import create_model
from openwit.train.preprocess import BatchedPreprocess, decode_pil
from tests.train.helpers import jpeg_bytes


@pytest.fixture(scope="module")
def tiny():
    return create_model("openwit-tiny")


def test_batched_preprocess_equals_open_clips_transform_image_by_image(tiny):
    images = [decode_pil(jpeg_bytes(c, s, 96)) for c, s in [("red", "star"), ("blue", "ring")]]
    batched = BatchedPreprocess(tiny.preprocess_train, normalize=True)
    assert batched.split
    torch.manual_seed(7)
    ours = batched.batch([batched.image(image) for image in images])
    torch.manual_seed(7)
    reference = torch.stack([tiny.preprocess_train(image) for image in images])
    torch.testing.assert_close(ours, reference)


def test_an_unknown_transform_is_applied_whole(tiny):
    batched = BatchedPreprocess(lambda image: torch.ones(3, 4, 4), normalize=True)
    assert not batched.split
    assert batched.batch([batched.image(None)] * 2).shape == (2, 3, 4, 4)


def test_large_jpegs_decode_at_reduced_scale_but_never_below_the_target():
    data = jpeg_bytes(size=400)
    assert decode_pil(data).size == (400, 400)
    reduced = decode_pil(data, (32, 32))
    assert 32 <= reduced.size[0] < 400 and reduced.size[0] == reduced.size[1]


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(1, 600), st.integers(1, 600)), min_size=1, max_size=8),
    seed=st.integers(0, 1000),
)
def test_crop_boxes_lie_inside_the_image_with_open_clips_scale_and_ratio(sizes, seed):
    boxes = crop_boxes(sizes, torch.Generator().manual_seed(seed))
    for (h, w), (top, left, ch, cw) in zip(sizes, boxes):
        assert top >= 0 and left >= 0 and ch >= 1 and cw >= 1
        assert top + ch <= h and left + cw <= w
        if h >= 20 and w >= 20 and 0.8 <= w / h <= 1.25:  # room for the random draw
            assert CROP_SCALE[0] - 0.05 <= ch * cw / (h * w) <= CROP_SCALE[1] + 1e-9
            assert CROP_RATIO[0] - 0.1 <= cw / ch <= CROP_RATIO[1] + 0.1


def _packed(blobs: list[bytes]) -> tuple[torch.Tensor, torch.Tensor]:
    offsets = torch.tensor([0, *itertools.accumulate(len(b) for b in blobs)], dtype=torch.int64)
    return torch.frombuffer(bytearray(b"".join(blobs)), dtype=torch.uint8), offsets


def test_device_augment_decodes_crops_and_normalises_like_open_clip(tiny):
    blobs = [jpeg_bytes("red", "square", 64), jpeg_bytes("green", "circle", 80)]
    augment = DeviceAugment(tiny.image_size, tiny.image_mean, tiny.image_std, "cpu")
    images, replaced = augment(*_packed(blobs))
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32 and not replaced
    # the crop covers >= 90% of the image: close to open_clip's eval transform (resize+crop)
    reference = torch.stack([tiny.preprocess_eval(decode_pil(b)) for b in blobs])
    assert (images - reference).abs().mean() < 0.25
    assert math.isclose(images.mean().item(), reference.mean().item(), abs_tol=0.1)


def test_device_augment_replaces_an_undecodable_image_and_says_which(tiny):
    blobs = [jpeg_bytes(), b"\xff\xd8\xff broken", jpeg_bytes("blue", "cross")]
    augment = DeviceAugment(tiny.image_size, tiny.image_mean, tiny.image_std, "cpu")
    images, replaced = augment(*_packed(blobs))
    assert images.shape[0] == 3
    assert list(replaced) == [1] and replaced[1] in (0, 2)
    assert augment.failed == 1


def test_a_batch_with_no_decodable_image_is_refused_for_skipping(tiny):
    from openwit.train.device_images import UndecodableBatch

    augment = DeviceAugment(tiny.image_size, tiny.image_mean, tiny.image_std, "cpu")
    with pytest.raises(UndecodableBatch):
        augment(*_packed([b"\xff\xd8\xff broken", b"\xff\xd8\xff also broken"]))


def test_prefetcher_drops_batches_prepared_as_none():
    prefetcher = Prefetcher(iter(range(5)), lambda b: None if b % 2 else (b,), "cpu")
    assert [item[0] for item in prefetcher] == [0, 2, 4]
    prefetcher.close()


def test_prefetcher_hands_over_every_batch_in_order_then_stops():
    batches = iter(range(6))
    prefetcher = Prefetcher(batches, lambda b: (torch.tensor([b]), torch.tensor([b * 2])), "cpu")
    assert [int(images) for images, _ in prefetcher] == list(range(6))
    prefetcher.close()


def test_prefetcher_raises_the_threads_error_in_the_consumer():
    def prepare(batch):
        raise ValueError(f"bad batch {batch}")

    prefetcher = Prefetcher(iter(range(3)), prepare, "cpu")
    with pytest.raises(ValueError, match="bad batch 0"):
        next(prefetcher)
    prefetcher.close()


def test_device_mode_trains_end_to_end_on_the_cpu(demo_shards, tmp_path):
    from openwit.cli import main

    run = tmp_path / "run"
    args = ["train", "--train-data", str(demo_shards), "--model", "openwit-tiny"]
    args += ["--out", str(run), "--batch-size", "8", "--steps", "6", "--log-every", "3"]
    assert main([*args, "--decode", "device", "--workers", "1", "--device", "cpu"]) == 0
    assert (run / "checkpoints" / "step_6.pt").is_file()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [3, 6]
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["decode"] == "device"
