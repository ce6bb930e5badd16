"""Zero-shot predictions: the audit's interface, ``openwit eval``, unreadable images."""

from __future__ import annotations

import json
import random

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


@pytest.fixture(scope="module")
def wrong_checkpoints(tmp_path_factory):
    """Files a user might pass as a checkpoint of openwit-tiny by mistake."""
    folder = tmp_path_factory.mktemp("wrong")
    (folder / "random.pt").write_bytes(random.Random(0).randbytes(4096))
    torch.save({"epoch": 3, "note": "not weights"}, folder / "dict.pt")
    torch.save([torch.zeros(2), torch.ones(2)], folder / "list.pt")
    other = create_model("openwit-tiny-rn").model  # another model's real weights
    torch.save({"state_dict": model_state(other)}, folder / "other-model.pt")
    return folder


WRONG_CHECKPOINTS = [
    ("random.pt", "cannot read checkpoint"),
    ("dict.pt", "holds a dict without model weights"),
    ("list.pt", "holds a list without model weights"),
    ("other-model.pt", "is not a checkpoint of model openwit-tiny"),
]


@pytest.mark.parametrize(("name", "message"), WRONG_CHECKPOINTS)
def test_eval_of_a_file_that_is_not_a_checkpoint_of_the_model_is_one_line_exit_2(
    wrong_checkpoints, small_eval_set, tmp_path, capsys, name, message
):
    args = ["eval", "--checkpoint", str(wrong_checkpoints / name), "--model", "openwit-tiny"]
    args += ["--eval", f"s={small_eval_set}", "--out", str(tmp_path / "e.json")]
    assert main([*args, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_eval_on_cuda_without_a_gpu_is_one_line_exit_2(
    untrained_checkpoint, small_eval_set, tmp_path, capsys
):
    args = ["eval", "--checkpoint", str(untrained_checkpoint), "--model", "openwit-tiny"]
    args += ["--eval", f"s={small_eval_set}", "--out", str(tmp_path / "e.json")]
    assert main([*args, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda: torch sees no CUDA GPU" in err and len(err.splitlines()) == 1


def test_eval_of_class_folders_without_images_is_exit_2(untrained_checkpoint, tmp_path, capsys):
    for name in ("cat", "dog"):
        (tmp_path / "empty" / name).mkdir(parents=True)
    args = ["eval", "--checkpoint", str(untrained_checkpoint), "--model", "openwit-tiny"]
    args += ["--eval", f"e={tmp_path / 'empty'}", "--out", str(tmp_path / "e.json")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "no images in its 2 class folders" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "e.json").exists()


def test_a_dangling_symlink_in_an_eval_set_counts_as_unreadable(
    untrained_checkpoint, small_eval_set, tmp_path
):
    import shutil

    root = tmp_path / "linked"
    shutil.copytree(small_eval_set, root)
    (root / "circle" / "circle-999.jpg").symlink_to(tmp_path / "moved-away.jpg")
    out = tmp_path / "eval.json"
    args = ["eval", "--checkpoint", str(untrained_checkpoint), "--model", "openwit-tiny"]
    assert main([*args, "--eval", f"s={root}", "--out", str(out), "--device", "cpu"]) == 0
    result = json.loads(out.read_text())["sets"]["s"]
    assert result["n"] == 13 and result["unreadable"] == 1
