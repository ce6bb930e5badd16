"""openwit_train: contrastive training on built shards, then zero-shot evaluation.

prepare -> train -> evaluate. Runs on every shards event of openwit_dataset_build (alias
`openwit_shards`; OPENWIT_TRAIN_SCHEDULE=none makes it triggered only), or by hand.
Training is a subprocess (torchrun when nproc > 1) in a run folder named after the shards
and the params, resuming from its latest checkpoint after a retry or a scheduler restart.
See README, "Airflow".
"""

from __future__ import annotations

from airflow.sdk import DAG, chain

from openwit.airflow import settings
from openwit.airflow import train_tasks as tasks
from openwit.airflow.assets import shards_schedule

with DAG(
    dag_id="openwit_train",
    description="Train an open_clip model on built shards, then zero-shot eval (openwit train)",
    schedule=shards_schedule("OPENWIT_TRAIN_SCHEDULE"),
    start_date=settings.START_DATE,
    catchup=False,
    max_active_runs=1,
    params=tasks.train_params(),
    default_args=settings.task_defaults(),
    doc_md=__doc__,
    tags=["openwit"],
) as dag:
    chain(tasks.prepare_training(), tasks.train_model(), tasks.evaluate_model())
