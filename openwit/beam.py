"""Apache Beam glue shared by every stage: runners, options and the core-to-DoFn wrapper.

Stages keep their logic in plain-Python cores (functions of one record); this module turns
a core into a Beam transform whose rejected records go to a tagged output and are counted
with Beam metrics. It imports Beam at the top: import it only inside commands that run a
pipeline, never from ``openwit.cli`` at module level.

Beam's own ``DirectRunner`` (2.77) first tries the Prism runner, which downloads a binary
from GitHub at start with no timeout: offline that costs a failed DNS lookup, behind a
firewall that drops packets it can stall. ``DirectRunner`` here means the FnApiRunner that
DirectRunner falls back to for batch pipelines, started directly (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import difflib
import io
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from openwit.logs import quiet_beam_logging

quiet_beam_logging()  # before Beam's import-time warning

import apache_beam as beam  # noqa: E402 - after the log filter above
from apache_beam.metrics import Metrics  # noqa: E402
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.runner import PipelineRunner  # noqa: E402

from openwit.errors import ConfigError  # noqa: E402
from openwit.funnel import Rejection  # noqa: E402

#: Runner names that mean "run here, in this process (or its worker subprocesses)".
DIRECT_RUNNERS = frozenset({"DirectRunner", "SwitchingDirectRunner", "FnApiRunner"})

#: Tag of the rejected-records output of :func:`apply_core`.
REJECTED = "rejected"

#: A stage core: one record in, any number of records or rejections out.
Core = Callable[[dict[str, Any]], Iterable["dict[str, Any] | Rejection"]]


class OfflineDirectRunner(PipelineRunner):
    """The batch path of Beam's DirectRunner, without its Prism download attempt.

    Honours ``direct_running_mode`` (in_memory, multi_threading, multi_processing) and
    ``direct_num_workers`` exactly as DirectRunner does, since it is the same FnApiRunner.
    """

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision = fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
        )
        return fn_runner.FnApiRunner(provision_info=provision).run_pipeline(pipeline, options)


def pipeline_options(runner: str, beam_options: Mapping[str, Any] | None = None) -> PipelineOptions:
    """Beam ``PipelineOptions`` for ``runner`` plus extra options (``{"k": v}``).

    Options are passed as Beam's own flags, so every runner's options work
    (``direct_running_mode``, ``flink_master``, ``project``, ...). A runner or an option
    Beam does not know is a :class:`ConfigError` here, before any pipeline is built.
    """
    check_runner_name(runner)
    options = {k: v for k, v in (beam_options or {}).items() if k != "runner"}
    if runner not in DIRECT_RUNNERS:
        options["runner"] = runner
    try:
        parsed = PipelineOptions.from_dictionary(options)
    except Exception as exc:  # Beam raises plain exceptions for malformed values.
        raise ConfigError(f"beam_options: {exc}") from None
    _check_parses(parsed)
    return parsed


def known_runner_names() -> list[str]:
    """The runner names Beam resolves by name (class names; case and the ``Runner``
    suffix are optional to Beam), with openwit's own direct runners."""
    from apache_beam.options.pipeline_options import StandardOptions

    names = {path.rsplit(".", 1)[-1] for path in StandardOptions.ALL_KNOWN_RUNNERS}
    return sorted(names | DIRECT_RUNNERS)


def check_runner_name(runner: str) -> None:
    """:class:`ConfigError` unless Beam knows ``runner`` by name (Beam itself would only
    say so with a ValueError when the first pipeline starts)."""
    known = {name.lower() for name in known_runner_names()}
    if runner.lower() in known or f"{runner.lower()}runner" in known:
        return
    close = difflib.get_close_matches(runner, known_runner_names(), n=3, cutoff=0.8)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise ConfigError(
        f"runner: Beam has no runner {runner!r}; {hint}known runners: "
        + ", ".join(known_runner_names())
    )


def _check_parses(options: PipelineOptions) -> None:
    """Parse the flags now: Beam's argparse would otherwise exit mid-run with a usage dump,
    and Beam only warns about an option it does not know (then drops it), so a misspelt
    option would silently do nothing."""
    known_dests: set[str] = set()
    known_flags: set[str] = set()

    def collect(parser: Any) -> None:  # sees Beam's parser before unknown options join it
        for action in parser._actions:
            known_dests.add(action.dest)
            known_flags.update(f[2:] for f in action.option_strings if f.startswith("--"))

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            parsed = options.get_all_options(add_extra_args_fn=collect, retain_unknown_options=True)
    except SystemExit:
        lines = [line for line in captured.getvalue().splitlines() if "error:" in line]
        message = lines[-1].split("error:", 1)[1].strip() if lines else "cannot be parsed"
        raise ConfigError(f"beam_options: {message}") from None
    unknown = sorted(name for name in parsed if name not in known_dests)
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(name, sorted(known_flags), n=3, cutoff=0.6)
        hint = f"; the closest Beam knows: {', '.join(close)}" if close else ""
        raise ConfigError(f"beam_options: Beam has no option {name!r}{hint}")


def runs_in_this_process(runner: str, beam_options: Mapping[str, Any] | None = None) -> bool:
    """Whether ``runner`` executes DoFns in this very process (the direct runner in its
    ``in_memory`` or ``multi_threading`` mode), so one Python process holds every thread."""
    mode = (beam_options or {}).get("direct_running_mode", "in_memory")
    return runner in DIRECT_RUNNERS and mode != "multi_processing"


