"""Shards: deterministic numbering, atomic and resumable writes, readable by webdataset and
open_clip_train's own loader."""

from __future__ import annotations

import argparse
import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.hashes.images import bytes_hashes
from openwit.pipeline.image.stage import ImageStage
from openwit.pipeline.shard.stage import ShardStage
from openwit.pipeline.shard.tars import UnsafeMemberName, member_name, write_tar
from openwit.runner import BuildRunner
from openwit.schemas import candidate_schema
from tests.download.servers import photo
from tests.download.stages import ReadyDownloads, build_config, candidate

DOWNLOAD_SCHEMA = candidate_schema("download")


def image_records(count: int, seed: int = 0) -> list[dict]:
    """Records as the download stage stores them (image bytes included), in uid order."""
    records = []
    for index in range(count):
        data = photo(64 + index % 5, 48, seed=seed * 1000 + index, quality=80)
        record = candidate(f"http://127.0.0.1/img/{seed}-{index}.jpg", f"caption {index}")
        phash, dhash = bytes_hashes(data)
        record.update(
            width=64 + index % 5,
            height=48,
            original_width=640,
            original_height=480,
            sha256=f"{index:064x}",
            image=data,
            phash=phash,
            dhash=dhash,
        )
        records.append(record)
    return sorted(records, key=lambda r: r["uid"])


