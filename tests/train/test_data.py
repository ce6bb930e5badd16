"""The data workers' pipeline: real shards in, batches out; nothing broken stops it."""

from __future__ import annotations

import itertools
import logging

import pytest
import torch

from openwit.train.data import DataSpec, ShardBatches, make_loader
from openwit.train.models import create_model
from openwit.train.shards import list_shards
from tests.train.helpers import (
    UNUSABLE_REASONS,
    copy_shards,
    jpeg_bytes,
    png_bytes,
    unusable_shards,
    write_sizes,
    write_tar,
)

BATCH = 8


@pytest.fixture(scope="module")
def tiny():
    return create_model("openwit-tiny")


def _batches(tiny, spec_dir, *, decode="workers", workers=0, shuffle=1, **spec_args):
    shards = list_shards(str(spec_dir))
    spec = DataSpec(
        shards=shards,
        rank=spec_args.pop("rank", 0),
        world_size=spec_args.pop("world_size", 1),
        workers=workers,
        batch_size=spec_args.pop("batch_size", BATCH),
        seed=0,
        shuffle_buffer=shuffle,
        resampled=False,
        decode=decode,
        **spec_args,
    )
    dataset = ShardBatches(spec, tiny.preprocess_train, tiny.tokenizer, tiny.image_size)
    return iter(make_loader(dataset, pin_memory=False))


def _keys_in_order(tiny, shard_dir, n_batches, **kwargs):
    """Sample order as captions (each caption of the raw samples below is unique)."""
    tokens = [next(it)[1] for it in [_batches(tiny, shard_dir, **kwargs)] for _ in range(n_batches)]
    return [tuple(row.tolist()) for batch in tokens for row in batch]


def test_worker_batches_hold_normalised_images_tokens_and_counts(tiny, demo_shards):
    images, tokens, stats = next(_batches(tiny, demo_shards))
    assert images.shape == (BATCH, 3, 32, 32) and images.dtype == torch.float32
    assert -3 < images.mean() < 3  # normalised, not 0..255
    assert tokens.shape == (BATCH, 32) and tokens.dtype == torch.long
    assert stats.tolist() == [0, 0, 0, BATCH]  # worker 0, nothing failed, BATCH samples read


def test_device_mode_ships_packed_jpeg_bytes(tiny, demo_shards):
    packed, offsets, _, _ = next(_batches(tiny, demo_shards, decode="device"))
    assert packed.dtype == torch.uint8 and offsets.shape == (BATCH + 1,)
    assert offsets[-1] == packed.numel()
    first = bytes(packed[offsets[0] : offsets[1]].tolist())
    assert first[:3] == b"\xff\xd8\xff"


def test_two_workers_each_read_their_own_shards(tiny, demo_shards):
    batches = _batches(tiny, demo_shards, workers=2)
    workers = [next(batches)[2][0].item() for _ in range(4)]
    assert workers == [0, 1, 0, 1]  # round robin, the worker id rides along


