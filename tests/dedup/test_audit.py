"""``openwit audit``: overlap found from shards alone, accuracy split, a report that opens."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.cli import main
from openwit.dedup import transforms as tf
from openwit.dedup.audit import AuditRequest, decontamination_counts, run_audit
from openwit.dedup.stats import clopper_pearson
from openwit.demo.shards import write_shards
from openwit.evalsets import EvalSet
from tests.browser import needs_chromium, render
from tests.dedup.images import photo, stored, write_eval_set


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


HOSTILE_CAPTION = 'my cat <script>alert("x")</script> & friends'


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Eval set of 8 photos; shards hold crawl copies of two of them (one twice)."""
    root = tmp_path_factory.mktemp("audit")
    eval_root = write_eval_set(
        root / "eval",
        {
            "animal": [("chelsea", photo("chelsea")), ("horse-free", photo("coins"))],
            "person": [("astronaut", photo("astronaut")), ("camera", photo("camera"))],
            "thing": [
                ("coffee", photo("coffee")),
                ("rocket", photo("rocket")),
                ("moon", photo("moon")),
                ("brick", photo("brick")),
            ],
        },
    )
    samples = [
        (stored(photo("gravel")), "gravel path", "http://x.example/0.jpg"),
        (stored(photo("grass")), "green grass", "http://x.example/1.jpg"),
        (
            stored(tf.letterbox(0.3, (0, 0, 0))(tf.hflip(photo("chelsea")))),
            HOSTILE_CAPTION,
            "http://x.example/cat.jpg?a=1&b=<2>",
        ),
        (stored(tf.jpeg(40)(photo("astronaut"))), "astronaut", "http://x.example/3.jpg"),
        (
            stored(tf.crop(0.05, 0.05, 0.05, 0.05)(photo("astronaut"))),
            "crop",
            "http://x.example/4.jpg",
        ),
        (stored(photo("hubble_deep_field")), "galaxies", "http://x.example/5.jpg"),
    ]
    shards = write_shards(samples, root / "build" / "shards", per_shard=4)
    return root, shards, eval_root


def predictions_file(path: Path, eval_root: Path, right: set[str]) -> Path:
    samples = EvalSet.open("pets", eval_root).samples
    table = pa.table(
        {
            "path": [s.path for s in samples],
            "label": pa.array([s.label for s in samples], pa.int32()),
            "pred": pa.array([s.label if s.path in right else 0 for s in samples], pa.int32()),
            "correct": [s.path in right for s in samples],
            "top5": pa.array([[s.label] for s in samples], pa.list_(pa.int32())),
        }
    )
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="module")
def audited(world):
    root, shards, eval_root = world
    right = {"animal/chelsea.png", "person/astronaut.png", "thing/coffee.png",
             "thing/rocket.png", "animal/horse-free.png"}  # fmt: skip
    predictions = predictions_file(root / "pred.parquet", eval_root, right)
    out = root / "report"
    audit = run_audit(
        AuditRequest(
            shards,
            {"pets": eval_root},
            out,
            predictions={"pets": predictions},
            progress=False,
        )
    )
    return audit, out


def test_overlap_is_found_from_the_shard_directory_alone(audited):
    audit, _ = audited
    [pets] = audit["sets"]
    assert (pets["n"], pets["n_overlap"]) == (8, 2)
    assert pets["overlap_rate"] == pytest.approx(0.25)
    assert audit["n_shard_samples"] == 6
    matched = {(m["eval_path"], m["shard_key"]) for m in pets["matches"]}
    assert matched == {
        ("animal/chelsea.png", "000000002"),
        ("person/astronaut.png", "000000003"),
        ("person/astronaut.png", "000000004"),
    }
    assert pets["n_training_matches"] == 3
    cat = next(m for m in pets["matches"] if m["shard_key"] == "000000002")
    assert cat["url"] == "http://x.example/cat.jpg?a=1&b=<2>"
    assert cat["variant"].startswith("mirror")
    assert cat["shard"] == "00000"
    assert cat["phash_distance"] <= audit["detector"]["phash_radius"]


def test_accuracy_split_matches_the_hand_computed_values(audited):
    audit, _ = audited
    [pets] = audit["sets"]
    # Overlap: chelsea and astronaut, both right. Clean: 6 images, 3 right.
    assert pets["acc_all"] == pytest.approx(5 / 8)
    assert pets["acc_clean"] == pytest.approx(3 / 6)
    assert pets["acc_overlap"] == pytest.approx(1.0)
    assert pets["delta_all_minus_clean"] == pytest.approx(5 / 8 - 1 / 2)
    assert pets["ci_overlap"] == pytest.approx(list(clopper_pearson(2, 2)))
    assert pets["p_value"] is None
    assert "only 2 overlapping images" in pets["test_note"]


