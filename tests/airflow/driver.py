"""Airflow in a subprocess of the tests: parse the DAG folder, or run a DAG with dag.test().

    python driver.py describe OUT_JSON
    python driver.py test DAG_ID RUN_CONF_JSON OUT_JSON

Airflow configures logging and its database when imported, which must not leak into the
rest of the test session, so the tests run it here. AIRFLOW_HOME and openwit's settings
come from the environment. ``describe`` writes the DagBag's import errors, each file's
parse time, each DAG's schedule, tasks, dependencies and trigger rules, and which heavy
modules parsing imported; ``test`` writes the run's state, each task's state, try number
and XCom return value, and every asset event in the database.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

DAG_FOLDER = Path(__file__).resolve().parents[2] / "airflow_dags"
HEAVY_MODULES = ("apache_beam", "pyarrow", "torch", "open_clip", "img2dataset", "pandas")


def describe() -> dict:
    from airflow.dag_processing.dagbag import DagBag

    before = {m for m in HEAVY_MODULES if m in sys.modules}
    bag = DagBag(dag_folder=str(DAG_FOLDER))
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "schedule": repr(dag.schedule),
            "max_active_runs": dag.max_active_runs,
            "catchup": dag.catchup,
            "params": sorted(dag.params.keys()),
            "tasks": {
                task.task_id: {
                    "upstream": sorted(task.upstream_task_ids),
                    "trigger_rule": str(task.trigger_rule.value),
                    "retries": task.retries,
                    "execution_timeout_s": task.execution_timeout.total_seconds()
                    if task.execution_timeout
                    else None,
                    "operator": type(task).__name__,
                    "outlets": [repr(o) for o in task.outlets],
                }
                for task in dag.tasks
            },
        }
    return {
        "import_errors": {str(k): v for k, v in bag.import_errors.items()},
        "parse_seconds": {s.file: s.duration.total_seconds() for s in bag.dagbag_stats},
        "heavy_modules": sorted({m for m in HEAVY_MODULES if m in sys.modules} - before),
        "dags": dags,
    }


#: How often dag.test() looks again when no task is ready (Airflow's loop sleeps 1 s).
POLL_S = 0.05


def poll_quickly() -> None:
    """Shorten dag.test()'s own waits, and only those. After a failure its loop marks the
    downstream tasks ``upstream_failed`` one level per pass and sleeps 1 s between passes:
    ten idle seconds for the build DAG's chain. A retry's delay is unchanged (it is the
    task instance's time, read on each pass), so passes just come more often."""
    real_sleep = time.sleep
    dag_py = os.path.join("sdk", "definitions", "dag.py")

    def sleep(seconds: float) -> None:
        caller = sys._getframe(1).f_code
        if caller.co_name == "test" and caller.co_filename.endswith(dag_py):
            seconds = min(seconds, POLL_S)
        real_sleep(seconds)

    time.sleep = sleep


def test(dag_id: str, conf: dict) -> dict:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    bag = DagBag(dag_folder=str(DAG_FOLDER))
    if bag.import_errors:
        raise SystemExit(f"import errors: {bag.import_errors}")
    poll_quickly()
    run = bag.dags[dag_id].test(run_conf=conf)
    with create_session() as session:
        instances = session.scalars(
            select(TaskInstance).where(
                TaskInstance.dag_id == dag_id, TaskInstance.run_id == run.run_id
            )
        ).all()
        tasks = {}
        for ti in instances:
            row = session.scalars(
                select(XComModel).where(
                    XComModel.dag_id == dag_id,
                    XComModel.run_id == run.run_id,
                    XComModel.task_id == ti.task_id,
                    XComModel.key == "return_value",
                )
            ).first()
            value = row.value if row is not None else None
            tasks[ti.task_id] = {
                "state": _name(ti.state),
                "try_number": ti.try_number,
                "xcom": json.loads(value) if isinstance(value, str) else value,
            }
        events = [
            {
                "uri": uri,
                "extra": event.extra,
                "source_dag_id": event.source_dag_id,
                "source_run_id": event.source_run_id,
            }
            for event, uri in session.execute(
                select(AssetEvent, AssetModel.uri)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .order_by(AssetEvent.id)
            )
        ]
    return {"run_id": run.run_id, "state": _name(run.state), "tasks": tasks, "events": events}


def _name(state: object) -> str | None:
    """A state enum's value (Airflow hands out str enums or plain strings)."""
    return None if state is None else str(getattr(state, "value", state))


def main() -> int:
    if sys.argv[1] == "describe":
        result, out = describe(), Path(sys.argv[2])
    else:
        result, out = test(sys.argv[2], json.loads(sys.argv[3])), Path(sys.argv[4])
    out.write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
