"""The three DAGs run with dag.test() on a small world served on 127.0.0.1 (DirectRunner).

One temporary AIRFLOW_HOME (SQLite) for the module; each fixture is one DAG run, in the
order a deployment would see them: a first build whose download worker is killed once, a
build stopped after ingest (which the Python entry point then completes, the fault-free
reference), the first build again, training, the audit.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openwit.airflow.results import validate_build
from openwit.builddir import BuildDir
from openwit.errors import FunnelLawError
from openwit.stage_names import BUILD_STAGES
from tests.airflow.helpers import airflow_settings, migrate, requires_airflow, run_dag
from tests.airflow.world import TripwireServer, World, kill_pipeline_of, make_world, queries_param

pytestmark = [requires_airflow, pytest.mark.slow]

BUILD = "openwit_dataset_build"
TRIPWIRE = "/img/00012.jpg"
TINY_TRAINING = {
    "model": "openwit-tiny",
    "steps": 4,
    "epochs": None,
    "batch_size": 8,
    "precision": "fp32",
    "save_every": 2,
    "workers": 1,
    "device": "cpu",
}


@dataclass
class Deployment:
    root: Path
    world: World
    settings: dict[str, str]
    server: TripwireServer

    def run(self, name: str, dag_id: str, conf: dict[str, Any]) -> dict[str, Any]:
        return run_dag(self.settings, self.root / f"{name}.json", dag_id, conf)

    def build(self, name: str, config: str, **params: Any) -> dict[str, Any]:
        conf = {"config": str(self.world.root / f"{config}.yaml"), "queries": queries_param()}
        return self.run(name, BUILD, {**conf, **params})


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    root = tmp_path_factory.mktemp("dag-runs")
    world = make_world(root / "world")
    (root / "tmp").mkdir()  # what the killed pipeline cannot clean up stays here, not in /tmp
    settings = airflow_settings(
        root / "home",
        OPENWIT_EVAL_SETS=f"shapes={world.eval_set}",
        OPENWIT_TRAIN_RUNS=str(root / "runs"),
        TMPDIR=str(root / "tmp"),
    )
    migrate(settings)
    with TripwireServer(world.web) as server:
        world.write_pool(server.base_url)
        for name in ("built", "reference"):
            world.config(name)
        yield Deployment(root, world, settings, server)


@pytest.fixture(scope="module")
def built(deployment):
    """The first build (it also builds the query list); its download pipeline is killed
    (SIGKILL) once, after it committed some work, and the task is retried."""
    trap = kill_pipeline_of("download", deployment.world.root / "built")
    deployment.server.arm(TRIPWIRE, trap)
    return deployment.build("built", "built")


@pytest.fixture(scope="module")
def partial(deployment, built):
    return deployment.build("partial", "reference", until="ingest")


@pytest.fixture(scope="module")
def reference(deployment, partial):
    """The same build without a fault, by the Python entry point in the directory the
    partial Airflow run left: it continues that run's work."""
    from openwit.build import run_build
    from openwit.config import load_build_config

    return run_build(load_build_config(deployment.world.root / "reference.yaml"), resume=True)


@pytest.fixture(scope="module")
def rerun(deployment, built):
    shards = deployment.world.root / "built" / "shards"
    before = {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}
    run = deployment.build("rerun", "built")
    return run, before, {p.name: p.stat().st_mtime_ns for p in shards.iterdir()}


@pytest.fixture(scope="module")
def trained(deployment, rerun):
    return deployment.run("train", "openwit_train", TINY_TRAINING)


@pytest.fixture(scope="module")
def audited(deployment, trained):
    return deployment.run("audit", "openwit_overlap_audit", {})


def states(run: dict[str, Any]) -> dict[str, str]:
    return {task: value["state"] for task, value in run["tasks"].items()}


def xcom(run: dict[str, Any], task: str) -> Any:
    return run["tasks"][task]["xcom"]


