"""The build under a real Airflow: its shards event schedules the audit, and both succeed.

api-server, scheduler, dag-processor and triggerer run as processes (LocalExecutor, SQLite,
loopback only); the build is triggered through the REST API. Bounded in time: every wait
has a deadline, and the cluster is stopped -- every process it started, found by its
AIRFLOW_HOME -- whether the test passes or not.
"""

from __future__ import annotations

import time

import pytest

from tests.airflow.cluster import AirflowCluster
from tests.airflow.helpers import DAG_FOLDER, airflow_settings, requires_airflow
from tests.airflow.world import TripwireServer, make_world, queries_param

pytestmark = [requires_airflow, pytest.mark.slow]

BUILD, AUDIT = "openwit_dataset_build", "openwit_overlap_audit"
DEADLINE_S = 480


def test_a_triggered_build_schedules_the_audit_through_its_shards_event(tmp_path):
    world = make_world(tmp_path / "world")
    settings = airflow_settings(
        tmp_path / "home",
        OPENWIT_EVAL_SETS=f"shapes={world.eval_set}",
        OPENWIT_TRAIN_RUNS=str(tmp_path / "runs"),
    )
    cluster = AirflowCluster(tmp_path / "home", DAG_FOLDER, settings)
    with TripwireServer(world.web) as server, cluster:
        world.write_pool(server.base_url)
        config = world.config("build")
        deadline = time.monotonic() + DEADLINE_S
        cluster.login(deadline)
        cluster.wait_for_dags([BUILD, AUDIT, "openwit_train"], deadline)
        cluster.unpause(AUDIT)  # openwit_train stays paused, as new DAGs are
        cluster.unpause(BUILD)

        run_id = cluster.trigger(BUILD, {"config": str(config), "queries": queries_param()})
        build = cluster.wait_for_run(BUILD, deadline, run_id)
        build_tasks = cluster.task_states(BUILD, run_id)
        audit = cluster.wait_for_run(AUDIT, deadline)
        audit_tasks = cluster.task_states(AUDIT, audit["dag_run_id"])
        train_runs = cluster.runs("openwit_train")

    assert build["state"] == "success", build_tasks
    assert set(build_tasks.values()) == {"success"}
    assert audit["run_type"] == "asset_triggered"
    assert audit["state"] == "success", audit_tasks
    assert audit_tasks == {"inputs": "success", "audit": "success"}
    assert (world.root / "build" / "audit" / "index.html").is_file()
    assert train_runs == []  # paused DAGs are not scheduled by the event
    assert cluster.ours() == []  # nothing of the cluster outlived it
