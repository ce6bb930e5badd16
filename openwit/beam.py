"""Apache Beam glue: runners, options, and small helpers to list work.

It imports Beam at the top: import it only inside commands that run a pipeline, never from
``openwit.cli`` at module level.

Beam's own ``DirectRunner`` (2.77) first tries the Prism runner, which downloads a binary
from GitHub at start with no timeout: offline that costs a failed DNS lookup, behind a
firewall that drops packets it can stall. ``DirectRunner`` here means the FnApiRunner that
DirectRunner falls back to for batch pipelines, started directly (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import shutil
from collections.abc import Iterable, Mapping
from typing import Any

from openwit.logs import quiet_beam_logging

quiet_beam_logging()  # before Beam's import-time warning

import apache_beam as beam  # noqa: E402 - after the log filter above
from apache_beam.options.pipeline_options import PipelineOptions  # noqa: E402
from apache_beam.runners.runner import PipelineRunner  # noqa: E402

from openwit.errors import ConfigError  # noqa: E402
from openwit.resources import DIRECT_RUNNERS  # noqa: E402


class OfflineDirectRunner(PipelineRunner):
    """The batch path of Beam's DirectRunner, without its Prism download attempt.

    Honours ``direct_running_mode`` (in_memory, multi_threading, multi_processing) and
    ``direct_num_workers`` exactly as DirectRunner does, since it is the same FnApiRunner.
    """

    def __init__(self, worker_pool: str | None = None) -> None:
        super().__init__()
        self.worker_pool = worker_pool  # an external worker pool's address (openwit.workers)

    def run_pipeline(self, pipeline: Any, options: Any) -> Any:
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle

        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        provision = fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded)
        )
        environment = None
        if self.worker_pool:
            from apache_beam.transforms import environments

            environment = environments.ExternalEnvironment(self.worker_pool)
        runner = fn_runner.FnApiRunner(default_environment=environment, provision_info=provision)
        return runner.run_pipeline(pipeline, options)


class BuildOptions(PipelineOptions):
    """``PipelineOptions`` that make each view once.

    Beam's ``view_as`` builds and runs an argparse parser on every call, and building a
    pipeline calls it for nearly every transform it applies (compatibility and type
    checks): about a third of the launcher's time before a dedup pass's first bundle
    (measured, docs/decisions.md). The flags never change after parsing and every view
    reads and writes the one shared option dict, so a view made once serves every later
    call.
    """

    def view_as(self, cls: type) -> Any:
        views = self.__dict__.get("_views")
        if views is None:
            views = {}
            object.__setattr__(self, "_views", views)  # Beam's __setattr__ takes options only
        view = views.get(cls)
        if view is None:
            view = views[cls] = super().view_as(cls)
        return view


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
        parsed = BuildOptions.from_dictionary(options)
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


class LeavesNoTempDir:
    """Mixed into a ``beam.Pipeline``: removes the pipeline's local temporary directory
    however its ``with`` block ends.

    Beam makes that directory for every pipeline and removes it when the pipeline runs; a
    block that raises before that (a stage's graph that cannot be built, an input that
    cannot be listed, a test that expects an error) left it behind, one empty directory in
    /tmp per failed pass (Beam 2.77).
    """

    local_tempdir: str

    def __exit__(self, *exc: Any) -> None:
        try:
            super().__exit__(*exc)  # type: ignore[misc]
        finally:
            shutil.rmtree(self.local_tempdir, ignore_errors=True)


class BuildPipeline(LeavesNoTempDir, beam.Pipeline):
    """The pipelines of a build (:func:`new_pipeline`)."""


def make_runner(runner: str, worker_pool: Any = None) -> PipelineRunner | str:
    """A runner object for the direct runners, else the name for Beam to resolve."""
    if runner in DIRECT_RUNNERS:
        return OfflineDirectRunner(worker_pool.address if worker_pool is not None else None)
    return runner


def new_pipeline(
    runner: str = "DirectRunner",
    beam_options: Mapping[str, Any] | None = None,
    worker_pool: Any = None,
) -> beam.Pipeline:
    """A pipeline on ``runner``; use as a context manager (``with new_pipeline() as p:``).

    With ``worker_pool`` (:class:`openwit.workers.LocalWorkerPool`) the direct runner runs
    the pipeline's work in the pool's processes, one Beam worker each.
    """
    quiet_beam_logging()
    options = dict(beam_options or {})
    if worker_pool is not None:
        worker_pool.check()
        options["direct_num_workers"] = worker_pool.size
    return BuildPipeline(
        runner=make_runner(runner, worker_pool), options=pipeline_options(runner, options)
    )


def test_pipeline(**beam_options: Any) -> beam.Pipeline:
    """A ``TestPipeline`` on the offline direct runner (``with test_pipeline() as p:``).

    Tests use this instead of a bare ``TestPipeline()``, which would pick Beam's
    DirectRunner and try to download Prism.
    """
    from apache_beam.testing.test_pipeline import TestPipeline

    class TidyTestPipeline(LeavesNoTempDir, TestPipeline):
        pass

    quiet_beam_logging()
    return TidyTestPipeline(
        runner=OfflineDirectRunner(),
        options=pipeline_options("DirectRunner", beam_options),
        blocking=True,
    )


test_pipeline.__test__ = False  # type: ignore[attr-defined]  # pytest: not a test


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
