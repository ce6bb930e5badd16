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
from tests.train.helpers import jpeg_bytes, write_tar


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
    images, valid, dropped = augment(*_packed(blobs))
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.float32
    assert valid.tolist() == [True, True] and dropped == 0
    # the crop covers >= 90% of the image: close to open_clip's eval transform (resize+crop)
    reference = torch.stack([tiny.preprocess_eval(decode_pil(b)) for b in blobs])
    assert (images - reference).abs().mean() < 0.25
    assert math.isclose(images.mean().item(), reference.mean().item(), abs_tol=0.1)


def rejecting(marker: bytes):
    """torchvision's decode_jpeg, except that it fails (as nvJPEG does on what it does not
    support) on every JPEG containing ``marker``: a decoder injected for CPU tests."""
    from torchvision.io import decode_jpeg

    def decode(data, **kwargs):
        blobs = data if isinstance(data, list) else [data]
        if any(marker in bytes(blob.numpy()) for blob in blobs):
            raise RuntimeError("nvjpeg: unsupported JPEG")
        return decode_jpeg(data, **kwargs)

    return decode


def with_comment(data: bytes, text: bytes) -> bytes:
    """The JPEG with a COM segment after its SOI marker (PIL reads it like the original)."""
    return data[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + data[2:]


def test_an_image_the_device_decoder_rejects_is_decoded_with_pil_in_the_same_batch(tiny):
    blobs = [jpeg_bytes(), with_comment(jpeg_bytes("blue", "star"), b"odd"), jpeg_bytes("green")]
    args = (tiny.image_size, tiny.image_mean, tiny.image_std, "cpu")
    fussy = DeviceAugment(*args, seed=3, decoder=rejecting(b"odd"))
    images, valid, dropped = fussy(*_packed(blobs))
    assert valid.tolist() == [True, True, True] and dropped == 0 and fussy.cpu_decoded == 1
    reference, _, _ = DeviceAugment(*args, seed=3)(*_packed(blobs))
    torch.testing.assert_close(images, reference, atol=0.1, rtol=0)  # same crops, PIL's IDCT
    assert not torch.allclose(images[1], images[0]) and not torch.allclose(images[1], images[2])


def test_an_image_no_decoder_reads_is_dropped_from_the_batch_never_duplicated(tiny):
    blobs = [jpeg_bytes(), b"\xff\xd8\xff broken", jpeg_bytes("blue", "cross")]
    augment = DeviceAugment(tiny.image_size, tiny.image_mean, tiny.image_std, "cpu")
    images, valid, dropped = augment(*_packed(blobs))
    assert images.shape[0] == 3 and valid.tolist() == [True, False, True] and dropped == 1
    assert not torch.allclose(images[1], images[0]) and not torch.allclose(images[1], images[2])
    assert augment.failed == 1


def test_a_decoder_that_fails_on_a_whole_batch_stops_with_one_clear_error(tiny):
    from openwit.train.device_images import DeviceDecodeError

    blobs = [jpeg_bytes(), jpeg_bytes("blue")]
    augment = DeviceAugment(
        tiny.image_size, tiny.image_mean, tiny.image_std, "cpu", decoder=rejecting(b"")
    )
    with pytest.raises(DeviceDecodeError, match="failed on all 2 images of a batch, 2 of which"):
        augment(*_packed(blobs))
    broken = DeviceAugment(tiny.image_size, tiny.image_mean, tiny.image_std, "cpu")
    with pytest.raises(DeviceDecodeError, match="none of the 2 images of a batch decodes"):
        broken(*_packed([b"\xff\xd8\xff broken", b"\xff\xd8\xff also broken"]))


def test_decode_auto_falls_back_to_the_workers_when_the_gpu_decoder_fails(caplog):
    import logging

    from openwit.errors import UserError
    from openwit.train.device_images import choose_decode, probe_device_decode

    def no_nvjpeg(*args, **kwargs):
        raise RuntimeError("torchvision was built without nvJPEG")

    why = probe_device_decode("cpu", decoder=no_nvjpeg)
    assert why == "RuntimeError: torchvision was built without nvJPEG"
    assert probe_device_decode("cpu") is None  # torchvision's decoder works on the CPU
    with caplog.at_level(logging.WARNING, logger="openwit.train.device_images"):
        assert choose_decode("auto", True, lambda: why) == "workers"
    assert "built without nvJPEG" in caplog.text
    assert choose_decode("auto", True, lambda: None) == "device"
    assert choose_decode("auto", False, lambda: 1 / 0) == "workers"  # not even probed
    with pytest.raises(UserError, match="--decode device: the JPEG decoder does not work"):
        choose_decode("device", True, lambda: why)


def test_a_prefetcher_whose_thread_has_ended_raises_instead_of_waiting_forever():
    prefetcher = Prefetcher(itertools.count(), lambda b: (torch.tensor([b]),), "cpu", poll_s=0.05)
    assert int(next(prefetcher)[0]) == 0
    prefetcher.close()  # the producer stops; nothing more will ever come
    with pytest.raises(RuntimeError, match="prefetch thread is not running"):
        next(prefetcher)


def _device_batches(tiny, shard_dir):
    from openwit.train.batches import open_batches
    from openwit.train.distributed import Processes
    from openwit.train.shards import list_shards

    source = open_batches(
        list_shards(str(shard_dir)),
        tiny,
        Processes(),
        batch_size=4,
        workers=0,
        seed=0,
        shuffle_buffer=1,
        resampled=False,
        decode="device",
        image_dtype=torch.float32,
        saved_position=None,
        restart_step=0,
    )
    return source


def test_device_batches_with_an_unreadable_jpeg_keep_every_pair_once(tiny, tmp_path):
    blobs = [jpeg_bytes(), b"\xff\xd8\xff broken", jpeg_bytes("blue"), jpeg_bytes("green")]
    samples = [{"__key__": f"{i:04d}", "jpg": b, "txt": f"pair {i}"} for i, b in enumerate(blobs)]
    (tmp_path / "s").mkdir()
    write_tar(tmp_path / "s" / "00000.tar", samples)
    source = _device_batches(tiny, tmp_path / "s")
    try:
        _, tokens, stats, *valid = next(source.batches)
    finally:
        source.close()
    assert len({tuple(row) for row in tokens.tolist()}) == 4  # no caption twice
    assert valid and valid[0].tolist() == [True, False, True, True]
    assert int(stats[2]) == 1 and int(stats[3]) == 4


def test_device_batches_with_a_decoder_that_never_works_stop_instead_of_spinning(
    tiny, demo_shards, monkeypatch
):
    import torchvision.io

    from openwit.train.device_images import DeviceDecodeError

    def no_nvjpeg(*args, **kwargs):
        raise RuntimeError("torchvision was built without nvJPEG")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", no_nvjpeg)
    source = _device_batches(tiny, demo_shards)
    try:
        with pytest.raises(DeviceDecodeError, match="failed on all 4 images of a batch"):
            next(source.batches)
    finally:
        source.close()


def test_train_with_decode_device_and_a_decoder_that_does_not_work_is_one_line(
    demo_shards, tmp_path, monkeypatch, capsys
):
    import torchvision.io

    from openwit.cli import main

    def no_nvjpeg(*args, **kwargs):
        raise RuntimeError("torchvision was built without nvJPEG")

    monkeypatch.setattr(torchvision.io, "decode_jpeg", no_nvjpeg)
    args = ["train", "--train-data", str(demo_shards), "--model", "openwit-tiny", "--steps", "2"]
    args += ["--out", str(tmp_path / "run"), "--batch-size", "4", "--workers", "1"]
    assert main([*args, "--decode", "device", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--decode device: the JPEG decoder does not work here" in err
    assert "built without nvJPEG" in err and len(err.splitlines()) == 1


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