def _raw_shards(folder, count, per_shard, bad=()):
    folder.mkdir()
    sizes = {}
    for shard in range(count // per_shard):
        samples = []
        for i in range(shard * per_shard, (shard + 1) * per_shard):
            sample = {"__key__": f"{i:09d}", "jpg": jpeg_bytes(), "txt": f"sample {i}"}
            if i in bad:
                sample = bad[i](sample)
            samples.append(sample)
        write_tar(folder / f"{shard:05d}.tar", samples)
        sizes[f"{shard:05d}.tar"] = per_shard
    write_sizes(folder, sizes)
    return folder


def test_missing_and_corrupt_shards_are_skipped_with_a_warning_and_counted(
    tiny, demo_shards, tmp_path, caplog
):
    folder = copy_shards(demo_shards, tmp_path / "shards")
    (folder / "00001.tar").unlink()  # missing (sizes.json still names it)
    (folder / "00002.tar").write_bytes(b"not a tar" * 1000)  # corrupt
    data = (folder / "00003.tar").read_bytes()
    (folder / "00003.tar").write_bytes(data[: len(data) // 2])  # truncated mid-shard
    shards = list_shards(f"{folder}/{{00000..00005}}.tar")
    assert len(shards) == 6
    it = _batches(tiny, f"{folder}/{{00000..00005}}.tar")
    with caplog.at_level(logging.WARNING, logger="openwit.train.data"):
        batches = list(itertools.islice(it, 40))  # > one epoch of what is left
    failed = sum(int(b[2][1]) for b in batches)
    assert failed >= 3  # each bad shard, once per epoch read
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert "00001.tar" in warned and "00002.tar" in warned and "00003.tar" in warned
    assert all(b[0].shape[0] == BATCH for b in batches)


def test_samples_without_caption_or_with_a_broken_image_are_skipped_and_counted(tiny, tmp_path):
    bad = {
        1: lambda s: {k: v for k, v in s.items() if k != "txt"},
        2: lambda s: {**s, "jpg": b"\xff\xd8\xff garbage"},
        3: lambda s: {k: v for k, v in s.items() if k != "jpg"},
        4: lambda s: {**s, "txt": "   "},
    }
    folder = _raw_shards(tmp_path / "raw", 16, 16, bad)
    images, _, stats = next(_batches(tiny, folder))
    assert stats[2].item() == 4
    assert images.shape[0] == BATCH


def test_png_samples_decode_in_both_modes(tiny, tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    write_tar(
        folder / "00000.tar",
        [{"__key__": f"{i:09d}", "png": png_bytes(), "txt": f"green {i}"} for i in range(BATCH)],
    )
    assert next(_batches(tiny, folder))[0].shape == (BATCH, 3, 32, 32)
    packed = next(_batches(tiny, folder, decode="device"))[0]
    assert bytes(packed[:3].tolist()) == b"\xff\xd8\xff"  # re-encoded for the GPU decoder


def test_resume_skip_continues_the_sample_stream_where_it_stopped(tiny, tmp_path):
    folder = _raw_shards(tmp_path / "raw", 48, 12)
    order = _keys_in_order(tiny, folder, 5)  # 40 samples, unshuffled
    skipped = _keys_in_order(tiny, folder, 2, skip_per_worker=(20,))
    assert skipped == order[20:36]


def test_uint8_crops_when_the_device_normalises(tiny, demo_shards):
    images = next(_batches(tiny, demo_shards, normalize_in_workers=False))[0]
    assert images.dtype == torch.uint8 and images.shape == (BATCH, 3, 32, 32)


@pytest.mark.parametrize(("shard", "reason"), UNUSABLE_REASONS)
@pytest.mark.parametrize("decode", ["workers", "device"])
def test_a_shard_with_no_usable_sample_ends_the_stream_with_the_reason(
    tiny, tmp_path, shard, reason, decode
):
    from openwit.train.data import DataFailure

    folder = unusable_shards(tmp_path / "bad")
    batch = next(_batches(tiny, folder / shard, decode=decode))
    assert isinstance(batch, DataFailure)
    assert "none of the 1 shards" in batch.message and reason in batch.message


def test_garbage_images_are_found_out_in_one_pass(tiny, tmp_path):
    from openwit.train.data import DataFailure

    folder = _raw_shards(
        tmp_path / "raw", 8, 8, {i: lambda s: {**s, "jpg": b"junk"} for i in range(8)}
    )
    batch = next(_batches(tiny, folder, shuffle=100))
    assert isinstance(batch, DataFailure)
    assert "8 samples, 8 whose image does not decode" in batch.message


def test_unusable_shards_beside_a_good_one_are_skipped_and_counted(tiny, tmp_path):
    folder = unusable_shards(tmp_path / "mixed")
    good = _raw_shards(tmp_path / "good", 16, 16)
    (good / "00000.tar").rename(folder / "00005.tar")
    batches = list(itertools.islice(_batches(tiny, folder), 6))  # > two passes
    assert all(b[0].shape[0] == BATCH for b in batches)
    assert sum(int(b[2][1]) for b in batches) >= 2 * 5  # every bad shard, each pass
    skipped = sum(int(b[2][2]) for b in batches)
    assert skipped >= 2 * 10  # their samples (3 + 3 + 4 a pass)
    assert sum(int(b[2][3]) for b in batches) == 6 * BATCH + skipped  # read: used or not


def test_the_read_count_covers_skipped_samples_so_resume_does_not_reread_them(tiny, tmp_path):
    bad = {i: (lambda s: {k: v for k, v in s.items() if k != "txt"}) for i in (1, 2, 3, 4)}
    folder = _raw_shards(tmp_path / "raw", 24, 24, bad)
    first = next(_batches(tiny, folder))
    read = int(first[2][3])
    assert read == BATCH + 4  # samples 0..11: 8 in the batch, 4 without a caption
    resumed = next(_batches(tiny, folder, skip_per_worker=(read,)))[1]
    expected = next(_batches(tiny, folder, batch_size=2 * BATCH))[1][BATCH:]
    assert torch.equal(resumed, expected)  # sample 12 on, none of 8..11 read twice
