"""openwit_overlap_audit: how much of each evaluation set is in the shards (CLIP section 5).

inputs -> audit. Runs on every shards event of openwit_dataset_build (alias
`openwit_shards`; OPENWIT_AUDIT_SCHEDULE=none makes it triggered only), or by hand. The
checkpoint for the accuracy split is the newest one trained on these shards, unless given.
The report (audit.json, index.html) is emitted as an asset (alias `openwit_audit_reports`)
and its path is in the log and in XCom. See README, "Airflow".
"""

from __future__ import annotations

from airflow.sdk import DAG, chain

from openwit.airflow import audit_tasks as tasks
from openwit.airflow import settings
from openwit.airflow.assets import shards_schedule

with DAG(
    dag_id="openwit_overlap_audit",
    description="Overlap audit of evaluation sets against built shards (openwit audit)",
    schedule=shards_schedule("OPENWIT_AUDIT_SCHEDULE"),
    start_date=settings.START_DATE,
    catchup=False,
    max_active_runs=1,
    params=tasks.audit_params(),
    default_args=settings.task_defaults(),
    doc_md=__doc__,
    tags=["openwit"],
) as dag:
    chain(tasks.audit_inputs(), tasks.run_overlap_audit())
