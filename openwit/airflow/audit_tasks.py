"""The tasks and params of ``openwit_overlap_audit``: inputs -> audit.

``inputs`` picks the shards (the ``shards`` param, the triggering shards event, or the
newest one), the evaluation sets and a checkpoint (the param, else the newest checkpoint of
a training run on these shards under ``train_runs``, else none: overlap without
accuracies). ``audit`` runs ``openwit audit``'s entry point, logs the report's path, pushes
it to XCom and emits the report through :data:`openwit.airflow.assets.AUDIT_REPORTS`.
"""

from __future__ import annotations

from typing import Any

from airflow.sdk import Asset, Param, task
from airflow.sdk.exceptions import AirflowFailException

from openwit import fs
from openwit.airflow import settings
from openwit.airflow.assets import AUDIT_REPORTS, SHARDS, choose_shards
from openwit.airflow.params import checked_eval_sets, eval_sets_param, shards_param
from openwit.errors import UserError


def audit_params() -> dict[str, Param]:
    return {
        "eval": eval_sets_param("Evaluation sets"),
        "shards": shards_param(),
        "checkpoint": Param(
            None,
            type=["null", "string"],
            description="Checkpoint for the accuracy split; default: the newest checkpoint of a "
            "training run on these shards under train_runs, if any.",
        ),
        "model": Param(
            None,
            type=["null", "string"],
            description="open_clip model name of `checkpoint` (default: from its run's config).",
        ),
        "train_runs": Param(
            settings.default_train_runs(),
            type="string",
            description="Training runs (a run folder or a folder of them); OPENWIT_TRAIN_RUNS.",
        ),
        "out": Param(
            None,
            type=["null", "string"],
            description="Report folder; default: audit/ in the build directory of the shards.",
        ),
        "device": Param("cpu", type="string", description="Device for zero-shot accuracy."),
    }


def resolve_audit(params: dict[str, Any], shards: dict[str, Any]) -> dict[str, Any]:
    """The audit's inputs, checked: one line (:class:`UserError`) for a mistake."""
    from openwit.airflow.training import newest_checkpoint, run_model

    sets = checked_eval_sets(params.get("eval") or [])
    if not sets:
        raise UserError("eval: give at least one evaluation set NAME=PATH (or OPENWIT_EVAL_SETS)")
    folder = shards["location"]  # a path or a URL
    checkpoint, model = params.get("checkpoint"), params.get("model")
    source = "param"
    if checkpoint is None:
        found = newest_checkpoint(params.get("train_runs") or "", shards["location"])
        if found is not None:
            checkpoint, model, source = str(found[0]), found[1], "newest training run"
    elif model is None:
        model = run_model(checkpoint)
    if checkpoint is not None and not model:
        raise UserError(f"model: give the open_clip model name of {checkpoint}")
    build_dir = shards["extra"].get("build_dir") or fs.parent(folder)
    out = params.get("out") or fs.join(build_dir, "audit")  # a path or a URL
    return {
        "shards": folder,
        "shards_uri": shards["uri"],
        "shards_source": shards["source"],
        "config_hash": shards["extra"].get("config_hash"),
        "eval_sets": {name: str(path) for name, path in sets.items()},
        "checkpoint": checkpoint,
        "checkpoint_source": source if checkpoint else None,
        "model": model,
        "out": fs.absolute(out),
        "device": params.get("device") or "cpu",
    }


@task(task_id="inputs", inlets=[SHARDS])
def audit_inputs(
    params: dict[str, Any] | None = None,
    triggering_asset_events: Any = None,
    inlet_events: Any = None,
) -> dict[str, Any]:
    params = params or {}
    try:
        shards = choose_shards(params, triggering_asset_events, inlet_events)
        inputs = resolve_audit(params, shards)
    except UserError as error:
        raise AirflowFailException(str(error)) from None
    print(
        f"audit of {inputs['shards']} ({inputs['shards_source']}) against "
        f"{', '.join(inputs['eval_sets'])}; checkpoint: {inputs['checkpoint'] or 'none'}"
    )
    return inputs


@task(task_id="audit", outlets=[AUDIT_REPORTS], execution_timeout=settings.timeout("audit"))
def run_overlap_audit(ti: Any = None, outlet_events: Any = None) -> dict[str, Any]:
    from openwit.dedup.audit import AuditRequest, run_audit

    inputs = ti.xcom_pull(task_ids="inputs")
    out = inputs["out"]  # a path or a URL, as are the shards, eval sets and checkpoint
    request = AuditRequest(
        shards=inputs["shards"],
        eval_sets=dict(inputs["eval_sets"]),
        out=out,
        checkpoint=inputs["checkpoint"],
        model=inputs["model"],
        device=inputs["device"],
        progress=False,
    )
    try:
        result = run_audit(request)
    except UserError as error:
        raise AirflowFailException(str(error)) from None
    keys = ("name", "n", "n_overlap", "overlap_rate", "acc_all", "acc_clean", "acc_overlap")
    sets = [{key: s.get(key) for key in keys} for s in result["sets"]]
    report = fs.join(out, "index.html")
    extra = {
        "shards": inputs["shards_uri"],
        "config_hash": inputs["config_hash"],
        "checkpoint": inputs["checkpoint"],
        "sets": sets,
    }
    outlet_events[AUDIT_REPORTS].add(Asset(fs.as_uri(out)), extra=extra)
    for s in sets:
        print(f"{s['name']}: {s['n_overlap']} of {s['n']} images overlap the shards")
    print(f"audit report: {report}")
    return {"report": report, "audit_json": fs.join(out, "audit.json"), "sets": sets}
