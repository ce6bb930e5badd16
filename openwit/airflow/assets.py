"""The assets openwit's DAGs publish, and how a consumer finds the shards it should use.

A build's shards are an Asset whose URI is the shard folder (``file:///…/shards``,
``s3://…/shards``). That URI is known only when a run has read its config, so the build
publishes through an :class:`AssetAlias`: each event adds (or updates) the Asset of its
own folder, and the audit and train DAGs schedule on the alias -- every build config
feeds them, each event naming its folder. Audit reports work the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from airflow.sdk import AssetAlias

from openwit.airflow import settings
from openwit.errors import UserError

#: Events of every build's shards; extra: config hash, counts, shards_version.
SHARDS = AssetAlias("openwit_shards")
#: Events of every audit report; extra: overlap and accuracy per evaluation set.
AUDIT_REPORTS = AssetAlias("openwit_audit_reports")


def shards_schedule(setting: str) -> AssetAlias | None:
    """The alias when the setting ``setting`` follows the shards, else None (triggered)."""
    return SHARDS if settings.follows_shards(setting) else None


def _newest(events: Iterable[Any], uri: str | None = None) -> Any | None:
    chosen = [e for e in events if uri is None or e.asset.uri == uri]
    return max(chosen, key=lambda e: e.timestamp) if chosen else None


def newest_event(inlet_events: Any, uri: str | None = None) -> Any | None:
    """The newest event through :data:`SHARDS` (of ``uri`` only, if given), or None.

    ``inlet_events`` is the task's context entry; the task must list :data:`SHARDS` in
    its ``inlets``.
    """
    return _newest(inlet_events[SHARDS].ascending(False).limit(50), uri)


def choose_shards(
    params: Mapping[str, Any], triggering_events: Any, inlet_events: Any
) -> dict[str, Any]:
    """The shards a consumer run works on, and where that choice came from.

    The ``shards`` param wins; else the shards event that triggered this run (the newest,
    if several were queued); else the newest shards event there is (a manual run).
    """
    from openwit.airflow.requests import location

    if params.get("shards"):
        given = str(params["shards"])
        return _checked({"location": location(given), "uri": given, "extra": {}}, "param")
    triggered = []
    with contextlib.suppress(KeyError, TypeError):  # no event of the alias triggered it
        triggered = list(triggering_events[SHARDS])
    event = _newest(triggered)
    source = "triggering asset event"
    if event is None:
        event = newest_event(inlet_events)
        source = "newest asset event"
    if event is None:
        raise UserError(
            "no shards: give the `shards` param, or run openwit_dataset_build first "
            "(its publish task emits the shards event)"
        )
    uri = event.asset.uri
    return _checked(
        {"location": location(uri), "uri": uri, "extra": dict(event.extra or {})}, source
    )


def _checked(shards: dict[str, Any], source: str) -> dict[str, Any]:
    where = shards["location"]
    if "://" not in where and not Path(where).is_dir():
        raise UserError(f"shards: no such folder: {where} ({source})")
    return {**shards, "source": source}