def test_report_folder_is_self_contained(audited, tmp_path):
    _, out = audited
    html = (out / "index.html").read_text()
    sources = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert sources, "the report shows charts and thumbnails"
    for source in sources:
        assert "://" not in source and not source.startswith("/"), source
        assert (out / source).is_file(), source
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html  # the caption is shown, escaped
    copy = tmp_path / "copied"
    shutil.copytree(out, copy)
    for source in sources:
        assert (copy / source).is_file()
    thumbs = sorted((out / "thumbs" / "00-pets").glob("*.jpg"))
    assert len(thumbs) == 6  # three pairs, eval and shard side each


def test_audit_json_holds_the_contract_fields(audited):
    _, out = audited
    data = json.loads((out / "audit.json").read_text())
    [pets] = data["sets"]
    for field in (
        "name", "n", "n_overlap", "overlap_rate", "acc_all", "acc_clean", "acc_overlap",
        "delta_all_minus_clean", "p_value", "ci_overlap", "detector", "phash_radius", "matches",
    ):  # fmt: skip
        assert field in pets
    for field in ("eval_path", "shard_key", "url", "phash_distance"):
        assert field in pets["matches"][0]


@needs_chromium
def test_report_renders_in_headless_chromium_without_errors(audited, tmp_path):
    _, out = audited
    shown = render(out, tmp_path, "audit-report")
    assert shown.screenshot.is_file() and shown.screenshot.stat().st_size > 10_000
    assert shown.images == 8  # two charts, three pairs of thumbnails
    assert shown.broken == [] and shown.errors == []


def test_without_predictions_accuracy_is_empty_and_overlap_still_runs(world, tmp_path):
    _, shards, eval_root = world
    audit = run_audit(AuditRequest(shards, {"pets": eval_root}, tmp_path / "r", progress=False))
    [pets] = audit["sets"]
    assert pets["n_overlap"] == 2
    for field in ("acc_all", "acc_clean", "acc_overlap", "p_value", "ci_overlap"):
        assert pets[field] is None
    assert not (tmp_path / "r" / "accuracy_deltas.png").exists()
    assert (tmp_path / "r" / "overlap_rates.png").is_file()


def test_missing_tar_costs_thumbnails_not_the_audit(world, tmp_path):
    _, shards, eval_root = world
    partial = tmp_path / "shards"
    shutil.copytree(shards, partial)
    (partial / "00000.tar").unlink()
    audit = run_audit(AuditRequest(partial, {"pets": eval_root}, tmp_path / "r", progress=False))
    cat = next(m for m in audit["sets"][0]["matches"] if m["shard_key"] == "000000002")
    assert cat["shard_thumb"] is None and cat["eval_thumb"] is not None
    assert "no image" in (tmp_path / "r" / "index.html").read_text()