def make_runner(runner: str) -> PipelineRunner | str:
    """A runner object for the direct runners, else the name for Beam to resolve."""
    return OfflineDirectRunner() if runner in DIRECT_RUNNERS else runner


def new_pipeline(
    runner: str = "DirectRunner", beam_options: Mapping[str, Any] | None = None
) -> beam.Pipeline:
    """A pipeline on ``runner``; use as a context manager (``with new_pipeline() as p:``)."""
    quiet_beam_logging()
    return beam.Pipeline(runner=make_runner(runner), options=pipeline_options(runner, beam_options))


def test_pipeline(**beam_options: Any) -> beam.Pipeline:
    """A ``TestPipeline`` on the offline direct runner (``with test_pipeline() as p:``).

    Tests use this instead of a bare ``TestPipeline()``, which would pick Beam's
    DirectRunner and try to download Prism.
    """
    from apache_beam.testing.test_pipeline import TestPipeline

    quiet_beam_logging()
    return TestPipeline(
        runner=OfflineDirectRunner(),
        options=pipeline_options("DirectRunner", beam_options),
        blocking=True,
    )


test_pipeline.__test__ = False  # type: ignore[attr-defined]  # pytest: not a test


def core_outputs(core: Core, record: dict[str, Any]) -> list[Any] | Exception:
    """The core's outputs for one record, or the exception it raised (a ``stage_error``)."""
    try:
        return list(core(record))
    except Exception as exc:
        return exc


class CoreDoFn(beam.DoFn):
    """Runs a stage core; rejections go to the ``rejected`` output, counted by reason.

    The core is built in ``setup()`` (once per worker), so heavy state such as an automaton
    or a model is never pickled with the transform. A core that raises on a record does not
    stop the run: the record is rejected as ``stage_error`` with the exception in
    ``detail``, and the funnel shows the count.
    """

    def __init__(self, stage: str, make_core: Callable[[], Core]) -> None:
        self.stage = stage
        self.make_core = make_core
        self.core: Core | None = None
        self.counters: dict[str, Any] = {}

    def setup(self) -> None:
        self.core = self.make_core()
        self.kept = Metrics.counter(self.stage, "kept")

    def _reject(self, rejection: Rejection) -> beam.pvalue.TaggedOutput:
        counter = self.counters.get(rejection.reason)
        if counter is None:
            counter = Metrics.counter(self.stage, f"rejected_{rejection.reason}")
            self.counters[rejection.reason] = counter
        counter.inc()
        return beam.pvalue.TaggedOutput(REJECTED, rejection.as_record())

    def emit(self, record: Any, outputs: list[Any] | Exception) -> Iterable[Any]:
        """The tagged outputs for one record's core outputs (or the exception it raised)."""
        if isinstance(outputs, Exception):  # counted as a rejection, never silently dropped
            uid = record.get("uid", "") if isinstance(record, dict) else ""
            yield self._reject(Rejection.stage_error(uid, self.stage, outputs))
            return
        for output in outputs:
            if isinstance(output, Rejection):
                yield self._reject(output)
            else:
                self.kept.inc()
                yield output

    def process(self, record: Any) -> Iterable[Any]:
        # ``Any``: a core may take any element (a record dict, a line, a pair); Beam 2.78
        # checks the pipeline's element types against this annotation.
        assert self.core is not None, "setup() was not called"
        yield from self.emit(record, core_outputs(self.core, record))


def apply_core(
    records: beam.PCollection, stage: str, make_core: Callable[[], Core], label: str | None = None
) -> tuple[beam.PCollection, beam.PCollection]:
    """Apply a core to a PCollection of records; returns ``(kept, rejected)``."""
    outputs = records | (label or f"Apply {stage}") >> beam.ParDo(
        CoreDoFn(stage, make_core)
    ).with_outputs(REJECTED, main="kept")
    return outputs.kept, outputs[REJECTED]


def write_parquet(records: beam.PCollection, path_prefix: str, schema: Any, label: str) -> Any:
    """Write dict records to ``PREFIX-SSSSS-of-NNNNN.parquet`` with an Arrow schema."""
    return records | label >> beam.io.WriteToParquet(
        path_prefix, schema, file_name_suffix=".parquet", codec="zstd"
    )


def listed(pipeline: beam.Pipeline, items: Iterable[Any], label: str) -> beam.PCollection:
    """``items`` as a PCollection, in one bundle: the caller redistributes them.

    Beam's ``Create`` of more than one element adds a ``Reshuffle`` of its own. Every
    caller here reshuffles anyway (after cutting the items into work units, or inside a
    ``ReadAll`` transform), and each extra ``Reshuffle`` costs ~0.15-0.2 s of graph
    construction and execution per pipeline on the DirectRunner (measured).
    """
    return pipeline | label >> beam.Create(list(items), reshuffle=False)


def spread(pipeline: beam.Pipeline, items: Iterable[Any], label: str) -> beam.PCollection:
    """``items`` as a PCollection the runner spreads over its workers (one ``Reshuffle``;
    without it a runner may process them all in the one bundle ``Create`` made)."""
    return listed(pipeline, items, label) | f"Spread {label.lower()}" >> beam.Reshuffle()


def read_parquet(pipeline: beam.Pipeline, files: Iterable[Any], label: str) -> beam.PCollection:
    """Dict records from a list of Parquet files (an empty list gives an empty PCollection)."""
    paths = sorted(str(f) for f in files)
    if not paths:
        return pipeline | label >> beam.Create([])
    # ReadAllFromParquet reshuffles the files' ranges itself.
    return listed(pipeline, paths, f"{label} files") | label >> beam.io.ReadAllFromParquet()
