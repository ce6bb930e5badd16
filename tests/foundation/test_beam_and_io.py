"""Beam glue (offline DirectRunner, the unit transform) and atomic file writes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.testing.util import assert_that, equal_to

from openwit import fs
from openwit.beam import listed, new_pipeline, pipeline_options, spread, test_pipeline
from openwit.errors import ConfigError
from openwit.funnel import Rejection
from openwit.io import atomic_path, atomic_write_json
from openwit.outputs import UnitOutput, collect_totals
from openwit.unit_transform import RunUnits, apply_record_core, run_units
from openwit.units import WorkUnit


def even_core(record):
    if record["n"] == 3:
        raise RuntimeError("core bug on 3")
    if record["n"] % 2:
        yield Rejection(str(record["n"]), "toy", "odd", "")
    else:
        yield record


SCHEMA = pa.schema([pa.field("n", pa.int64())])


def test_record_core_outputs_are_split_into_kept_and_rejected_and_errors_are_counted():
    table = pa.table({"n": list(range(6))})
    output = apply_record_core("toy", even_core, table, SCHEMA)
    assert output.kept.column("n").to_pylist() == [0, 2, 4]
    rejected = output.rejected.to_pylist()
    assert [(r["uid"], r["reason"]) for r in rejected] == [
        ("1", "odd"),
        ("", "stage_error"),
        ("5", "odd"),
    ]
    assert "core bug on 3" in rejected[1]["detail"]


class SquareCore:
    in_flight = 1  # one unit waits for its finish while the next starts

    def start(self, unit):
        kept = pa.table({"n": [unit.index * unit.index]}, schema=SCHEMA)
        rejected = [Rejection(f"u{unit.index}", "toy", "odd")] if unit.index % 2 else []
        from openwit.outputs import rejections_table

        return lambda: UnitOutput(kept, rejections_table(rejected), stats={"units": 1}, n_in=2)

    def close(self):
        pass


def test_unit_transform_writes_every_units_files_and_the_runner_counts_them(tmp_path):
    attempt = str(tmp_path / "attempt")
    units = [WorkUnit(i) for i in range(5)]
    with test_pipeline() as p:
        run_units(p, "Square", units, None, RunUnits("toy", attempt, SquareCore, SCHEMA, {}))
    names = sorted(os.listdir(attempt))
    assert [n for n in names if n.startswith("part-")] == [
        f"part-{i:08d}.parquet" for i in range(5)
    ]
    assert [n for n in names if n.startswith("rejections-")] == [
        "rejections-00000001.parquet",
        "rejections-00000003.parquet",
    ]
    marker = json.loads((tmp_path / "attempt" / "done-00000003.json").read_text())
    assert marker["out"] == 1 and marker["rejected"] == {"odd": 1} and marker["in"] == 2
    totals = collect_totals(fs.list_files(attempt))
    assert (totals.units, totals.n_in, totals.n_out) == (5, 10, 5)
    assert dict(totals.rejected) == {"odd": 2} and totals.stats == {"units": 5}


def test_resumed_unit_transform_skips_units_whose_marker_exists(tmp_path):
    attempt = tmp_path / "attempt"
    attempt.mkdir()
    (attempt / "done-00000001.json").write_text(json.dumps({"unit": 1, "out": 7}))
    units = [WorkUnit(i) for i in range(3)]
    with test_pipeline() as p:
        fn = RunUnits("toy", str(attempt), SquareCore, SCHEMA, {}, resume=True)
        run_units(p, "Square", units, None, fn)
    assert not (attempt / "part-00000001.parquet").exists()
    assert json.loads((attempt / "done-00000001.json").read_text())["out"] == 7
    assert (attempt / "part-00000002.parquet").exists()


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


def test_a_pass_leaves_no_temporary_directory_whether_it_runs_or_its_block_fails(
    tmp_path, monkeypatch
):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with new_pipeline() as pipeline:
        _ = pipeline | beam.Create([1, 2]) | beam.Map(lambda n: n + 1)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError, match="graph cannot be built"):
        with new_pipeline() as pipeline:
            _ = pipeline | beam.Create([1])
            raise RuntimeError("the graph cannot be built")
    assert list(tmp_path.iterdir()) == []  # Beam's own Pipeline leaves beam-pipeline-temp*
    with pytest.raises(RuntimeError, match="expected"):
        with test_pipeline() as pipeline:
            raise RuntimeError("expected")
    assert list(tmp_path.iterdir()) == []


def test_beam_options_pass_through_and_runner_is_not_duplicated():
    options = pipeline_options("FlinkRunner", {"flink_master": "localhost:8081"})
    flags = options.get_all_options()
    assert flags["runner"] == "FlinkRunner"
    assert flags["flink_master"] == "localhost:8081"
    assert pipeline_options("DirectRunner", {"runner": "X"}).get_all_options()["runner"] is None


def test_option_views_are_made_once_and_share_every_value_with_copies_kept_apart():
    import copy

    from apache_beam.options.pipeline_options import DirectOptions, StandardOptions

    options = pipeline_options("DirectRunner", {"direct_num_workers": 3})
    direct = options.view_as(DirectOptions)
    assert options.view_as(DirectOptions) is direct  # no parser run per call
    assert direct.direct_num_workers == 3
    direct.direct_num_workers = 5  # a value set through a view is every view's
    assert options.get_all_options()["direct_num_workers"] == 5
    copied = copy.deepcopy(options)  # what beam.Pipeline does with its options
    copied.view_as(DirectOptions).direct_num_workers = 7
    copied.view_as(StandardOptions).streaming = True
    assert copied.get_all_options()["direct_num_workers"] == 7
    assert options.view_as(DirectOptions).direct_num_workers == 5
    assert options.view_as(StandardOptions).streaming is False


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


def test_written_files_get_the_umask_mode_not_a_temporary_files(tmp_path):
    """A training job under another account must be able to read the shards (0644 under
    umask 022), though temporary files are created 0600."""
    previous = os.umask(0o022)
    try:
        import importlib

        importlib.reload(fs)  # FILE_MODE is read from the umask at import
        fs.write_bytes(str(tmp_path / "a.bin"), b"x")
        with fs.open_output(str(tmp_path / "b.tar")) as out:
            out.write(b"y")
        import openwit.io as local_io

        importlib.reload(local_io)
        local_io.atomic_write_json(tmp_path / "c.json", {"a": 1})
    finally:
        os.umask(previous)
        importlib.reload(fs)
    for name in ("a.bin", "b.tar", "c.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644, name


class SlowFirstUnit:
    """Unit 0 reports done only once every other unit has been written; the others are
    done a moment after they start (never at once: the writer must wait for them)."""

    in_flight = 1

    def __init__(self):
        self.finished = []

    def start(self, unit):
        core = self
        started = time.monotonic()

        class Finish:
            def done(self):
                if unit.index == 0:
                    return len(core.finished) == 3
                return time.monotonic() - started > 0.05

            def __call__(self):
                core.finished.append(unit.index)
                return UnitOutput(pa.table({"n": [unit.index]}, schema=SCHEMA))

        return Finish()

    def close(self):
        pass


def test_finished_units_are_written_before_a_slow_one_started_earlier(tmp_path):
    """One slow unit (a download waiting on a hung server) must not hold back the commits
    of the units started after it: a kill then loses only the slow one."""
    fn = RunUnits("toy", str(tmp_path / "attempt"), SlowFirstUnit, SCHEMA, {})
    fn.setup()
    fn.start_bundle()
    written = [index for unit in range(4) for index in fn.process(WorkUnit(unit))]
    fn.finish_bundle()
    assert written == [1, 2, 3]  # committed while unit 0 still waited
    assert fn.core.finished == [1, 2, 3, 0]
    assert sorted(os.listdir(tmp_path / "attempt"))[-1] == "part-00000003.parquet"


def test_stage_files_cut_large_tables_into_even_row_groups_with_uid_statistics():
    import io

    import pyarrow.parquet as pq

    from openwit.outputs import MAX_ROWS_PER_ROW_GROUP, parquet_bytes

    rows = 2 * MAX_ROWS_PER_ROW_GROUP + 3
    assert MAX_ROWS_PER_ROW_GROUP == 50_000
    table = pa.table(
        {
            "uid": [f"{i:032x}" for i in range(rows)],
            "text": ["a caption"] * rows,
            "n": list(range(rows)),
        }
    )
    metadata = pq.ParquetFile(io.BytesIO(parquet_bytes([table, table.slice(0, 5)]))).metadata
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    # Three even groups, not 50,000 + 50,000 + 3; a small table stays one group.
    assert sizes == [33_335, 33_335, 33_333, 5]
    assert max(sizes) <= MAX_ROWS_PER_ROW_GROUP
    first = metadata.row_group(0)
    assert [first.column(i).is_stats_set for i in range(3)] == [True, False, True]


@pytest.mark.skipif(sys.platform != "linux", reason="openwit asks for jemalloc on Linux only")
def test_openwit_processes_use_jemalloc_unless_the_user_chose_a_pool():
    script = "import openwit, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    chosen = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert chosen.stdout.strip() == "jemalloc", chosen.stderr
    env["ARROW_DEFAULT_MEMORY_POOL"] = "system"
    kept = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert kept.stdout.strip() == "system", kept.stderr