def write_inputs(root, records, files: int) -> list:
    """The records in order, cut into ``files`` consecutive files."""
    root.mkdir(parents=True, exist_ok=True)
    size = -(-len(records) // files)
    paths = []
    for index in range(files):
        path = root / f"in-{index}.parquet"
        chunk = records[index * size : (index + 1) * size]
        pq.write_table(pa.Table.from_pylist(chunk, schema=DOWNLOAD_SCHEMA), path)
        paths.append(path)
    return paths


def shard_build(root, inputs, per_shard: int, resume: bool = False):
    config = build_config(root, inputs[0], shards={"samples_per_shard": per_shard})
    config = config.model_copy(
        update={"inputs": [config.inputs[0].model_copy(update={"path": str(p)}) for p in inputs]}
    )
    return BuildRunner(config, [ReadyDownloads(), ImageStage(), ShardStage()]).run(resume=resume)


def interrupt_shard_stage(out, unit: int) -> None:
    """What a kill while the shard stage writes shard ``unit`` leaves: the manifest says
    running, and that unit has no done marker."""
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["stages"]["shard"]
    entry["status"] = "running"
    manifest_path.write_text(json.dumps(manifest))
    (out / "stages" / "shard" / entry["attempt"] / f"done-{unit:08d}.json").unlink()


@pytest.fixture(scope="module")
def records():
    return image_records(23)


def test_numbering_follows_the_input_order_not_how_it_was_split(tmp_path, records):
    one = shard_build(tmp_path / "one", write_inputs(tmp_path / "a", records, 1), 10)
    three = shard_build(tmp_path / "three", write_inputs(tmp_path / "b", records, 3), 10)
    assert one.funnel.stages["shard"].n_out == three.funnel.stages["shard"].n_out == 23
    for name in ("00000.tar", "00001.tar", "00002.tar"):
        a = (tmp_path / "one" / "out" / "shards" / name).read_bytes()
        b = (tmp_path / "three" / "out" / "shards" / name).read_bytes()
        assert a == b, name
    sizes = json.loads((tmp_path / "one" / "out" / "shards" / "sizes.json").read_text())
    assert sizes == {"00000.tar": 10, "00001.tar": 10, "00002.tar": 3}


def test_tar_members_are_key_jpg_txt_json_with_fixed_headers(tmp_path, records):
    shard_build(tmp_path, write_inputs(tmp_path / "in", records, 2), 10)
    shards = tmp_path / "out" / "shards"
    by_uid = {r["uid"]: r for r in records}
    with tarfile.open(shards / "00001.tar") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[:3] == ["000000010.jpg", "000000010.txt", "000000010.json"]
        assert len(names) == 30
        assert {(m.mtime, m.mode, m.uid, m.uname) for m in members} == {(0, 0o444, 0, "")}
        meta = json.loads(tar.extractfile("000000010.json").read())
        record = by_uid[meta["uid"]]
        assert tar.extractfile("000000010.jpg").read() == record["image"]
        assert tar.extractfile("000000010.txt").read().decode() == record["text"]
    assert meta["key"] == "000000010" and meta["url"] == record["url"]
    phash, _ = bytes_hashes(record["image"])
    assert meta["phash"] == f"{phash:016x}"  # the hash of the stored bytes
    index = pq.read_table(shards / "00001.parquet")
    assert index.column("key").to_pylist() == [f"{i:09d}" for i in range(10, 20)]
    assert index.column("uid").to_pylist() == [r["uid"] for r in records[10:20]]
    assert not {"image", "image_file", "image_row"} & set(index.column_names)


def test_webdataset_reads_the_shards(tmp_path, records):
    import webdataset as wds

    shard_build(tmp_path, write_inputs(tmp_path / "in", records, 1), 10)
    shards = sorted(str(p) for p in (tmp_path / "out" / "shards").glob("*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False).decode("pil"))
    assert len(samples) == 23
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(23)]
    first = samples[0]
    assert first["jpg"].size[1] == 48 and first["txt"].startswith("caption")
    assert first["json"]["key"] == "000000000"


def test_open_clip_train_loader_reads_the_shards(tmp_path, records):
    import open_clip
    import torch
    from open_clip_train.data import get_wds_dataset
    from torchvision import transforms

    shard_build(tmp_path, write_inputs(tmp_path / "in", records, 1), 10)
    shards = tmp_path / "out" / "shards"
    args = argparse.Namespace(
        train_data=str(shards / "{00000..00002}.tar"),
        val_data=None,
        train_num_samples=None,  # read from sizes.json
        dataset_resampled=False,
        train_data_upsampling_factors=None,
        seed=0,
        batch_size=4,
        workers=0,
        world_size=1,
    )
    preprocess = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
    data = get_wds_dataset(args, preprocess, True, tokenizer=open_clip.tokenize)
    assert data.dataloader.num_samples == 24  # 23 from sizes.json, rounded up to full batches
    images, texts = next(iter(data.dataloader))
    assert images.shape == (4, 3, 32, 32) and texts.shape == (4, 77)
    assert texts.dtype == torch.long


def test_fewer_samples_per_shard_drops_stale_shards(tmp_path, records):
    inputs = write_inputs(tmp_path / "in", records, 1)
    shard_build(tmp_path, inputs, 5)
    assert len(list((tmp_path / "out" / "shards").glob("*.tar"))) == 5
    outcome = shard_build(tmp_path, inputs, 10)
    shards = tmp_path / "out" / "shards"
    assert sorted(p.name for p in shards.glob("*.tar")) == ["00000.tar", "00001.tar", "00002.tar"]
    assert not list(shards.glob("0000[3-4]*"))
    assert outcome.funnel.stages["shard"].n_out == 23


def test_resume_rewrites_only_the_incomplete_shard(tmp_path, records):
    inputs = write_inputs(tmp_path / "in", records, 1)
    shard_build(tmp_path, inputs, 10)
    shards = tmp_path / "out" / "shards"
    before = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")}
    # What a kill in the middle of shard 1 leaves: its index missing, a temporary file.
    (shards / "00001.parquet").unlink()
    (shards / ".00001.tar.abc.tmp").write_bytes(b"half")
    interrupt_shard_stage(tmp_path / "out", 1)

    outcome = shard_build(tmp_path, inputs, 10, resume=True)
    assert outcome.ran == ["shard"]
    after = {p.name: p.stat().st_mtime_ns for p in shards.glob("*.tar")}
    assert after["00000.tar"] == before["00000.tar"]
    assert after["00002.tar"] == before["00002.tar"]
    assert after["00001.tar"] != before["00001.tar"]
    assert not list(shards.glob(".*.tmp"))
    assert outcome.funnel.stages["shard"].n_out == 23


@pytest.mark.parametrize(
    "key", ["../../etc/passwd", "/abs", "00000001", "0000000001", "abc000000", "000000001/x"]
)
def test_member_names_outside_the_pattern_are_refused(tmp_path, key):
    with pytest.raises(UnsafeMemberName):
        member_name(key, "jpg")
    with pytest.raises(UnsafeMemberName):
        write_tar(io.BytesIO(), [(f"{key}.jpg", b"data")])


def test_equal_members_give_equal_tar_bytes_of_the_returned_size(tmp_path):
    import os

    members = [
        ("000000000.jpg", os.urandom(1000)),
        ("000000000.txt", "ünïcode caption".encode()),
        ("000000000.json", b"{}"),
        ("000000001.webp", b""),
        ("123456789.png", os.urandom(77_777)),
    ]
    written = []
    for name in ("a.tar", "b.tar"):
        with open(tmp_path / name, "wb") as stream:
            size = write_tar(stream, members)
        written.append((tmp_path / name).read_bytes())
        assert size == len(written[-1]) and size % 10240 == 0  # whole tar records
    assert written[0] == written[1]
    with tarfile.open(tmp_path / "a.tar") as tar:
        assert [(m.name, tar.extractfile(m).read()) for m in tar] == members
