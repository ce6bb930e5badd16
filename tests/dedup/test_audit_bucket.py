"""The overlap audit and the zero-shot eval with their outputs, checkpoint and predictions in
a bucket (the real S3 server on 127.0.0.1): the same figures as on disk, the report folder
in the bucket, and nothing of it on the local disk under a name like ``s3:``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openwit import fs
from openwit.cli import main
from tests.dedup.test_audit import predictions_file, world  # noqa: F401 (a fixture)


@pytest.fixture(autouse=True)
def in_an_empty_folder(monkeypatch, tmp_path):
    """The working directory: a URL taken for a path would land here."""
    monkeypatch.chdir(tmp_path)


def _without_times(audit: dict) -> dict:
    return {k: v for k, v in audit.items() if k not in ("created", "checkpoint")}


def test_an_audit_written_into_a_bucket_equals_the_one_on_disk(
    world,  # noqa: F811
    bucket,
    s3,
    tmp_path,
    capsys,
):
    _, shards, eval_root = world
    right = {"thing/coffee.png", "person/astronaut.png"}
    predictions = predictions_file(tmp_path / "p.parquet", eval_root, right)
    fs.write_bytes(f"{bucket}/in/p.parquet", predictions.read_bytes())
    args = ["audit", "--shards", str(shards), "--eval", f"pets={eval_root}"]
    assert main([*args, "--predictions", f"pets={predictions}", "--out", "local"]) == 0
    url = f"{bucket}/audits/pets"
    remote = ["--predictions", f"pets={bucket}/in/p.parquet", "--out", url]
    assert main([*args, *remote]) == 0
    assert f"report: {url}/index.html" in capsys.readouterr().out
    local = json.loads((tmp_path / "local" / "audit.json").read_text())
    assert _without_times(fs.read_json(f"{url}/audit.json")) == _without_times(local)
    keys = s3.keys(bucket.removeprefix("s3://"), "audits/pets/")
    on_disk = {
        p.relative_to(tmp_path / "local").as_posix() for p in (tmp_path / "local").rglob("*")
    }
    assert {k.removeprefix("audits/pets/") for k in keys} == {
        name for name in on_disk if (tmp_path / "local" / name).is_file()
    }
    assert sum(k.startswith("audits/pets/thumbs/") for k in keys) >= 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["local", "p.parquet"]

    # a rerun that shows fewer pairs leaves none of the old thumbnails in the bucket
    assert main([*args, *remote, "--max-pairs", "0"]) == 0
    keys = s3.keys(bucket.removeprefix("s3://"), "audits/pets/")
    assert not [k for k in keys if k.startswith("audits/pets/thumbs/")]
    assert "audits/pets/index.html" in keys


def test_eval_and_audit_take_a_checkpoint_in_a_bucket_and_eval_writes_there(
    world,  # noqa: F811
    bucket,
    s3,
    tmp_path,
):
    import torch

    from openwit.train.models import create_model

    _, shards, eval_root = world
    torch.manual_seed(0)
    checkpoint = tmp_path / "random-init.pt"
    torch.save({"state_dict": create_model("openwit-tiny").model.state_dict()}, checkpoint)
    fs.write_bytes(f"{bucket}/runs/r/ck.pt", checkpoint.read_bytes())
    model = ["--checkpoint", f"{bucket}/runs/r/ck.pt", "--model", "openwit-tiny"]
    evals = f"{bucket}/runs/r/eval.json"
    assert main(["eval", *model, "--eval", f"pets={eval_root}", "--out", evals]) == 0
    result = fs.read_json(evals)
    assert result["checkpoint"] == f"{bucket}/runs/r/ck.pt"
    assert result["sets"]["pets"]["n"] == 8
    assert result["sets"]["pets"]["predictions"] == "predictions/pets.parquet"
    assert fs.exists(f"{bucket}/runs/r/predictions/pets.parquet")

    # the audit's accuracies from the bucket's checkpoint equal those from its predictions
    args = ["audit", "--shards", str(shards), "--eval", f"pets={eval_root}"]
    assert main([*args, *model, "--out", str(tmp_path / "by-checkpoint")]) == 0
    predictions = f"pets={bucket}/runs/r/predictions/pets.parquet"
    assert main([*args, "--predictions", predictions, "--out", str(tmp_path / "by-table")]) == 0
    (by_checkpoint,) = json.loads((tmp_path / "by-checkpoint" / "audit.json").read_text())["sets"]
    (by_table,) = json.loads((tmp_path / "by-table" / "audit.json").read_text())["sets"]
    assert by_checkpoint["acc_all"] == by_table["acc_all"] == result["sets"]["pets"]["top1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "by-checkpoint",
        "by-table",
        "random-init.pt",
    ]


def test_a_checkpoint_missing_from_the_bucket_is_one_line(world, bucket, capsys):  # noqa: F811
    _, _, eval_root = world
    args = ["eval", "--checkpoint", f"{bucket}/nope.pt", "--model", "openwit-tiny"]
    code = main([*args, "--eval", f"pets={eval_root}", "--out", f"{bucket}/e.json"])
    err = capsys.readouterr().err
    assert code == 2 and "checkpoint not found" in err and "Traceback" not in err
    assert not Path("s3:").exists()


def test_a_bucket_file_that_is_not_a_checkpoint_is_one_line_naming_its_url(
    world,  # noqa: F811
    bucket,
    tmp_path,
    capsys,
):
    import torch

    _, _, eval_root = world
    torch.save({"not": "weights"}, tmp_path / "x.pt")
    fs.write_bytes(f"{bucket}/runs/x.pt", (tmp_path / "x.pt").read_bytes())
    args = ["eval", "--checkpoint", f"{bucket}/runs/x.pt", "--model", "openwit-tiny"]
    assert main([*args, "--eval", f"pets={eval_root}", "--out", str(tmp_path / "e.json")]) == 2
    err = capsys.readouterr().err
    assert f"{bucket}/runs/x.pt" in err and "openwit-copy" not in err and "Traceback" not in err