def test_cli_prints_a_summary_and_writes_the_report(world, tmp_path, capsys):
    _, shards, eval_root = world
    predictions = predictions_file(tmp_path / "p.parquet", eval_root, {"thing/coffee.png"})
    code = main(
        [
            "audit",
            "--shards", str(shards),
            "--eval", f"pets={eval_root}",
            "--predictions", f"pets={predictions}",
            "--out", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "openwit audit" in out and "pets" in out and "25.00%" in out
    assert "no test" in out
    assert (tmp_path / "out" / "index.html").is_file()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eval", "pets"], "--eval expects NAME=PATH"),
        (["--eval", "pets=/no/such/folder"], "no such directory"),
        (["--eval", "pets=EVAL", "--predictions", "other=P"], "no --eval set of that name"),
        (["--eval", "pets=EVAL", "--predictions", "pets=/nope.parquet"], "no such file"),
        (["--eval", "pets=EVAL", "--checkpoint", "/nope.pt", "--model", "m"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(world, tmp_path, capsys, extra, message):
    _, shards, eval_root = world
    extra = [e.replace("EVAL", str(eval_root)) for e in extra]
    code = main(["audit", "--shards", str(shards), "--out", str(tmp_path / "o"), *extra])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_shard_directory_is_exit_2(world, tmp_path, capsys):
    _, _, eval_root = world
    args = ["audit", "--shards", str(tmp_path / "none"), "--eval", f"e={eval_root}"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_shard_index_without_hashes_is_exit_2(world, tmp_path, capsys):
    _, _, eval_root = world
    (tmp_path / "s").mkdir()
    pq.write_table(
        pa.table({"key": ["000000000"], "url": ["http://x/a"]}), tmp_path / "s/0.parquet"
    )
    args = ["audit", "--shards", str(tmp_path / "s"), "--eval", f"e={eval_root}"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "lacks column(s) phash, dhash" in capsys.readouterr().err


def test_predictions_that_miss_images_are_refused(world, tmp_path, capsys):
    _, shards, eval_root = world
    table = pa.table({"path": ["animal/chelsea.png"], "correct": [True]})
    pq.write_table(table, tmp_path / "p.parquet")
    args = ["audit", "--shards", str(shards), "--eval", f"pets={eval_root}"]
    args += ["--predictions", f"pets={tmp_path / 'p.parquet'}", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert "7 of its 8 images missing" in capsys.readouterr().err


def test_a_checkpoint_gives_accuracies_through_the_trainers_evaluator(world, tmp_path):
    import torch

    from openwit.train.models import create_model

    _, shards, eval_root = world
    checkpoint = tmp_path / "random-init.pt"
    torch.manual_seed(0)
    torch.save({"state_dict": create_model("openwit-tiny").model.state_dict()}, checkpoint)
    args = ["audit", "--shards", str(shards), "--eval", f"pets={eval_root}"]
    args += ["--checkpoint", str(checkpoint), "--model", "openwit-tiny"]
    assert main([*args, "--out", str(tmp_path / "o")]) == 0
    (row,) = json.loads((tmp_path / "o" / "audit.json").read_text())["sets"]
    assert 0.0 <= row["acc_all"] <= 1.0 and 0.0 <= row["acc_clean"] <= 1.0
    n_clean = row["n"] - row["n_overlap"]
    correct = row["acc_clean"] * n_clean + (row["acc_overlap"] or 0.0) * row["n_overlap"]
    assert correct == pytest.approx(row["acc_all"] * row["n"])


def test_decontamination_of_the_build_is_read_from_beside_the_shards(tmp_path):
    from openwit.dedup.layout import EVAL_MATCH_SCHEMA

    build = tmp_path / "build"
    (build / "shards").mkdir(parents=True)
    attempt = build / "stages" / "dedup" / "a1"
    attempt.mkdir(parents=True)
    rows = [
        {"eval_set": "pets", "eval_path": "a.png", "eval_label": 0, "uid": u, "url": "http://x",
         "sha256": "s", "phash": 1, "dhash": 2, "variant": "full", "phash_distance": 0,
         "dhash_distance": 0, "rejected": True}
        for u in ("u1", "u2")
    ]  # fmt: skip
    matches = attempt / "eval-matches.parquet"
    pq.write_table(pa.Table.from_pylist(rows, EVAL_MATCH_SCHEMA), matches)
    commit = {"stages/dedup/a1/eval-matches.parquet": matches.stat().st_size}
    (attempt / "_commit.json").write_text(json.dumps(commit))
    entry = {"status": "complete", "attempt": "a1", "commit": "stages/dedup/a1/_commit.json"}
    manifest = {"config": {"dedup": {"decontaminate": True}}, "stages": {"dedup": entry}}
    (build / "manifest.json").write_text(json.dumps(manifest))
    assert decontamination_counts(build / "shards") == {
        "pets": {"images": 1, "training_samples": 2}
    }
    (build / "manifest.json").write_text(json.dumps({"config": {"dedup": {}}}))
    assert decontamination_counts(build / "shards") is None


def test_cli_module_stays_light():
    heavy = ("numpy", "PIL", "apache_beam", "scipy")
    code = f"import sys, openwit.dedup.cli; print([m for m in {heavy!r} if m in sys.modules])"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "[]", result.stderr


def test_several_eval_sets_are_audited_side_by_side(world, tmp_path):
    _, shards, eval_root = world
    only_coffee = write_eval_set(tmp_path / "coffee", {"cup": [("coffee", photo("coffee"))]})
    audit = run_audit(
        AuditRequest(
            shards, {"pets": eval_root, "pets?": only_coffee}, tmp_path / "r", progress=False
        )
    )
    assert [(s["name"], s["n"], s["n_overlap"]) for s in audit["sets"]] == [
        ("pets", 8, 2),
        ("pets?", 1, 0),
    ]
    assert sorted(p.name for p in (tmp_path / "r" / "thumbs").iterdir()) == ["00-pets"]


def test_unreadable_eval_images_are_in_neither_clean_nor_overlap(world, tmp_path):
    _, shards, eval_root = world
    broken = tmp_path / "eval"
    shutil.copytree(eval_root, broken)
    (broken / "thing" / "brick.png").write_bytes(b"not a png")  # a wrong Clean image before
    (broken / "thing" / "lost.png").symlink_to(tmp_path / "moved-away.png")
    samples = EvalSet.open("pets", broken).samples
    right = {"animal/chelsea.png", "person/astronaut.png", "thing/coffee.png",
             "thing/rocket.png", "animal/horse-free.png"}  # fmt: skip
    unread = {"thing/brick.png", "thing/lost.png"}
    table = pa.table(
        {
            "path": [s.path for s in samples],
            "label": pa.array([s.label for s in samples], pa.int32()),
            "pred": pa.array([-1 if s.path in unread else s.label for s in samples], pa.int32()),
            "correct": [s.path in right for s in samples],
            "top5": pa.array([[] for _ in samples], pa.list_(pa.int32())),
        }
    )
    pq.write_table(table, tmp_path / "pred.parquet")
    request = AuditRequest(
        shards, {"pets": broken}, tmp_path / "r", predictions={"pets": tmp_path / "pred.parquet"}
    )
    [pets] = run_audit(dataclasses.replace(request, progress=False))["sets"]
    assert (pets["n"], pets["n_unreadable"], pets["n_overlap"]) == (9, 2, 2)
    assert set(pets["unreadable"]) == unread
    assert pets["overlap_rate"] == pytest.approx(2 / 7)
    # The 7 readable images: Overlap 2 of 2 right, Clean 3 of 5 right.
    assert pets["acc_clean"] == pytest.approx(3 / 5)
    assert pets["acc_all"] == pytest.approx(5 / 7)
    assert pets["acc_overlap"] == pytest.approx(1.0)
    saved = json.loads((tmp_path / "r" / "audit.json").read_text())["sets"][0]
    assert saved["n_unreadable"] == 2 and saved["acc_clean"] == pytest.approx(3 / 5)
    html = (tmp_path / "r" / "index.html").read_text()
    assert "<th>unreadable</th>" in html and "<td>2</td>" in html
    assert "2 images could not be read" in html


def _one_line_exit_2(capsys, code: int, message: str) -> None:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "Traceback" not in err
    assert len(err.splitlines()) == 1, err


def test_a_file_that_is_not_a_checkpoint_is_one_line_before_the_search(world, tmp_path, capsys):
    _, shards, eval_root = world
    (tmp_path / "random.pt").write_bytes(bytes(range(256)) * 16)
    args = ["audit", "--shards", str(shards), "--eval", f"pets={eval_root}"]
    args += ["--checkpoint", str(tmp_path / "random.pt"), "--model", "openwit-tiny"]
    _one_line_exit_2(capsys, main([*args, "--out", str(tmp_path / "o")]), "cannot read checkpoint")
    assert not (tmp_path / "o").exists()


def test_an_eval_set_of_empty_class_folders_is_refused(world, tmp_path, capsys):
    _, shards, _ = world
    for name in ("cat", "dog"):
        (tmp_path / "empty" / name).mkdir(parents=True)
    args = ["audit", "--shards", str(shards), "--eval", f"e={tmp_path / 'empty'}"]
    code = main([*args, "--out", str(tmp_path / "o")])
    _one_line_exit_2(capsys, code, "no images in its 2 class folders")


@pytest.mark.skipif(torch_cuda_available(), reason="this machine has a GPU")
def test_audit_on_cuda_without_a_gpu_is_one_line(world, tmp_path, capsys):
    _, shards, eval_root = world
    checkpoint = tmp_path / "tiny.pt"
    checkpoint.write_bytes(b"never read")
    args = ["audit", "--shards", str(shards), "--eval", f"pets={eval_root}", "--device", "cuda"]
    args += ["--checkpoint", str(checkpoint), "--model", "openwit-tiny"]
    code = main([*args, "--out", str(tmp_path / "o")])
    _one_line_exit_2(capsys, code, "--device cuda: torch sees no CUDA GPU")
