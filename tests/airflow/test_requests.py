"""A build run's params -> its pinned request; deployment settings (no Airflow needed)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.airflow import settings
from openwit.airflow.requests import dataflow_settings, location, prepare_build
from openwit.cli import main
from openwit.demo.queries import DEMO_DATA
from openwit.errors import UserError
from openwit.schemas import QUERY_SCHEMA
from openwit.stage_names import BUILD_STAGES


def write_build(tmp_path: Path, pool_exists: bool = True, queries_exist: bool = True) -> Path:
    pool = tmp_path / "pool.jsonl"
    if pool_exists:
        pool.write_text(json.dumps({"url": "http://127.0.0.1:9/a.jpg", "caption": "a red car"}))
    if queries_exist:  # a real list: the check reads it as the match stage will
        rows = [{"query": "car", "source": "unigram", "count": 1, "score": 1.0}]
        pq.write_table(
            pa.Table.from_pylist(rows, schema=QUERY_SCHEMA), tmp_path / "queries.parquet"
        )
    config = tmp_path / "build.yaml"
    config.write_text("out: build\nqueries: queries.parquet\ninputs:\n  - path: pool.jsonl\n")
    return config


def cli_error(capsys, *args: str) -> str:
    assert main(["build", *args]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("openwit: error: ")
    return line.removeprefix("openwit: error: ")


@pytest.mark.parametrize(
    ("params", "cli_args", "case"),
    [
        ({}, [], "missing input"),
        ({"until": "shards"}, ["--until", "shards"], "unknown stage"),
        ({"runner": "Bad Runner!"}, ["--runner", "Bad Runner!"], "bad runner"),
    ],
)
def test_check_fails_with_the_line_the_cli_prints(tmp_path, capsys, params, cli_args, case):
    config = write_build(tmp_path, pool_exists=case != "missing input")
    expected = cli_error(capsys, "--config", str(config), *cli_args)
    with pytest.raises(UserError) as raised:
        prepare_build({"config": str(config), **params})
    assert str(raised.value) == expected


def test_a_bad_beam_option_fails_the_check_as_the_cli_does(tmp_path, capsys):
    config = write_build(tmp_path)
    expected = cli_error(
        capsys, "--config", str(config), "--beam-option", "direct_num_workers=many"
    )
    with pytest.raises(UserError) as raised:
        prepare_build({"config": str(config), "beam_options": {"direct_num_workers": "many"}})
    assert str(raised.value) == expected and "direct_num_workers" in expected


def test_without_a_config_the_check_says_where_to_give_one():
    with pytest.raises(UserError, match="config: give the path or URL of the build config"):
        prepare_build({"config": None})


def test_the_request_pins_the_resolved_config_and_the_stages_to_run(tmp_path):
    config = write_build(tmp_path)
    request = prepare_build(
        {
            "config": str(config),
            "runner": "DirectRunner",
            "beam_options": {"direct_num_workers": 2},
            "until": "balance",
        }
    )
    assert request["stages"] == list(BUILD_STAGES[:4])
    assert request["config"]["out"] == str(tmp_path / "build")  # relative to the file
    assert request["config"]["beam_options"] == {"direct_num_workers": 2}
    assert request["shards_uri"] == (tmp_path / "build" / "shards").as_uri()
    assert location(request["shards_uri"]) == str(tmp_path / "build" / "shards")
    assert len(request["config_hash"]) == 64 and request["queries"] is None
    json.dumps(request)  # it travels as XCom


def test_a_query_rebuild_checks_its_own_inputs_instead_of_the_missing_list(tmp_path):
    config = write_build(tmp_path, queries_exist=False)
    with pytest.raises(UserError, match=r"queries: no such file: .*queries\.parquet"):
        prepare_build({"config": str(config)})
    queries = {"wiki_dump": [str(p) for p in DEMO_DATA.glob("*.xml.bz2")]}
    request = prepare_build({"config": str(config), "queries": queries})
    assert request["queries"]["out"] == str(tmp_path / "queries.parquet")
    assert request["queries"]["settings"]["max_queries"] == 500_000
    with pytest.raises(UserError, match=r"^queries\.wiki_dump: no such file: /nowhere\.bz2$"):
        prepare_build({"config": str(config), "queries": {"wiki_dump": ["/nowhere.bz2"]}})
    with pytest.raises(UserError, match="min_unigram_count"):
        prepare_build(
            {"config": str(config), "queries": {**queries, "settings": {"min_unigram_count": 0}}}
        )


def test_a_query_list_in_a_bucket_is_rebuilt_there_once(any_bucket):
    bucket = any_bucket
    from openwit import fs
    from openwit.airflow.querylist import build_query_list, check_query_request

    out = f"{bucket}/lists/queries.parquet"
    queries = {"wiki_dump": [str(p) for p in DEMO_DATA.glob("*.xml.bz2")]}
    request = check_query_request(queries, out)
    said: list[str] = []
    first = build_query_list(request, "DirectRunner", {}, say=said.append)
    assert first["ran"] and first["rows"] > 0
    assert fs.read_json(f"{bucket}/lists/queries.inputs.json")["rows"] == first["rows"]
    with fs.open_input(out) as stream:
        assert pq.read_table(stream).num_rows == first["rows"]
    again = build_query_list(request, "DirectRunner", {}, say=said.append)
    assert again == {"ran": False, "rows": first["rows"]}  # the stamp in the bucket says so
    assert said[-1].startswith("query list up to date")


def test_dataflow_needs_the_google_provider_and_its_settings_are_split_out(tmp_path):
    config = write_build(tmp_path)
    with pytest.raises(UserError, match="apache-airflow-providers-google"):
        prepare_build({"config": str(config), "runner": "DataflowRunner"})
    dataflow, rest = dataflow_settings(
        {"project": "p", "region": "europe-west4", "temp_location": "gs://b/tmp"}
    )
    assert dataflow == {"project_id": "p", "location": "europe-west4"}
    assert rest == {"temp_location": "gs://b/tmp"}


def test_schedule_settings():
    assert settings.build_schedule({}) is None
    assert settings.build_schedule({"OPENWIT_BUILD_SCHEDULE": "none"}) is None
    assert settings.build_schedule({"OPENWIT_BUILD_SCHEDULE": "@weekly"}) == "@weekly"
    assert settings.build_schedule({"OPENWIT_BUILD_SCHEDULE": "0 3 * * 1"}) == "0 3 * * 1"
    with pytest.raises(ValueError, match="OPENWIT_BUILD_SCHEDULE"):
        settings.build_schedule({"OPENWIT_BUILD_SCHEDULE": "weekly"})
    assert settings.follows_shards("OPENWIT_AUDIT_SCHEDULE", {})
    assert not settings.follows_shards("X", {"X": "none"})
    with pytest.raises(ValueError, match="X: expected shards or none"):
        settings.follows_shards("X", {"X": "asset"})


def test_task_settings_come_from_the_environment():
    defaults = settings.task_defaults({})
    assert defaults["retries"] == 2 and defaults["retry_delay"] == timedelta(minutes=5)
    quick = settings.task_defaults(
        {"OPENWIT_AIRFLOW_RETRIES": "4", "OPENWIT_AIRFLOW_RETRY_DELAY_S": "1"}
    )
    assert quick["retries"] == 4 and quick["retry_delay"] == timedelta(seconds=1)
    assert settings.timeout("stage", {"OPENWIT_STAGE_TIMEOUT_H": "0.5"}) == timedelta(minutes=30)
    with pytest.raises(ValueError, match="OPENWIT_AIRFLOW_RETRIES: not a number"):
        settings.task_defaults({"OPENWIT_AIRFLOW_RETRIES": "two"})
    assert settings.default_eval_sets({"OPENWIT_EVAL_SETS": "a=/x, b=/y"}) == ["a=/x", "b=/y"]
    assert settings.beam_deferrable({}) is False


def test_openwit_without_the_extra_never_imports_airflow():
    import re
    import subprocess
    import sys

    probe = (
        "import sys, openwit, openwit.cli, openwit.demo, openwit.build, openwit.airflow.requests;"
        "from openwit.cli import main; main(['--help']);"
        "print('AIRFLOW' if 'airflow' in sys.modules else 'NO AIRFLOW')"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("NO AIRFLOW")
    # No module outside the Airflow integration imports Airflow, even lazily in a command.
    root = Path(__file__).resolve().parents[2]
    pattern = re.compile(r"^\s*(from|import)\s+airflow\b", re.MULTILINE)
    folders = ["openwit", "pipeline", "queries", "dedup", "train"]
    offenders = [
        str(path.relative_to(root))
        for folder in folders
        for path in (root / folder).rglob("*.py")
        if pattern.search(path.read_text()) and "openwit/airflow/" not in path.as_posix()
    ]
    assert offenders == []
