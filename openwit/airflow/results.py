"""What the build DAG's tasks report: counts for XCom and logs, the validation, asset extras.

Everything here reads the build directory through :class:`openwit.builddir.BuildDir` and
returns small JSON values -- numbers and names, never records -- because XCom lives in the
metadata database and asset extras travel to every consumer.
"""

from __future__ import annotations

import io
from typing import Any

from openwit.builddir import BuildDir
from openwit.config import json_hash


def stage_payload(build: BuildDir, stage: str, ran: bool) -> dict[str, Any]:
    """A stage task's XCom: its funnel counts from the manifest, and whether it ran now."""
    entry = build.stage_entry(stage)
    counts = entry.get("funnel") or {}
    rejected = {str(k): int(v) for k, v in (counts.get("rejected") or {}).items()}
    return {
        "stage": stage,
        "status": entry.get("status"),
        "ran": ran,
        "in": int(counts.get("in", 0)),
        "out": int(counts.get("out", 0)),
        "rejected": sum(rejected.values()),
        "rejected_by_reason": rejected,
        "seconds": float(entry.get("seconds", 0.0)),
    }


def funnel_table(build: BuildDir, width: int = 110) -> str:
    """The funnel table ``openwit build`` prints, as text for a task log."""
    from rich.console import Console

    from openwit.console import print_funnel
    from openwit.funnel import Funnel

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=False, color_system=None, markup=False
    )
    print_funnel(Funnel.from_json(build.funnel()), build.manifest(), console)
    return buffer.getvalue()


def validate_build(build: BuildDir, stages: list[str]) -> dict[str, Any]:
    """Check a build's funnel law and, when it reached its shards, the shards themselves.

    Raises :class:`FunnelLawError` (a broken count) or ``ValueError`` (shards that disagree
    with ``sizes.json`` or with the funnel) naming every problem found.
    """
    from openwit.funnel import Funnel

    try:
        funnel = Funnel.from_json(build.funnel())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{build.root}: no readable funnel.json ({exc})") from None
    missing = [s for s in stages if s not in funnel.stages or not build.stage_complete(s)]
    if missing:
        raise ValueError(f"{build.root}: stages not complete: {', '.join(missing)}")
    funnel.check()
    summary: dict[str, Any] = {"stages": len(funnel.stages), "complete": build.is_complete()}
    if "shard" not in stages:
        return summary
    problems = []
    sizes = build.shard_sizes()
    tars = build.shard_tars()
    if sorted(sizes) != tars:
        listed, present = set(sizes), set(tars)
        problems.append(
            f"sizes.json lists {len(listed)} shards, {len(present)} tars present "
            f"(missing: {sorted(listed - present)[:5]}, unlisted: {sorted(present - listed)[:5]})"
        )
    for tar in sorted(set(sizes) & set(tars)):
        rows = build.shard_index_rows(tar)
        if rows != sizes[tar]:
            problems.append(f"{tar}: sizes.json says {sizes[tar]} samples, its index has {rows}")
    samples = sum(sizes.values())
    shard_out = funnel.stages["shard"].n_out
    if samples != shard_out:
        problems.append(f"sizes.json holds {samples} samples, the shard stage passed {shard_out}")
    if not summary["complete"]:
        problems.append("manifest.json does not mark the build complete")
    if problems:
        raise ValueError(f"{build.shards_dir}: " + "; ".join(problems))
    summary.update(samples=samples, shards=len(sizes))
    return summary


def shards_version(build: BuildDir) -> str:
    """Changes exactly when the shard stage is rerun: its fingerprint and start time."""
    entry = build.stage_entry("shard")
    return json_hash({"fingerprint": entry.get("fingerprint"), "started": entry.get("started")})


def shards_extra(build: BuildDir, config_hash: str, summary: dict[str, Any]) -> dict[str, Any]:
    """The extra of a shards asset event: what a consumer needs to know without reading."""
    funnel = build.funnel()
    return {
        "build_dir": str(build.root),
        "config_hash": config_hash,
        "shards_version": shards_version(build),
        "samples": summary["samples"],
        "shards": summary["shards"],
        "records_in": int(next(iter(funnel.values()), {}).get("in", 0)),
        "rejected": {
            stage: sum(int(n) for n in counts.get("rejected", {}).values())
            for stage, counts in funnel.items()
        },
    }
