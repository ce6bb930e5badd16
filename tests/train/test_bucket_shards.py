"""Training on shards in a bucket: the build writes ``s3://.../shards`` (or ``gs://``), and
``openwit train`` reads them there (listing, ``sizes.json``, every data worker's streams)
through the real S3 server or the GCS emulator on 127.0.0.1, with the same samples in the
same order as from a local folder."""

from __future__ import annotations

import json

import pytest

from openwit import fs
from openwit.cli import main
from openwit.errors import UserError
from openwit.train.shards import list_shards
from tests.train.test_data import _keys_in_order, tiny  # noqa: F401 (a fixture)


@pytest.fixture
def shards_in_bucket(any_bucket, demo_shards) -> str:
    """The demo shards and their sizes.json under ``<bucket>/build/shards``, in S3 and GCS."""
    folder = f"{any_bucket}/build/shards"
    for path in sorted(demo_shards.iterdir()):
        fs.write_bytes(f"{folder}/{path.name}", path.read_bytes())
    fs.write_text(f"{any_bucket}/build/other/readme.txt", "no shards here\n")
    return folder


def test_a_bucket_folder_lists_its_shards_with_their_sizes(shards_in_bucket, demo_shards):
    remote, local = list_shards(shards_in_bucket), list_shards(str(demo_shards))
    assert [fs.basename(u) for u in remote.urls] == [fs.basename(u) for u in local.urls]
    assert remote.urls[0] == f"{shards_in_bucket}/00000.tar"
    assert remote.sizes == local.sizes and remote.total_samples == local.total_samples
    pattern = f"{shards_in_bucket}/{{00000..00001}}.tar::{shards_in_bucket}/00002.tar"
    assert list_shards(pattern).sizes == local.sizes[:3]


@pytest.mark.parametrize("where", ["build/other", "build/nothing", "build/shards/{10..12}.tar"])
def test_a_bucket_spec_without_shards_is_a_user_error(shards_in_bucket, where):
    bucket = shards_in_bucket.removesuffix("/build/shards")
    with pytest.raises(UserError):
        list_shards(f"{bucket}/{where}")


def test_data_workers_read_the_same_samples_in_the_same_order_from_the_bucket(
    tiny,  # noqa: F811
    shards_in_bucket,
    demo_shards,
):
    from_bucket = _keys_in_order(tiny, shards_in_bucket, 6, workers=1)
    from_disk = _keys_in_order(tiny, demo_shards, 6, workers=1)
    assert from_bucket == from_disk and len(from_bucket) == 48


def test_openwit_train_runs_on_shards_in_a_bucket(shards_in_bucket, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--train-data", shards_in_bucket, "--model", "openwit-tiny"]
    args += ["--out", str(run), "--batch-size", "16", "--steps", "4", "--workers", "1"]
    assert main(args) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train_data"] == shards_in_bucket
    assert (run / "checkpoints" / "step_4.pt").exists()
