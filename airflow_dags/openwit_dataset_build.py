"""openwit_dataset_build: candidates -> webdataset shards, one Airflow task per build stage.

check -> queries (optional) -> ingest -> text -> match -> balance -> download -> image ->
dedup -> shard -> validate -> publish. Beam stages run through the Apache Beam provider's
operator; the runner is the `runner` param. The run's config is pinned by `check`; each
stage resumes its own committed work on a retry and skips when complete. `publish` emits
the shards Asset (alias `openwit_shards`) that openwit_overlap_audit and openwit_train
follow. Schedule: OPENWIT_BUILD_SCHEDULE (default: triggered only). See README, "Airflow".
"""

from __future__ import annotations

from airflow.sdk import DAG, chain

from openwit.airflow import build_tasks as tasks
from openwit.airflow import settings
from openwit.stage_names import BUILD_STAGES

with DAG(
    dag_id="openwit_dataset_build",
    description="Build webdataset shards from crawl or pool records (openwit build)",
    schedule=settings.build_schedule(),
    start_date=settings.START_DATE,
    catchup=False,
    max_active_runs=1,  # one build directory, one writer (the runner also holds a lock)
    params=tasks.build_params(),
    default_args=settings.task_defaults(),
    doc_md=__doc__,
    tags=["openwit"],
) as dag:
    chain(
        tasks.check_inputs(),
        tasks.query_list_step(),
        *[tasks.stage_step(stage) for stage in BUILD_STAGES],
        tasks.validate_build(),
        tasks.publish_shards(),
    )
