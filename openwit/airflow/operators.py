"""The Beam operator that runs one step of ``openwit_dataset_build``.

:class:`BuildStepOperator` is the Beam provider's ``BeamRunPythonPipelineOperator`` with
the runner, the Beam options and (for ``DataflowRunner``) the ``DataflowConfiguration``
taken from the run's pinned request (the ``check`` task's XCom), and the pipeline file
:mod:`openwit.airflow.pipeline_main` run by this worker's interpreter. After the step it
pushes the stage's funnel counts to XCom and prints the funnel table in the task log.

Two things of the provider (6.3.1 under Airflow 3.3) are worked around here, both only when
the Google provider is not installed: its Dataflow mixin refuses to be constructed (the
Task SDK's nodes call ``super().__init__()`` all the way up to it), and ``execute`` builds a
``DataflowConfiguration`` for every runner. With the Google provider present, nothing
changes; remove both once the provider no longer needs them (docs/decisions.md).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

from airflow.providers.apache.beam.operators import beam as beam_operators
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from openwit.airflow import settings

PIPELINE_MAIN = str(Path(__file__).with_name("pipeline_main.py"))
DATAFLOW = "DataflowRunner"
QUERIES = "queries"


class _ConstructibleWithoutGoogleProvider:
    """Sits before the provider's Dataflow mixin in the method order (see the module doc)."""

    def __init__(self) -> None:
        if beam_operators.GOOGLE_PROVIDER:
            super().__init__()


