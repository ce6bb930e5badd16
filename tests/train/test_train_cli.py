"""``openwit train`` end to end on real shards: it learns, and the run directory is complete."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from openwit.cli import main
from openwit.evalsets import EvalSet
from tests.train.helpers import (
    UNUSABLE_REASONS,
    jpeg_bytes,
    unusable_shards,
    write_sizes,
    write_tar,
)

STEPS = 120


def _train_args(shards: Path, out: Path, *extra: str, model: str = "openwit-tiny") -> list[str]:
    return [
        "train",
        "--train-data",
        str(shards),
        "--model",
        model,
        "--out",
        str(out),
        "--batch-size",
        "32",
        "--lr",
        "2e-3",
        "--warmup",
        "10",
        "--workers",
        "1",
        *extra,
    ]


@pytest.fixture(scope="module")
def trained_run(colour_world, tmp_path_factory) -> Path:
    shards, eval_root = colour_world
    run = tmp_path_factory.mktemp("run") / "tiny"
    args = _train_args(shards, run, "--steps", str(STEPS), "--save-every", "60")
    assert main([*args, "--eval", f"colours={eval_root}"]) == 0
    return run


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_the_tiny_model_trains_and_its_loss_falls_well_below_its_start(trained_run):
    metrics = _metrics(trained_run)
    assert [m["step"] for m in metrics] == list(range(10, STEPS + 1, 10))
    assert metrics[-1]["loss"] < 0.6 * metrics[0]["loss"]


def test_metrics_lines_carry_the_contract_fields(trained_run):
    fields = {"step", "epoch", "loss", "logit_scale", "lr", "samples_per_s", "data_time"}
    for record in _metrics(trained_run):
        assert fields | {"batch_time"} <= record.keys()
        assert 0 <= record["data_time"] <= record["batch_time"]
    assert _metrics(trained_run)[-1]["epoch"] == pytest.approx(STEPS * 32 / 256)


def test_zero_shot_on_the_learnable_eval_set_beats_chance(trained_run, colour_world):
    report = json.loads((trained_run / "eval.json").read_text())
    colours = report["sets"]["colours"]
    assert colours["chance_top1"] == pytest.approx(1 / 6)
    assert colours["top1"] > 2 * colours["chance_top1"]
    table = pq.read_table(trained_run / colours["predictions"])
    eval_set = EvalSet.open("colours", colour_world[1])
    assert table.column("path").to_pylist() == [s.path for s in eval_set.samples]


def test_the_run_directory_has_the_contract_layout(trained_run):
    assert (trained_run / "config.json").is_file()
    config = json.loads((trained_run / "config.json").read_text())
    assert config["model"] == "openwit-tiny" and config["resolved"]["total_steps"] == STEPS
    names = sorted(p.name for p in (trained_run / "checkpoints").iterdir())
    assert names == ["latest.pt", "step_120.pt", "step_60.pt"]
    state = torch.load(trained_run / "checkpoints" / "latest.pt", weights_only=True)
    assert {"epoch", "step", "state_dict", "optimizer", "scaler", "config", "data"} <= state.keys()
    assert state["step"] == STEPS and state["config"]["model"] == "openwit-tiny"


def test_a_step_checkpoint_loads_in_open_clip(trained_run):
    import open_clip

    path = trained_run / "checkpoints" / "step_60.pt"
    model, _, _ = open_clip.create_model_and_transforms("openwit-tiny", pretrained=str(path))
    saved = torch.load(path, weights_only=True)["state_dict"]
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(tensor, saved[name], msg=name)


def test_an_unknown_model_is_exit_2_listing_close_names(demo_shards, tmp_path, capsys):
    args = _train_args(demo_shards, tmp_path / "run", "--steps", "1", model="ViT-B-23")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "unknown model 'ViT-B-23'" in err and "ViT-B-32" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--steps", "5", "--epochs", "1"], "not both"),
        ([], "--steps N or --epochs N"),
        (["--steps", "0"], "--steps must be positive"),
        (["--steps", "5", "--precision", "fp8"], "--precision must be one of"),
        (["--steps", "5", "--eval", "nothing"], "NAME=PATH"),
        (["--steps", "5", "--resume", "/no/such.pt"], "no such checkpoint"),
        (["--steps", "5", "--eval", "typo=/no/such/dir"], "no such directory"),
        (["--steps", "5", "--beta2", "1.5"], "--beta2 must be in [0, 1)"),
        (["--steps", "5", "--eps", "0"], "--eps must be positive"),
    ],
)
def test_bad_arguments_are_one_line_errors(demo_shards, tmp_path, capsys, extra, message):
    assert main(_train_args(demo_shards, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_missing_training_data_is_exit_2(tmp_path, capsys):
    assert main(_train_args(tmp_path / "nothing-{0..3}.tar", tmp_path / "run", "--steps", "2")) == 2
    assert "none of the 4 shards" in capsys.readouterr().err


def test_train_and_eval_answer_help(capsys):
    assert main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--train-data", "--resume", "--precision", "--decode", "--grad-accum", "--eval"):
        assert flag in out
    assert main(["eval", "--help"]) == 0
    assert "--checkpoint" in capsys.readouterr().out


def test_resuming_with_another_schedule_warns(trained_run, colour_world, tmp_path, caplog):
    import logging
    import shutil

    run = tmp_path / "again"
    shutil.copytree(trained_run, run)
    args = _train_args(colour_world[0], run, "--steps", str(STEPS + 10), "--resume", "auto")
    with caplog.at_level(logging.WARNING, logger="openwit.train.loop"):
        assert main([*args, "--save-every", "100"]) == 0
    text = " ".join(r.getMessage() for r in caplog.records)
    assert f"at step {STEPS}" in text and f"steps {STEPS} -> {STEPS + 10}" in text
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-2:] == [STEPS, STEPS + 10]


def test_accumulation_checkpointing_and_clipping_run_through_the_loop(demo_shards, tmp_path):
    run = tmp_path / "run"
    extra = ["--steps", "4", "--grad-accum", "2", "--grad-checkpointing", "--grad-clip", "0.5"]
    assert main(_train_args(demo_shards, run, *extra, "--log-every", "2")) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["resolved"]["global_batch"] == 64  # 2 micro-batches of 32
    final = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert sum(map(sum, final["data"]["delivered"])) == 4 * 64


def _adamw(run: Path) -> tuple[tuple[float, float], float]:
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert len({(tuple(g["betas"]), g["eps"]) for g in groups}) == 1
    resolved = json.loads((run / "config.json").read_text())["resolved"]["adamw"]
    assert (resolved["beta1"], resolved["beta2"], resolved["eps"]) == (
        *groups[0]["betas"],
        groups[0]["eps"],
    )
    return tuple(groups[0]["betas"]), groups[0]["eps"]


def test_adamw_betas_and_eps_follow_the_image_tower_unless_given(demo_shards, tmp_path):
    # CLIP's tables: ResNets beta2 0.999 / eps 1e-8, ViTs 0.98 / 1e-6 (as open_clip picks).
    resnet = tmp_path / "rn"
    assert main(_train_args(demo_shards, resnet, "--steps", "1", model="openwit-tiny-rn")) == 0
    assert _adamw(resnet) == ((0.9, 0.999), 1e-8)
    vit = tmp_path / "vit"
    given = ["--steps", "1", "--beta1", "0.8", "--beta2", "0.95", "--eps", "1e-7"]
    assert main(_train_args(demo_shards, vit, *given)) == 0
    assert _adamw(vit) == ((0.8, 0.95), 1e-7)


def test_adamw_defaults_by_model_family():
    from openwit.train.models import ADAMW_CONVNET, ADAMW_TRANSFORMER, adamw_defaults

    for name in ("openwit-tiny", "ViT-B-32", "EVA02-B-16", "ViT-B-16-SigLIP"):
        assert adamw_defaults(name) == ADAMW_TRANSFORMER, name
    for name in ("openwit-tiny-rn", "RN50", "convnext_base", "RN50x4"):
        assert adamw_defaults(name) == ADAMW_CONVNET, name


@pytest.mark.parametrize(
    ("model", "family"),
    [("ViT-B-16-SigLIP", "a SigLIP model"), ("coca_ViT-B-32", "a CoCa model")],
)
def test_models_the_clip_loss_does_not_train_are_refused(
    demo_shards, tmp_path, capsys, model, family
):
    assert main(_train_args(demo_shards, tmp_path / "run", "--steps", "1", model=model)) == 2
    err = capsys.readouterr().err.strip()
    assert family in err and "CLIP-loss models only" in err and "Traceback" not in err
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow  # a subprocess (it would spin forever if the fix broke): torch's import
def test_shards_without_a_usable_sample_stop_the_run_with_one_line(tmp_path):
    import subprocess
    import sys

    folder = unusable_shards(tmp_path / "bad")
    command = [sys.executable, "-m", "openwit.cli", *_train_args(folder, tmp_path / "run")]
    # A timeout only as a guard: before the fix this command spun forever.
    result = subprocess.run([*command, "--steps", "2"], capture_output=True, text=True, timeout=300)
    err = result.stderr.strip()
    assert result.returncode == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"none of the 5 shards in {folder} holds a usable sample" in err
    for _, reason in UNUSABLE_REASONS:
        assert reason in err


def test_unusable_shards_beside_good_ones_are_skipped_and_reported(demo_shards, tmp_path, capsys):
    folder = unusable_shards(tmp_path / "mixed")
    for shard in ("00000.tar", "00001.tar"):
        (folder / f"good-{shard}").write_bytes((demo_shards / shard).read_bytes())
    run = tmp_path / "run"
    assert main(_train_args(folder, run, "--steps", "6", "--batch-size", "16")) == 0
    last = _metrics(run)[-1]
    assert last["shards_failed"] >= 5 and last["samples_skipped"] >= 10
    out = capsys.readouterr().out
    assert "shards skipped" in out and "samples skipped" in out


def test_the_saved_data_position_counts_the_samples_a_worker_skipped(tmp_path):
    samples = [
        {"__key__": f"{i:09d}", "jpg": jpeg_bytes(), "txt": f"sample {i}"} for i in range(24)
    ]
    for i in (1, 2, 3, 4):
        del samples[i]["txt"]
    (tmp_path / "raw").mkdir()
    write_tar(tmp_path / "raw" / "00000.tar", samples)
    write_sizes(tmp_path / "raw", {"00000.tar": 24})
    run = tmp_path / "run"
    args = ["--steps", "1", "--batch-size", "8", "--shuffle-buffer", "1"]
    assert main(_train_args(tmp_path / "raw", run, *args)) == 0
    state = torch.load(run / "checkpoints" / "latest.pt", weights_only=True)
    assert state["data"]["delivered"] == [[12]]  # 8 trained on + 4 skipped, not 8
