"""``openwit train --out s3://...``: a run folder in a bucket (the real S3 server on
127.0.0.1). The run's files arrive there as the run goes; a run preempted after a
checkpoint resumes from the bucket on a machine that has none of its files, its metrics
continuing where the checkpoint left them."""

from __future__ import annotations

import json

import pytest
import torch

from openwit import fs
from openwit.cli import main

STEPS, EVERY = 6, 3


@pytest.fixture(autouse=True)
def in_an_empty_folder(monkeypatch, tmp_path):
    """The working directory: a URL taken for a path would land here."""
    monkeypatch.chdir(tmp_path)


def _args(shards, out: str, *extra: str) -> list[str]:
    return [
        "train", "--train-data", str(shards), "--model", "openwit-tiny", "--out", out,
        "--batch-size", "8", "--steps", str(STEPS), "--save-every", str(EVERY),
        "--log-every", "1", "--workers", "1", *extra,
    ]  # fmt: skip


def _load(url: str) -> dict:
    return torch.load(fs.bytes_io(fs.read_bytes(url)), weights_only=True)


def _steps(url: str) -> list[int]:
    return [json.loads(line)["step"] for line in fs.read_text(url).splitlines()]


def test_a_run_in_a_bucket_writes_there_and_resumes_from_there(
    any_bucket, stored_keys, colour_world, tmp_path, capsys
):
    shards, eval_root = colour_world
    run = f"{any_bucket}/runs/r1"
    assert main([*_args(shards, run), "--eval", f"colours={eval_root}"]) == 0
    assert f"openwit train: {run}" in capsys.readouterr().out
    assert stored_keys(f"{run}/") == {
        f"runs/r1/{name}"
        for name in (
            "config.json",
            "metrics.jsonl",
            "eval.json",
            "predictions/colours.parquet",
            "checkpoints/step_3.pt",
            "checkpoints/step_6.pt",
            "checkpoints/latest.pt",
        )
    }
    assert fs.read_bytes(f"{run}/checkpoints/latest.pt") == fs.read_bytes(
        f"{run}/checkpoints/step_6.pt"
    )
    assert _steps(f"{run}/metrics.jsonl") == list(range(1, STEPS + 1))
    assert fs.read_json(f"{run}/eval.json")["sets"]["colours"]["n"] > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing of it on this disk

    # Preempted after step 3's upload, before latest.pt pointed at it (and before step 6):
    # the bucket has that step file and the metrics written past it.
    fs.delete([f"{run}/checkpoints/{name}" for name in ("step_6.pt", "latest.pt")])
    fs.delete([f"{run}/eval.json"])
    assert main([*_args(shards, run), "--resume", "auto"]) == 0
    final = _load(f"{run}/checkpoints/latest.pt")
    assert final["step"] == STEPS
    assert {float(s["step"]) for s in final["optimizer"]["state"].values()} == {float(STEPS)}
    assert sum(map(sum, final["data"]["delivered"])) == STEPS * 8
    assert _steps(f"{run}/metrics.jsonl") == list(range(1, STEPS + 1))  # each step once


def test_a_checkpoint_in_a_bucket_initialises_a_model_and_a_local_run(
    bucket, colour_world, tmp_path
):
    from openwit.train.models import create_model

    shards, _ = colour_world
    assert main([*_args(shards, f"{bucket}/runs/source")]) == 0
    start = f"{bucket}/runs/source/checkpoints/step_6.pt"
    weights = create_model("openwit-tiny", start).model.state_dict()
    saved = _load(start)["state_dict"]
    assert weights.keys() == saved.keys()
    assert all(torch.equal(weights[k], saved[k]) for k in saved)
    local = tmp_path / "local-run"
    assert main([*_args(shards, str(local), "--init-checkpoint", start)]) == 0
    assert (local / "checkpoints" / "latest.pt").is_file()