class BuildStepOperator(
    beam_operators.BeamRunPythonPipelineOperator,
    _ConstructibleWithoutGoogleProvider,
    beam_operators.BeamDataflowMixin,
):
    """One build stage (``step`` = its name) or the query list (``step="queries"``)."""

    ui_color = "#d9ead3"

    def __init__(self, *, step: str, request_task: str = "check", **kwargs: Any) -> None:
        kwargs.setdefault("execution_timeout", settings.timeout("stage"))
        kwargs.setdefault("deferrable", settings.beam_deferrable())
        super().__init__(task_id=step, py_file=PIPELINE_MAIN, **kwargs)
        self.step = step
        self.request_task = request_task
        self._result_dir: str | None = None
        self._query_rows: Any = None

    # -- before ---------------------------------------------------------------------------
    def _request(self, context: Any) -> dict[str, Any]:
        request = context["ti"].xcom_pull(task_ids=self.request_task)
        if not request:
            raise AirflowFailException(f"no build request from task {self.request_task}")
        return request

    def _prepare(self, request: dict[str, Any]) -> None:
        from openwit.airflow.requests import dataflow_settings

        options = dict(request["beam_options"])
        self.runner = request["runner"]
        if self.runner == DATAFLOW:
            dataflow, options = dataflow_settings(options)
            self.dataflow_config = {"job_name": f"openwit-{self.step}", **dataflow}
        self.py_file = PIPELINE_MAIN
        self.py_interpreter = settings.python_interpreter()
        step: dict[str, Any] = {"step": self.step, "result_file": None}
        if self.step == QUERIES:
            step["queries"] = request["queries"]
        else:
            step["config"] = request["config"]
        if not self.deferrable:  # a deferred step runs in the triggerer, maybe elsewhere
            self._result_dir = tempfile.mkdtemp(prefix="openwit-step-")
            step["result_file"] = str(Path(self._result_dir) / "result.json")
        self.pipeline_options = {**options, "openwit": step}

    def _cast_dataflow_config(self) -> None:
        if self.runner == DATAFLOW:  # `check` made sure the Google provider is there
            super()._cast_dataflow_config()

    # -- running --------------------------------------------------------------------------
    def execute(self, context: Any) -> Any:
        request = self._request(context)
        if self.step == QUERIES and not request["queries"]:
            raise AirflowSkipException("no `queries` param: the build uses its existing list")
        if self.step != QUERIES and self.step not in request["stages"]:
            raise AirflowSkipException(f"until={request['until']}: {self.step} is not run")
        if self._up_to_date(request):
            self.log.info("%s is complete and up to date: no pipeline started", self.step)
            return self._finish(request, launched=False)
        self._prepare(request)
        try:
            super().execute(context)  # may defer: execute_complete then finishes
            return self._finish(request)
        except AirflowException as error:
            raise self._explain(error) from None
        finally:
            self._stop_launcher()
            if self._result_dir:
                shutil.rmtree(self._result_dir, ignore_errors=True)

    def _up_to_date(self, request: dict[str, Any]) -> bool:
        """Whether the step's pipeline would only skip its stage (and those before it):
        a pipeline is a job on a cluster runner, started and torn down for nothing. Any
        doubt (a missing input, an unreadable manifest) leaves it to the pipeline, which
        says what is wrong in its own words."""
        from openwit.airflow.pipeline_main import step_config
        from openwit.airflow.querylist import rows_if_up_to_date
        from openwit.build import stage_is_up_to_date

        try:
            if self.step == QUERIES:
                self._query_rows = rows_if_up_to_date(request["queries"])
                return self._query_rows is not None
            config = step_config(request["config"], request["runner"], request["beam_options"])
            return stage_is_up_to_date(config, self.step)
        except Exception as exc:
            self.log.info("%s: the pipeline decides (%s: %s)", self.step, type(exc).__name__, exc)
            return False

    def execute_complete(self, context: Any, event: dict[str, Any]) -> Any:
        super().execute_complete(context, event)
        return self._finish(self._request(context))

    def on_kill(self) -> None:
        self._stop_launcher()
        super().on_kill()

    # -- after ----------------------------------------------------------------------------
    def _result(self) -> dict[str, Any]:
        from openwit.io import read_json

        if not self._result_dir:
            return {}
        with contextlib.suppress(OSError, ValueError):
            return read_json(Path(self._result_dir) / "result.json")
        return {}

    def _explain(self, error: AirflowException) -> AirflowException:
        """The step's own one-line error instead of the provider's "return code N"."""
        result = self._result()
        if result.get("user_error"):
            return AirflowFailException(result["error"])  # a mistake: retrying cannot help
        if result.get("error"):
            return AirflowException(f"{self.step} failed: {result['error']}")
        return error

    def _finish(self, request: dict[str, Any], launched: bool = True) -> dict[str, Any]:
        from openwit.airflow.requests import location
        from openwit.airflow.results import funnel_table, stage_payload
        from openwit.builddir import BuildDir

        ran = self._result().get("ran") if launched else False
        if self.step == QUERIES:
            rows = self._result().get("rows") if launched else self._query_rows
            payload = {"step": QUERIES, "ran": ran, "rows": rows, "pipeline_started": launched}
            self.log.info("query list: %s", payload)
            return payload
        build = BuildDir(location(request["build_dir"]))
        payload = stage_payload(build, self.step, bool(ran) if ran is not None else None)
        payload["pipeline_started"] = launched
        if payload["status"] != "complete":
            raise AirflowException(f"{self.step}: the manifest says {payload['status']!r}")
        self.log.info("funnel of %s after %s:\n%s", build.root, self.step, funnel_table(build))
        return payload

    def _stop_launcher(self) -> None:
        """End the pipeline launcher and its workers if they outlive this task's try (a
        timeout, a kill): a local runner would otherwise keep building in the background."""
        import psutil

        launchers = [
            child
            for child in psutil.Process().children(recursive=True)
            if _runs(child, PIPELINE_MAIN)
        ]
        family = {p.pid: p for p in launchers}
        for launcher in launchers:
            with contextlib.suppress(psutil.Error):
                family.update({p.pid: p for p in launcher.children(recursive=True)})
        for process in family.values():
            with contextlib.suppress(psutil.Error):
                process.terminate()
        _, alive = psutil.wait_procs(list(family.values()), timeout=10)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()


def _runs(process: Any, script: str) -> bool:
    import psutil

    try:
        return script in process.cmdline()
    except psutil.Error:
        return False