def tar_samples(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def test_until_runs_the_first_stages_and_skips_the_rest(partial):
    assert partial["state"] == "success"
    assert states(partial)["ingest"] == "success" and xcom(partial, "ingest")["ran"]
    assert {states(partial)[s] for s in BUILD_STAGES[1:]} == {"skipped"}
    assert states(partial)["queries"] == "success" and not xcom(partial, "queries")["ran"]
    assert states(partial)["validate"] == "success"  # the funnel of what ran
    assert xcom(partial, "validate") == {"stages": 1, "complete": False}
    assert states(partial)["publish"] == "skipped"
    uri = xcom(partial, "check")["shards_uri"]
    assert all(event["uri"] != uri for event in partial["events"])


def test_a_build_runs_end_to_end_to_valid_shards_and_publishes_them(deployment, built):
    assert built["state"] == "success"
    assert set(states(built).values()) == {"success"}
    assert xcom(built, "queries")["ran"] and xcom(built, "queries")["rows"] > 100
    assert xcom(built, "queries")["pipeline_started"]
    assert all(xcom(built, stage)["ran"] for stage in BUILD_STAGES)
    assert all(xcom(built, stage)["pipeline_started"] for stage in BUILD_STAGES)
    counts = [xcom(built, stage) for stage in BUILD_STAGES]
    for stage in counts:
        assert stage["status"] == "complete"
        assert stage["in"] == stage["out"] + stage["rejected"]
        assert stage["rejected"] == sum(stage["rejected_by_reason"].values())
    for before, after in itertools.pairwise(counts):
        assert before["out"] == after["in"]
    assert counts[4]["rejected_by_reason"] == {"http_404": 1}  # the pool's missing image

    request = xcom(built, "check")
    build = BuildDir(deployment.world.root / "built")
    sizes = build.shard_sizes()
    assert sorted(sizes) == build.shard_tars() and len(sizes) >= 3
    for name, count in sizes.items():
        keys = {n.split(".")[0] for n in tar_samples(Path(build.shards_dir) / name)}
        assert len(keys) == count
    samples = sum(sizes.values())
    assert samples == counts[-1]["out"] > 20
    assert xcom(built, "validate") == {
        "stages": 8,
        "complete": True,
        "samples": samples,
        "shards": len(sizes),
    }

    (event,) = [e for e in built["events"] if e["source_run_id"] == built["run_id"]]
    assert event["uri"] == request["shards_uri"] == build.shards_uri()
    assert event["source_dag_id"] == BUILD
    extra = event["extra"]
    assert extra["config_hash"] == request["config_hash"]
    assert (extra["samples"], extra["shards"]) == (samples, len(sizes))
    assert extra["records_in"] == counts[0]["in"]
    assert extra["rejected"] == {s["stage"]: s["rejected"] for s in counts}


def test_a_download_killed_midway_is_retried_and_gives_the_same_shards(
    deployment, built, reference
):
    assert deployment.server.sprung == [TRIPWIRE]
    download = built["tasks"]["download"]
    assert download["state"] == "success" and download["try_number"] == 2
    stats = BuildDir(deployment.world.root / "built").stage_entry("download")["stats"]
    assert stats["units_resumed"] >= 1  # the retry kept the units committed before the kill
    assert all(built["tasks"][t]["try_number"] == 1 for t in built["tasks"] if t != "download")

    def shards(name: str) -> dict[str, dict[str, bytes]]:
        folder = Path(BuildDir(deployment.world.root / name).shards_dir)
        return {tar.name: tar_samples(tar) for tar in sorted(folder.glob("*.tar"))}

    assert reference.complete and reference.skipped == ["ingest"]  # left by the partial run
    assert shards("built") == shards("reference")


def test_a_second_run_does_no_rework(rerun, built):
    run, before, after = rerun
    assert run["state"] == "success"
    assert xcom(run, "queries")["ran"] is False  # same dump, same thresholds
    assert xcom(run, "queries")["pipeline_started"] is False
    assert xcom(run, "queries")["rows"] == xcom(built, "queries")["rows"]
    assert {stage: xcom(run, stage)["ran"] for stage in BUILD_STAGES} == dict.fromkeys(
        BUILD_STAGES, False
    )
    # and no pipeline was started to find that out (on Dataflow, a job per stage)
    assert {stage: xcom(run, stage)["pipeline_started"] for stage in BUILD_STAGES} == (
        dict.fromkeys(BUILD_STAGES, False)
    )
    assert [xcom(run, s)["out"] for s in BUILD_STAGES] == [
        xcom(built, s)["out"] for s in BUILD_STAGES
    ]
    assert after == before  # not one shard file rewritten
    assert states(run)["publish"] == "skipped"  # the same shards are not announced again
    assert not [e for e in run["events"] if e["source_run_id"] == run["run_id"]]


def test_training_on_the_newest_shards_then_zero_shot_eval(deployment, trained):
    assert trained["state"] == "success"
    run = xcom(trained, "prepare")
    assert run["shards"] == str(deployment.world.root / "built" / "shards")
    checkpoint = Path(xcom(trained, "train")["checkpoint"])
    assert checkpoint == Path(run["run_dir"]) / "checkpoints" / "latest.pt"
    assert checkpoint.is_file() and Path(run["run_dir"]).parent == deployment.root / "runs"
    assert json.loads((Path(run["run_dir"]) / "config.json").read_text())["steps"] == 4
    scores = xcom(trained, "evaluate")["sets"]["shapes"]
    assert scores["n"] == 12 and 0 <= scores["top1"] <= scores["top5"] <= 1


def test_the_audit_runs_on_the_newest_shards_with_the_newest_checkpoint(
    deployment, trained, audited
):
    assert audited["state"] == "success"
    inputs = xcom(audited, "inputs")
    assert inputs["shards"] == str(deployment.world.root / "built" / "shards")
    assert inputs["shards_source"] == "newest asset event"
    assert inputs["checkpoint"] == xcom(trained, "train")["checkpoint"]
    assert inputs["model"] == "openwit-tiny"
    report = xcom(audited, "audit")
    assert Path(report["report"]).is_file() and Path(report["audit_json"]).is_file()
    assert f"audit report: {report['report']}" in (deployment.root / "audit.log").read_text()
    (shapes,) = report["sets"]
    assert shapes["n"] == 12 and shapes["n_overlap"] >= 3  # the three planted copies
    assert shapes["acc_all"] is not None
    (event,) = [e for e in audited["events"] if e["source_dag_id"] == "openwit_overlap_audit"]
    assert event["uri"] == Path(report["report"]).parent.as_uri()
    assert event["extra"]["sets"] == report["sets"]


def test_validation_catches_shards_that_disagree_with_their_records(deployment, built, tmp_path):
    copy = tmp_path / "build"
    shutil.copytree(deployment.world.root / "built", copy)
    build = BuildDir(copy)
    assert validate_build(build, list(BUILD_STAGES))["complete"]

    sizes = build.shard_sizes()
    first = sorted(sizes)[0]
    (Path(build.shards_dir) / "sizes.json").write_text(
        json.dumps({**sizes, first: sizes[first] + 1})
    )
    with pytest.raises(ValueError, match=rf"{first}: sizes.json says \d+ samples, its index has"):
        validate_build(build, list(BUILD_STAGES))
    (Path(build.shards_dir) / "sizes.json").write_text(json.dumps(sizes))
    (Path(build.shards_dir) / first).unlink()
    with pytest.raises(ValueError, match="missing: \\['" + first):
        validate_build(build, list(BUILD_STAGES))

    funnel = json.loads((copy / "funnel.json").read_text())
    funnel["text"]["out"] += 1
    (copy / "funnel.json").write_text(json.dumps(funnel))
    with pytest.raises(FunnelLawError, match="stage text"):
        validate_build(build, list(BUILD_STAGES))


def test_a_mistake_fails_the_check_at_once_with_the_clis_line(deployment):
    bad = deployment.world.root / "bad.yaml"
    bad.write_text(f"out: {deployment.root / 'bad'}\ninputs:\n  - path: missing.jsonl\n")
    run = deployment.run("mistake", BUILD, {"config": str(bad)})
    assert run["state"] == "failed"
    assert run["tasks"]["check"] == {"state": "failed", "try_number": 1, "xcom": None}
    assert {states(run)[t] for t in run["tasks"] if t != "check"} == {"upstream_failed"}
    log = (deployment.root / "mistake.log").read_text()
    assert f"inputs[0].path: no such file: {deployment.world.root / 'missing.jsonl'}" in log


def test_a_stage_that_finds_another_build_running_fails_at_once_with_its_line(deployment, built):
    from openwit.lease import build_lease

    out = deployment.world.root / "locked"
    config = deployment.world.config("locked")
    with build_lease(str(out)):  # another build (a CLI run, a second scheduler) holds it
        run = deployment.run("locked", BUILD, {"config": str(config)})
    assert run["state"] == "failed"
    assert run["tasks"]["ingest"]["state"] == "failed"
    assert run["tasks"]["ingest"]["try_number"] == 1  # a user mistake is not retried
    assert states(run)["check"] == "success" and states(run)["queries"] == "skipped"
    log = (deployment.root / "locked.log").read_text()
    assert f"AirflowFailException: another openwit build is running in {out}" in log
    assert "Apache Beam process failed" not in log  # the stage's line, not the provider's
