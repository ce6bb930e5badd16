"""Zero-shot predictions: the audit's interface, ``openwit eval``, unreadable images."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch

from openwit.cli import main
from openwit.demo.world import write_eval_set
from openwit.evalsets import EvalSet
from openwit.train.checkpoint import model_state
from openwit.train.models import create_model
from openwit.train.zeroshot import PREDICTION_SCHEMA, zero_shot_predictions


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory):
    """An open_clip-style checkpoint of a random tiny model (a bare state_dict file)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    torch.save({"state_dict": model_state(create_model("openwit-tiny").model)}, path)
    return path


@pytest.fixture(scope="module")
def small_eval_set(tmp_path_factory):
    return write_eval_set(tmp_path_factory.mktemp("eval") / "shapes", per_class=2)


def test_predictions_table_has_the_agreed_columns_and_stable_paths(
    untrained_checkpoint, small_eval_set
):
    table = zero_shot_predictions(untrained_checkpoint, "openwit-tiny", small_eval_set)
    assert table.schema == PREDICTION_SCHEMA
    assert table.schema.field("top5").type == pa.list_(pa.int32())
    eval_set = EvalSet.open("shapes", small_eval_set)
    assert table.column("path").to_pylist() == [s.path for s in eval_set.samples]
    assert table.column("label").to_pylist() == [s.label for s in eval_set.samples]
    rows = table.to_pylist()
    for row in rows:
        assert len(row["top5"]) == 5 and row["top5"][0] == row["pred"]
        assert row["correct"] == (row["pred"] == row["label"])


def test_an_unreadable_eval_image_is_predicted_minus_one_and_counted(
    untrained_checkpoint, small_eval_set, tmp_path, capsys
):
    import shutil

    root = tmp_path / "broken"
    shutil.copytree(small_eval_set, root)
    (root / "circle" / "circle-000.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "eval" / "eval.json"
    args = ["eval", "--checkpoint", str(untrained_checkpoint), "--model", "openwit-tiny"]
    assert main([*args, "--eval", f"broken={root}", "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert report["sets"]["broken"]["unreadable"] == 1
    table = pq.read_table(out.parent / "predictions" / "broken.parquet")
    row = table.filter(pc.equal(table["path"], "circle/circle-000.jpg")).to_pylist()[0]
    assert row["pred"] == -1 and row["correct"] is False and row["top5"] == []
    assert "openwit eval" in capsys.readouterr().out


def test_eval_command_writes_eval_json_and_predictions_for_each_set(
    untrained_checkpoint, small_eval_set, tmp_path
):
    out = tmp_path / "eval.json"
    args = ["eval", "--checkpoint", str(untrained_checkpoint), "--model", "openwit-tiny"]
    sets = ["--eval", f"a={small_eval_set}", "--eval", f"b={small_eval_set}"]
    assert main([*args, *sets, "--out", str(out), "--device", "cpu"]) == 0
    report = json.loads(out.read_text())
    assert set(report["sets"]) == {"a", "b"}
    for name in ("a", "b"):
        result = report["sets"][name]
        assert result["n"] == 12 and result["classes"] == 6
        assert 0 <= result["top1"] <= result["top5"] <= 1
        assert (tmp_path / "predictions" / f"{name}.parquet").is_file()


def test_eval_of_a_missing_checkpoint_is_exit_2(small_eval_set, tmp_path, capsys):
    args = ["eval", "--checkpoint", str(tmp_path / "nope.pt"), "--model", "openwit-tiny"]
    assert main([*args, "--eval", f"s={small_eval_set}", "--out", str(tmp_path / "e.json")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
