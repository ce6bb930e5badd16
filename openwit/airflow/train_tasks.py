"""The tasks and params of ``openwit_train``: prepare -> train -> evaluate.

``train`` runs ``openwit train`` as a subprocess (under torchrun for more than one
process) with ``--resume auto`` in a run folder named after the shards and the params
(:mod:`openwit.airflow.training`), so a retry, or a rerun after the scheduler restarted,
continues from the latest checkpoint, and a finished run trains no further. ``evaluate``
runs ``openwit eval`` on the latest checkpoint and pushes top-1/top-5 per set to XCom.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Param, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from openwit.airflow import settings
from openwit.airflow.assets import SHARDS, choose_shards
from openwit.airflow.params import checked_eval_sets, eval_sets_param, shards_param
from openwit.errors import UserError


def train_params() -> dict[str, Param]:
    return {
        "model": Param("ViT-B-32", type="string", description="open_clip model name."),
        "steps": Param(None, type=["null", "integer"], minimum=1, description="Optimizer steps."),
        "epochs": Param(
            1.0,
            type=["null", "number"],
            exclusiveMinimum=0,
            description="Or epochs (one of the two).",
        ),
        "batch_size": Param(256, type="integer", minimum=1, description="Batch per process."),
        "precision": Param("amp", type="string", enum=["fp32", "bf16", "fp16", "amp"]),
        "nproc": Param(1, type="integer", minimum=1, description="Processes (torchrun if > 1)."),
        "lr": Param(5e-4, type="number", exclusiveMinimum=0, description="Peak learning rate."),
        "save_every": Param(1000, type="integer", minimum=1, description="Steps per checkpoint."),
        "seed": Param(0, type="integer"),
        "workers": Param(None, type=["null", "integer"], minimum=0, description="Data workers."),
        "device": Param("auto", type="string", description="auto, cpu, cuda or cuda:N."),
        "eval": eval_sets_param("Zero-shot evaluation sets"),
        "shards": shards_param(),
        "runs": Param(
            settings.default_train_runs(),
            type="string",
            description="Folder or bucket prefix of training runs (OPENWIT_TRAIN_RUNS); "
            "each run gets its own.",
        ),
    }


@task(task_id="prepare", inlets=[SHARDS])
def prepare_training(
    params: dict[str, Any] | None = None,
    triggering_asset_events: Any = None,
    inlet_events: Any = None,
) -> dict[str, Any]:
    """The shards, the run folder and the evaluation sets of this run, checked."""
    from openwit.airflow.training import TRAIN_KEYS, check_train_params, run_dir_for

    params = dict(params or {})
    try:
        check_train_params(params)
        shards = choose_shards(params, triggering_asset_events, inlet_events)
        sets = checked_eval_sets(params.get("eval") or [])
    except UserError as error:
        raise AirflowFailException(str(error)) from None
    config_hash = shards["extra"].get("config_hash")
    run_dir = run_dir_for(params["runs"], shards["uri"], config_hash, params)
    print(f"training {params['model']} on {shards['location']} ({shards['source']}) in {run_dir}")
    return {
        "shards": shards["location"],
        "run_dir": run_dir,
        "eval": [f"{name}={path}" for name, path in sets.items()],
        "params": {key: params.get(key) for key in TRAIN_KEYS},
    }


def _run(command: list[str]) -> None:
    from openwit.airflow.training import run_streaming

    print("running:", " ".join(command), flush=True)
    try:
        run_streaming(command, say=lambda line: print(line, flush=True))
    except UserError as error:
        raise AirflowFailException(str(error)) from None


@task(task_id="train", execution_timeout=settings.timeout("train"))
def train_model(ti: Any = None) -> dict[str, Any]:
    """``openwit train --resume auto``: continues from the run's latest checkpoint."""
    from openwit.airflow.training import latest_checkpoint, train_command

    run = ti.xcom_pull(task_ids="prepare")
    run_dir = run["run_dir"]  # a path or a URL
    python = settings.python_interpreter()
    _run(train_command(python, run["shards"], run_dir, run["params"]))
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise AirflowFailException(f"training wrote no checkpoint in {run_dir}")
    return {"run_dir": run_dir, "checkpoint": checkpoint}


@task(task_id="evaluate", execution_timeout=settings.timeout("audit"))
def evaluate_model(ti: Any = None) -> dict[str, Any]:
    """``openwit eval`` of the latest checkpoint on the eval sets -> RUN/eval.json."""
    from openwit import fs
    from openwit.airflow.training import eval_command

    run = ti.xcom_pull(task_ids="prepare")
    trained = ti.xcom_pull(task_ids="train")
    if not run["eval"]:
        raise AirflowSkipException("no evaluation sets (param `eval`, OPENWIT_EVAL_SETS)")
    out = fs.join(trained["run_dir"], "eval.json")
    python = settings.python_interpreter()
    device = run["params"].get("device") or "auto"
    _run(
        eval_command(
            python, trained["checkpoint"], run["params"]["model"], run["eval"], out, device
        )
    )
    results = fs.read_json(out)["sets"]
    scores = {
        name: {k: v for k, v in r.items() if k in ("top1", "top5", "n")}
        for name, r in results.items()
    }
    print(f"zero-shot: {scores} ({out})")
    return {"eval_json": out, "sets": scores}
