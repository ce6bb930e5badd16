"""Params the audit and the training DAG share: the evaluation sets and the shards."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from airflow.sdk import Param

from openwit.airflow import settings


def eval_sets_param(description: str) -> Param:
    """``NAME=PATH`` evaluation sets; ``OPENWIT_EVAL_SETS`` by default."""
    return Param(
        settings.default_eval_sets(),
        type="array",
        items={"type": "string", "pattern": "^[^=]+=.+$"},
        description=f"{description} NAME=PATH (image folders); OPENWIT_EVAL_SETS by default.",
    )


def shards_param() -> Param:
    return Param(
        None,
        type=["null", "string"],
        description="Shard folder or URI; default: the shards event that triggered the run, "
        "else the newest one.",
    )


def checked_eval_sets(items: Iterable[str]) -> dict[str, str | Path]:
    """The sets of an ``eval`` param, each opened once (a :class:`UserError` names a bad one)."""
    from openwit.evalsets import EvalSet, parse_named_paths

    sets = parse_named_paths(list(items), "eval")
    for name, root in sets.items():
        EvalSet.open(name, root)
    return sets
