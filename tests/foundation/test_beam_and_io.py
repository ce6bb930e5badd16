"""Beam glue (offline DirectRunner, core wrapper) and atomic file writes."""

from __future__ import annotations

import subprocess
import sys

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to

from openwit.beam import apply_core, listed, pipeline_options, spread, test_pipeline
from openwit.errors import ConfigError
from openwit.funnel import Rejection
from openwit.io import atomic_path, atomic_write_json


def _even_core():
    def core(record):
        if record["n"] == 3:
            raise RuntimeError("core bug on 3")
        if record["n"] % 2:
            yield Rejection(str(record["n"]), "toy", "odd", "")
        else:
            yield record

    return core


def test_core_outputs_are_split_into_kept_and_rejected_and_errors_are_counted():
    with test_pipeline() as p:
        records = p | beam.Create([{"n": n} for n in range(6)])
        kept, rejected = apply_core(records, "toy", _even_core)
        assert_that(kept | beam.Map(lambda r: r["n"]), equal_to([0, 2, 4]), label="kept")
        reasons = rejected | beam.Map(lambda r: (r["uid"], r["reason"]))
        assert_that(
            reasons, equal_to([("1", "odd"), ("", "stage_error"), ("5", "odd")]), label="rej"
        )


def _reshuffles(pipeline: beam.Pipeline) -> list[str]:
    """Full labels of the Reshuffle transforms in the pipeline's graph."""
    found = []

    class Visitor(beam.pipeline.PipelineVisitor):
        def enter_composite_transform(self, node):
            if isinstance(node.transform, beam.Reshuffle):
                found.append(node.full_label)

    pipeline.visit(Visitor())
    return found


def test_listed_and_spread_reshuffle_once_and_keep_every_item():
    """Beam's Create would add a Reshuffle of its own; a stage's list of work gets one."""
    with test_pipeline() as p:
        assert_that(listed(p, [1, 2, 3], "Items"), equal_to([1, 2, 3]), label="listed")
        assert_that(spread(p, ["a", "b", "c"], "Units"), equal_to(["a", "b", "c"]), label="spr")
        assert _reshuffles(p) == ["Spread units"]
        _ = p | "Stock" >> beam.Create([4, 5])  # the default Create reshuffles by itself
        assert len(_reshuffles(p)) == 2


def test_default_direct_runner_makes_no_network_attempt(tmp_path):
    """Beam's own DirectRunner tries to download Prism; ours must not look anything up."""
    log = tmp_path / "attempts.log"
    code = (
        "from openwit.beam import new_pipeline\n"
        "import apache_beam as beam\n"
        "with new_pipeline() as p:\n"
        "    p | beam.Create([1, 2, 3]) | beam.combiners.Count.Globally()\n"
    )
    env = {**__import__("os").environ, "OPENWIT_NETGUARD_LOG": str(log)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not log.exists() or log.read_text() == ""


def test_the_network_guard_catches_beams_stock_direct_runner(tmp_path):
    """The same check fails for Beam's DirectRunner, so the test above can fail."""
    log = tmp_path / "attempts.log"
    code = (
        "import apache_beam as beam\n"
        "with beam.Pipeline(runner='DirectRunner') as p:\n"
        "    p | beam.Create([1, 2, 3]) | beam.combiners.Count.Globally()\n"
    )
    env = {**__import__("os").environ, "OPENWIT_NETGUARD_LOG": str(log)}
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=120)
    assert "github.com" in log.read_text()


def test_beam_options_pass_through_and_runner_is_not_duplicated():
    options = pipeline_options("FlinkRunner", {"flink_master": "localhost:8081"})
    flags = options.get_all_options()
    assert flags["runner"] == "FlinkRunner"
    assert flags["flink_master"] == "localhost:8081"
    assert pipeline_options("DirectRunner", {"runner": "X"}).get_all_options()["runner"] is None


def test_malformed_beam_option_is_a_config_error():
    with pytest.raises(ConfigError, match="beam_options: argument --direct_num_workers"):
        pipeline_options("DirectRunner", {"direct_num_workers": "many"})


def test_atomic_path_leaves_no_file_on_failure(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_json_skips_identical_content(tmp_path):
    target = tmp_path / "m.json"
    assert atomic_write_json(target, {"a": 1})
    before = target.stat().st_mtime_ns
    assert not atomic_write_json(target, {"a": 1})
    assert target.stat().st_mtime_ns == before
    assert atomic_write_json(target, {"a": 2})
