"""Build stage ``download``: balanced candidates -> records carrying their stored image.

The input is cut into work units of ``download.records_per_unit`` rows; each worker
process runs one :class:`~.downloader.Downloader` (a thread pool that waits on the network,
and pixel threads as many as the process's share of the cores), shared by all its DoFn
instances. Each unit is committed on its own (:mod:`openwit.outputs`), so a killed build
resumed with ``--resume`` downloads only the units that were not finished.

The core keeps one unit in flight: while the slowest images of a unit finish (up to the
time budget), the next unit's images already keep the threads busy.

These bytes are the only copy of the images before the shards: the image and dedup stages
work on metadata, and the shard stage reads the bytes from here once.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pyarrow as pa

from openwit.config import BuildConfig, DownloadConfig, ImageConfig, output_settings
from openwit.funnel import Rejection
from openwit.outputs import UnitOutput, rejections_table
from openwit.pipeline.download.downloader import STAGE, Outcome, shared_downloader
from openwit.pipeline.download.fetch.client import Connector
from openwit.pipeline.download.fetch.policy import Resolver
from openwit.resources import Resources
from openwit.schemas import candidate_schema
from openwit.stage import Stage, StageContext
from openwit.units import UnitReader, WorkUnit

log = logging.getLogger(__name__)

OUTPUT_SCHEMA = candidate_schema("download")
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


def unit_output(outcomes: list[Outcome]) -> UnitOutput:
    """A unit's kept records, rejections and what fetching them cost."""
    kept = [o.result for o in outcomes if not isinstance(o.result, Rejection)]
    rejected = [o.result for o in outcomes if isinstance(o.result, Rejection)]
    stats = {
        "records": len(outcomes),
        "kept": len(kept),
        "bytes_downloaded": sum(o.bytes for o in outcomes),
        "bytes_stored": sum(len(r["image"]) for r in kept),
        "attempts": sum(o.attempts for o in outcomes),
        "fetch_seconds": round(sum(o.seconds for o in outcomes), 3),
    }
    table = pa.Table.from_pylist(kept, schema=OUTPUT_SCHEMA)
    return UnitOutput(table, rejections_table(rejected), stats=stats)


class PendingUnit:
    """A unit whose images are on their way; calling it waits for them."""

    def __init__(self, unit: WorkUnit, futures: list[Future[Outcome]]) -> None:
        self.unit, self.futures = unit, futures
        # Counted down by the futures' callbacks: ``done()`` is polled every few
        # milliseconds, and asking a thousand futures each time took 5% of a worker's CPU.
        self._remaining = len(futures)
        self._lock = threading.Lock()
        for future in futures:
            future.add_done_callback(self._one_done)

    def _one_done(self, _: Future[Outcome]) -> None:
        with self._lock:
            self._remaining -= 1

    def done(self) -> bool:
        return self._remaining == 0

    def __call__(self) -> UnitOutput:
        output = unit_output([f.result() for f in self.futures])
        kept = output.kept.num_rows
        log.info("download unit %s: %d of %d kept", self.unit.name, kept, len(self.futures))
        return output


class DownloadCore:
    """Starts a unit's downloads on the process's shared downloader; finishes them later."""

    in_flight = 1

    def __init__(
        self,
        download: DownloadConfig,
        image: ImageConfig,
        resources: Resources,
        resolver: Resolver | None = None,
        connector: Connector | None = None,
    ) -> None:
        self.downloader = shared_downloader(
            download, image, resources.cpu_threads(), resolver, connector
        )
        self.reader = UnitReader()

    def start(self, unit: WorkUnit) -> PendingUnit:
        return PendingUnit(unit, [self.downloader.submit(r) for r in self.reader.records(unit)])

    def close(self) -> None:
        self.downloader.close_idle_connections()  # kept-alive sockets end with the stage


class DownloadStage(Stage):
    """Fetch every candidate's image safely, resize it, keep its bytes and sha256."""

    name = STAGE
    version = 2
    #: Small downloads are cut finer to keep every local worker busy, but not below this.
    min_rows_per_unit = 100

    def __init__(
        self, resolver: Resolver | None = None, connector: Connector | None = None
    ) -> None:
        # Hooks for tests and benchmarks: name resolution and connecting, never real traffic.
        self.resolver = resolver
        self.connector = connector

    def fingerprint(self, config: BuildConfig) -> dict[str, Any]:
        data = output_settings(config)
        image = {k: data["image"][k] for k in RESIZE_KEYS}
        return {"version": self.version, "config": {"download": data["download"], "image": image}}

    def output_schema(self, config: BuildConfig) -> pa.Schema:
        return OUTPUT_SCHEMA

    def unit_size(self, config: BuildConfig) -> int:
        return config.download.records_per_unit

    def make_core(self, ctx: StageContext, resources: Resources) -> Callable[[], DownloadCore]:
        return functools.partial(
            DownloadCore,
            ctx.config.download.model_copy(),
            ctx.config.image.model_copy(),
            resources,
            self.resolver,
            self.connector,
        )
