"""airflow_dags/ as Airflow's DagBag sees it: no import errors, light imports, the DAG shapes."""

from __future__ import annotations

import itertools

import pytest

from openwit.stage_names import BUILD_STAGES
from tests.airflow.helpers import airflow_settings, requires_airflow, run_driver

pytestmark = requires_airflow

DAG_FILES = {"openwit_dataset_build.py", "openwit_overlap_audit.py", "openwit_train.py"}


@pytest.fixture(scope="module")
def described(tmp_path_factory):
    root = tmp_path_factory.mktemp("dagbag")
    return run_driver(airflow_settings(root / "home"), root / "describe.json", "describe")


def test_every_dag_file_imports_without_errors_or_heavy_modules(described):
    assert described["import_errors"] == {}
    assert set(described["parse_seconds"]) == DAG_FILES
    # Parsing stays fast because no file imports Beam, Arrow or torch at its top level.
    assert described["heavy_modules"] == []
    print("parse seconds per file:", described["parse_seconds"])


def test_the_dag_ids_are_exactly_the_three_of_the_contract(described):
    assert set(described["dags"]) == {
        "openwit_dataset_build",
        "openwit_overlap_audit",
        "openwit_train",
    }


def test_the_build_runs_check_queries_every_stage_in_order_then_validate_and_publish(described):
    dag = described["dags"]["openwit_dataset_build"]
    order = ["check", "queries", *BUILD_STAGES, "validate", "publish"]
    tasks = dag["tasks"]
    assert set(tasks) == set(order)
    for before, after in itertools.pairwise(order):
        assert tasks[after]["upstream"] == [before], after
    assert tasks["check"]["upstream"] == []
    for step in ["queries", *BUILD_STAGES]:
        assert tasks[step]["operator"] == "BuildStepOperator", step
        assert tasks[step]["retries"] == 2 and tasks[step]["execution_timeout_s"] > 0
    # The optional query step may skip; the first stage and validate run after a skip.
    assert tasks["ingest"]["trigger_rule"] == "none_failed"
    assert tasks["validate"]["trigger_rule"] == "none_failed"
    assert any("openwit_shards" in outlet for outlet in tasks["publish"]["outlets"])
    assert dag["schedule"] == "None"  # triggered unless OPENWIT_BUILD_SCHEDULE says otherwise
    assert dag["max_active_runs"] == 1 and dag["catchup"] is False
    assert dag["params"] == ["beam_options", "config", "queries", "runner", "until"]


def test_audit_and_train_follow_the_shards_alias(described):
    audit = described["dags"]["openwit_overlap_audit"]
    train = described["dags"]["openwit_train"]
    for dag in (audit, train):
        assert "AssetAlias(name='openwit_shards'" in dag["schedule"]
    assert {t: v["upstream"] for t, v in audit["tasks"].items()} == {
        "inputs": [],
        "audit": ["inputs"],
    }
    assert any("openwit_audit_reports" in o for o in audit["tasks"]["audit"]["outlets"])
    assert {t: v["upstream"] for t, v in train["tasks"].items()} == {
        "prepare": [],
        "train": ["prepare"],
        "evaluate": ["train"],
    }
    assert {"eval", "checkpoint", "shards", "train_runs"} <= set(audit["params"])
    assert {"model", "steps", "epochs", "batch_size", "precision", "nproc"} <= set(train["params"])


def test_schedules_are_settings(tmp_path):
    settings = airflow_settings(
        tmp_path / "home",
        OPENWIT_BUILD_SCHEDULE="asset:s3://dumps/enwiki/latest, s3://crawl/snapshots",
        OPENWIT_AUDIT_SCHEDULE="none",
        OPENWIT_TRAIN_SCHEDULE="none",
    )
    dags = run_driver(settings, tmp_path / "describe.json", "describe")["dags"]
    build = dags["openwit_dataset_build"]["schedule"]
    assert "s3://dumps/enwiki/latest" in build and "s3://crawl/snapshots" in build
    assert dags["openwit_overlap_audit"]["schedule"] == "None"
    assert dags["openwit_train"]["schedule"] == "None"


def test_a_malformed_setting_is_the_dag_files_import_error(tmp_path):
    settings = airflow_settings(tmp_path / "home", OPENWIT_BUILD_SCHEDULE="every tuesday")
    described = run_driver(settings, tmp_path / "describe.json", "describe")
    (error,) = [e for f, e in described["import_errors"].items() if "dataset_build" in f]
    assert "OPENWIT_BUILD_SCHEDULE: expected none, a cron expression" in error
    assert "openwit_overlap_audit" in described["dags"]
