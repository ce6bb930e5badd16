"""Deployment settings of openwit's DAGs, read from the environment when a DAG file is parsed.

Airflow parses DAG files often and on every machine (the dag-processor, each worker before
it runs a task), so these come from environment variables set alike on all of them, not
from Airflow Variables (a metadata-database query per parse). A malformed value raises
``ValueError`` naming the variable, which Airflow shows as the DAG file's import error.

Schedules (``OPENWIT_BUILD_SCHEDULE``): empty or ``none`` -- triggered only (the default);
a cron expression or preset (``@weekly``, ``0 3 * * 1``); or ``asset:URI[,URI...]`` -- run
when any of these assets is updated (data-aware, e.g. a DAG that lands a new Wikipedia dump
or crawl snapshot emits one). ``OPENWIT_AUDIT_SCHEDULE`` and ``OPENWIT_TRAIN_SCHEDULE`` are
``shards`` (the default: run on every new shards event of the build) or ``none``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

#: The DAGs' start date: fixed and in the past, so no run is ever back-filled (catchup off).
START_DATE = datetime(2025, 1, 1, tzinfo=UTC)

ASSET_SCHEDULE = "asset:"


def _env(name: str, default: str = "", environ: Mapping[str, str] | None = None) -> str:
    return (environ if environ is not None else os.environ).get(name, default).strip()


def _number(name: str, default: float, environ: Mapping[str, str] | None = None) -> float:
    raw = _env(name, "", environ)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{name}: not a number: {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name}: must not be negative, got {raw!r}")
    return value


def build_schedule(environ: Mapping[str, str] | None = None) -> Any:
    """``openwit_dataset_build``'s schedule: None, a cron string/preset, or a list of Assets."""
    raw = _env("OPENWIT_BUILD_SCHEDULE", "", environ)
    if raw.lower() in ("", "none"):
        return None
    if raw.startswith(ASSET_SCHEDULE):
        from airflow.sdk import Asset

        uris = [u.strip() for u in raw[len(ASSET_SCHEDULE) :].split(",") if u.strip()]
        if not uris:
            raise ValueError("OPENWIT_BUILD_SCHEDULE: asset: needs at least one URI")
        return [Asset(uri) for uri in uris]
    if raw.startswith("@") or len(raw.split()) in (5, 6):
        return raw
    raise ValueError(
        f"OPENWIT_BUILD_SCHEDULE: expected none, a cron expression, @preset or asset:URI, "
        f"got {raw!r}"
    )


def follows_shards(name: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the DAG of setting ``name`` runs on every shards event (else: triggered)."""
    raw = _env(name, "shards", environ).lower()
    if raw not in ("shards", "none"):
        raise ValueError(f"{name}: expected shards or none, got {raw!r}")
    return raw == "shards"


def default_build_config(environ: Mapping[str, str] | None = None) -> str | None:
    """Default of the build's ``config`` param (a scheduled run has no one to ask)."""
    return _env("OPENWIT_BUILD_CONFIG", "", environ) or None


def default_eval_sets(environ: Mapping[str, str] | None = None) -> list[str]:
    """``OPENWIT_EVAL_SETS``: comma-separated ``NAME=PATH`` evaluation sets."""
    raw = _env("OPENWIT_EVAL_SETS", "", environ)
    return [item.strip() for item in raw.split(",") if item.strip()]


def default_train_runs(environ: Mapping[str, str] | None = None) -> str:
    """``OPENWIT_TRAIN_RUNS``: the folder holding training run directories."""
    raw = _env("OPENWIT_TRAIN_RUNS", "", environ) or "~/openwit/runs"
    return os.path.expanduser(raw)


def beam_deferrable(environ: Mapping[str, str] | None = None) -> bool:
    """``OPENWIT_BEAM_DEFERRABLE``: run the Beam stage tasks deferred (off by default)."""
    raw = _env("OPENWIT_BEAM_DEFERRABLE", "false", environ).lower()
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ValueError(f"OPENWIT_BEAM_DEFERRABLE: expected true or false, got {raw!r}")
    return raw in ("true", "1", "yes")


def python_interpreter(environ: Mapping[str, str] | None = None) -> str:
    """The interpreter that runs pipelines and training on a worker: its own by default."""
    import sys

    return _env("OPENWIT_PYTHON", "", environ) or sys.executable


def task_defaults(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``default_args`` of every openwit task: retries, their delay, a light-task timeout."""
    return {
        "owner": "openwit",
        "retries": int(_number("OPENWIT_AIRFLOW_RETRIES", 2, environ)),
        "retry_delay": timedelta(seconds=_number("OPENWIT_AIRFLOW_RETRY_DELAY_S", 300, environ)),
        "execution_timeout": timedelta(hours=1),
    }


def timeout(kind: str, environ: Mapping[str, str] | None = None) -> timedelta:
    """Execution timeout of the long tasks: ``stage`` (a build stage or the query list),
    ``audit`` or ``train`` (``OPENWIT_<KIND>_TIMEOUT_H`` hours)."""
    defaults = {"stage": 48.0, "audit": 12.0, "train": 168.0}
    hours = _number(f"OPENWIT_{kind.upper()}_TIMEOUT_H", defaults[kind], environ)
    if hours == 0:
        raise ValueError(f"OPENWIT_{kind.upper()}_TIMEOUT_H: must be above zero")
    return timedelta(hours=hours)
