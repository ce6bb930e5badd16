"""The Beam operator's ``py_file``: run one step of ``openwit_dataset_build`` here.

``BeamRunPythonPipelineOperator`` starts ``PYTHON pipeline_main.py --runner=R --k=v …``,
Beam's own way of handing a pipeline its runner and options. One flag is ours,
``--openwit=JSON``: the step (a build stage name, or ``queries``), the run's pinned config
(:mod:`openwit.airflow.requests`) and where to write the result. Every other flag is a
Beam pipeline option and is merged into the config's ``beam_options``, so the runner and
its settings stay Airflow params, not code.

A build stage runs through :func:`openwit.build.run_stage` on the config's build directory:
``--resume`` semantics (a retry keeps the committed work of an interrupted stage; a stage
that is complete and up to date is skipped), and a stage before it that is not complete is
an error. Exit status: 0 done, 2 a user mistake (one line on stderr, as the CLI prints it),
1 anything else (with a traceback). The result file says which, for the operator.
"""

from __future__ import annotations

import os
import sys

# Python puts this script's folder first on sys.path; its sibling modules must never
# shadow a top-level module that a library imports, so the folder goes before any import.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import json  # noqa: E402 - after the sys.path fix above
import traceback  # noqa: E402
from typing import Any  # noqa: E402

from openwit.errors import UserError  # noqa: E402

REQUEST_FLAG = "openwit"
#: Options the Beam operator adds for Dataflow only; on other runners they would just
#: change the recorded config (and its hash) from one Airflow version to the next.
DATAFLOW_ONLY_OPTIONS = ("labels",)


def parse_arguments(argv: list[str]) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(our request, the runner, Beam options) from ``--key=value`` flags.

    Values that read as JSON are taken as JSON (``--direct_num_workers=2`` is the number 2,
    a mapping the operator wrote as JSON is a mapping again), others are strings; a bare
    ``--flag`` is true; a repeated flag becomes a list -- the inverse of how the operator
    turns options into flags.
    """
    request: dict[str, Any] | None = None
    runner = "DirectRunner"
    options: dict[str, Any] = {}
    for arg in argv:
        if not arg.startswith("--"):
            raise UserError(f"pipeline_main: unexpected argument {arg!r}")
        key, sep, raw = arg[2:].partition("=")
        if key == REQUEST_FLAG:
            request = json.loads(raw)
            continue
        if key == "runner":
            runner = raw
            continue
        value: Any = _option_value(raw) if sep else True
        if key in options:
            previous = options[key]
            options[key] = [*(previous if isinstance(previous, list) else [previous]), value]
        else:
            options[key] = value
    if not isinstance(request, dict) or "step" not in request:
        raise UserError(f"pipeline_main: --{REQUEST_FLAG}=JSON with a step is required")
    if runner != "DataflowRunner":
        for name in DATAFLOW_ONLY_OPTIONS:
            options.pop(name, None)
    return request, runner, options


def _option_value(raw: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw


class LogReporter:
    """Stage progress as plain lines on stdout (the operator logs them as they come)."""

    def stage_started(self, stage: str) -> None:
        print(f"stage {stage}: running", flush=True)

    def stage_skipped(self, stage: str, counts: Any) -> None:
        print(f"stage {stage}: up to date ({counts.n_out:,} records), skipped", flush=True)

    def stage_finished(self, stage: str, counts: Any, seconds: float) -> None:
        print(
            f"stage {stage}: done in {seconds:.1f} s: {counts.n_in:,} in, {counts.n_out:,} out, "
            f"{counts.n_rejected:,} rejected",
            flush=True,
        )

    def stage_failed(self, stage: str, error: BaseException) -> None:
        print(f"stage {stage}: failed: {type(error).__name__}: {error}", flush=True)

    def stage_damaged(self, stage: str, problems: list[str]) -> None:
        print(f"stage {stage}: damaged ({'; '.join(problems[:5])}), running it again", flush=True)

    def stage_progress(self, stage: str, done: int, total: int) -> None:
        """A line per tenth of the units (a task log is read later, not watched)."""
        step = max(1, total // 10)
        last = getattr(self, "_last", {}).get(stage, -1)
        if done != last and (done == total or done // step != last // step):
            self.__dict__.setdefault("_last", {})[stage] = done
            print(f"stage {stage}: {done} of {total} units", flush=True)


def run_step(request: dict[str, Any], runner: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run the requested step; returns a small JSON result (never data)."""
    step = request["step"]
    if step == "queries":
        from openwit.airflow.querylist import build_query_list

        return build_query_list(request["queries"], runner, options)

    from openwit.build import run_stage

    config = step_config(request["config"], runner, options)
    outcome = run_stage(config, step, reporter=LogReporter())
    return {"ran": step in outcome.ran, "complete": outcome.complete}


def step_config(pinned: dict[str, Any], runner: str, options: dict[str, Any]) -> Any:
    """The ``BuildConfig`` a step runs with: the run's pinned config, with the runner and
    the Beam options the operator passes."""
    from pydantic import ValidationError

    from openwit.config import BuildConfig, format_validation_error

    raw = dict(pinned)
    raw["runner"] = runner
    raw["beam_options"] = {**(raw.get("beam_options") or {}), **options}
    try:
        return BuildConfig.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, "pinned build config")) from None


def write_result(path: str | None, result: dict[str, Any]) -> None:
    if path:
        from openwit.io import atomic_write_json

        atomic_write_json(path, result)


def main(argv: list[str] | None = None) -> int:
    import atexit
    import gc

    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    from openwit.logs import configure_logging

    configure_logging()
    # As in the CLI: Python's last collection walks every object Beam left (0.6 s).
    atexit.register(gc.freeze)
    result_file = None
    try:
        request, runner, options = parse_arguments(sys.argv[1:] if argv is None else argv)
        result_file = request.get("result_file")
        result = run_step(request, runner, options)
    except UserError as exc:
        print(f"openwit: error: {exc}", file=sys.stderr, flush=True)
        write_result(result_file, {"status": "error", "user_error": True, "error": str(exc)})
        return exc.exit_code
    except Exception as exc:
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"[:2000]
        write_result(result_file, {"status": "error", "user_error": False, "error": error})
        return 1
    write_result(result_file, {"status": "ok", **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
