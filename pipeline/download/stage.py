"""Build stage ``download``: balanced candidates -> records carrying their stored image.

The input is cut into *work units* of ``download.records_per_unit`` rows (slices of the
input's Parquet row groups, planned from the footers alone). Beam distributes the units
over its workers (``Create | Reshuffle | ParDo``); each worker process runs one
:class:`~.downloader.Downloader` with a bounded thread pool, shared by all its DoFn
instances. A unit is committed on its own, atomically (``stats-U``, ``rejections-U``, then
``part-U``, whose presence marks it done), so a killed build resumed with ``--resume``
downloads only the units that were not finished.

A DoFn keeps two units in flight: while the slowest images of one unit finish (up to the
time budget), the next unit's images already keep the threads busy.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Any

import apache_beam as beam

from openwit.beam import listed, quiet_beam_logging
from openwit.config import BuildConfig, json_hash
from openwit.funnel import Rejection
from openwit.io import atomic_write_json, read_json
from openwit.pipeline.download.downloader import STAGE, DownloadSettings, Outcome, shared_downloader
from openwit.pipeline.download.fetch.client import Connector
from openwit.pipeline.download.fetch.policy import Resolver
from openwit.pipeline.image.hashpool import prefetch_hashes
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext, StageResult
from openwit.units import (
    RowGroup,
    UnitReader,
    WorkUnit,
    part_path,
    plan_row_groups,
    write_unit_files,
)

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = candidate_schema("download")
PLAN_FILE = "plan.json"
#: Download settings that change what is fetched or kept (the rest are about speed).
OPERATIONAL_KEYS = (
    "threads_per_worker",
    "per_host_concurrency",
    "per_host_requests_per_s",
    "records_per_unit",
    "contact",
    "keep_alive",
)
#: Client settings about speed only, left out of the plan (a resume may change them).
CLIENT_SPEED_KEYS = ("keep_alive",)
#: Image settings the stored bytes depend on (the checks belong to the image stage).
RESIZE_KEYS = (
    "resize_max_side",
    "resize_mode",
    "resize_only_if_bigger",
    "encode_format",
    "encode_quality",
    "max_pixels",
    "resizer",
)


def unit_done(work_dir: Path, unit: WorkUnit) -> bool:
    return part_path(work_dir, unit).is_file()


def write_unit(work_dir: Path, unit: WorkUnit, outcomes: list[Outcome]) -> dict[str, Any]:
    """Commit one unit: stats and rejections first, the part file (the done marker) last."""
    kept = [o.result for o in outcomes if not isinstance(o.result, Rejection)]
    rejected = [o.result.as_record() for o in outcomes if isinstance(o.result, Rejection)]
    stats = {
        "records": len(outcomes),
        "kept": len(kept),
        "bytes_downloaded": sum(o.bytes for o in outcomes),
        "bytes_stored": sum(len(r["image"]) for r in kept),
        "attempts": sum(o.attempts for o in outcomes),
        "fetch_seconds": round(sum(o.seconds for o in outcomes), 3),
    }
    atomic_write_json(work_dir / f"stats-{unit.name}.json", stats, skip_if_same=False)
    write_unit_files(work_dir, unit, kept, rejected, OUTPUT_SCHEMA)
    return stats


class DownloadUnits(beam.DoFn):
    """Downloads work units with the worker's shared thread pool; writes each unit's files."""

    def __init__(
        self,
        settings: DownloadSettings,
        work_dir: str,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.settings = settings
        self.work_dir = work_dir
        self.resolver = resolver
        self.connector = connector

    def setup(self) -> None:
        quiet_beam_logging()
        self.downloader = shared_downloader(self.settings, self.resolver, self.connector)
        self.units_done = beam.metrics.Metrics.counter(STAGE, "units_done")
        self.images_kept = beam.metrics.Metrics.counter(STAGE, "kept")
        self.reader = UnitReader()

    def start_bundle(self) -> None:
        self.pending: deque[tuple[WorkUnit, list[Future[Outcome]]]] = deque()

    def process(self, unit: WorkUnit) -> list[Any]:
        """Start ``unit``; finish the one before it. Units leave files, not elements."""
        if not unit_done(Path(self.work_dir), unit):  # else done by an earlier attempt
            records = self.reader.records(unit)
            self.pending.append((unit, [self.downloader.submit(r) for r in records]))
        while len(self.pending) > 1:  # the newest unit keeps the threads busy meanwhile
            self._finish(*self.pending.popleft())
        return []

    def finish_bundle(self) -> None:
        while self.pending:
            self._finish(*self.pending.popleft())

    def teardown(self) -> None:
        downloader = getattr(self, "downloader", None)
        if downloader is not None:  # kept-alive sockets are not held past the stage
            downloader.close_idle_connections()

    def _finish(self, unit: WorkUnit, futures: list[Future[Outcome]]) -> None:
        stats = write_unit(Path(self.work_dir), unit, [f.result() for f in futures])
        # The image stage's workers, if already running here, hash these in the gaps.
        prefetch_hashes(str(part_path(Path(self.work_dir), unit)), stats["kept"])
        self.units_done.inc()
        self.images_kept.inc(stats["kept"])
        log.info("download unit %s: %d of %d kept", unit.name, stats["kept"], stats["records"])


def _start_plan(work_dir: Path, groups: list[RowGroup], settings: DownloadSettings) -> None:
    """Record the plan; partial work from a different plan (changed input or settings) goes."""
    output_settings = {  # what the kept records depend on; speed settings may change
        "client": {k: v for k, v in asdict(settings.client).items() if k not in CLIENT_SPEED_KEYS},
        "resize": asdict(settings.resize),
        "allow_private_networks": settings.allow_private_networks,
        "records_per_unit": settings.records_per_unit,
    }
    plan = {
        "row_groups": json_hash([asdict(g) for g in groups]),
        "settings": json_hash(output_settings),
    }
    path = work_dir / PLAN_FILE
    if path.is_file() and read_json(path) != plan:
        log.warning("download: the partial work was planned differently; starting over")
        for stale in work_dir.iterdir():
            stale.unlink()
    atomic_write_json(path, plan)


def _units_done(work_dir: Path) -> int:
    return sum(1 for _ in work_dir.glob("part-*.parquet"))


def collect_stats(work_dir: Path) -> dict[str, Any]:
    totals: dict[str, Any] = {"units": 0}
    for path in sorted(work_dir.glob("stats-*.json")):
        totals["units"] += 1
        for key, value in read_json(path).items():
            totals[key] = round(totals.get(key, 0) + value, 3)
    return totals


class DownloadStage(Stage):
    """Fetch every candidate's image safely, resize it, keep its bytes and sha256."""

    name = STAGE
    version = 1
    resumable = True

    def __init__(
        self, resolver: Resolver | None = None, connector: Connector | None = None
    ) -> None:
        # Hooks for tests and benchmarks: name resolution and connecting, never real traffic.
        self.resolver = resolver
        self.connector = connector

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        data = config.to_json()
        download = {k: v for k, v in data["download"].items() if k not in OPERATIONAL_KEYS}
        image = {k: data["image"][k] for k in RESIZE_KEYS}
        return {"version": self.version, "config": {"download": download, "image": image}}

    def run(self, ctx: StageContext) -> StageResult:
        settings = DownloadSettings.from_config(ctx.config)
        per_unit = settings.records_per_unit
        groups = plan_row_groups(ctx.input_files, per_unit)
        total = sum(math.ceil(g.rows / per_unit) for g in groups)
        _start_plan(ctx.work_dir, groups, settings)
        resumed = _units_done(ctx.work_dir)
        if resumed < total:
            fn = DownloadUnits(settings, str(ctx.work_dir), self.resolver, self.connector)
            with ctx.new_pipeline() as pipeline:
                _ = (
                    listed(pipeline, groups, "Row groups")
                    | "Cut into work units" >> beam.FlatMap(RowGroup.units, per_unit)
                    | "Spread over workers" >> beam.Reshuffle()
                    | "Download" >> beam.ParDo(fn)
                )
        done = _units_done(ctx.work_dir)
        if done != total:
            raise RuntimeError(f"download: {total - done} of {total} work units did not finish")
        stats = collect_stats(ctx.work_dir)
        stats["units_resumed"] = resumed
        return StageResult(stats=stats)
