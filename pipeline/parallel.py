"""A stage core on a thread pool inside each Beam worker.

:func:`openwit.beam.apply_core` runs a core one record at a time in the DoFn's thread.
Cores whose work is in C code that releases the GIL (Pillow decoding and resizing, which
the image stage's hashes are made of) use several cores from one worker process on a
thread pool: the DirectRunner's default in-memory mode then uses the whole machine without
Beam's ``multi_processing`` mode, which pays worker start-up and a gRPC copy of every image
in every stage. (A pool of worker processes was measured too: on this 2-core machine it
was no faster than threads, and its workers import more.) Rejections, the ``stage_error``
rule and the counters stay those of :class:`~openwit.beam.CoreDoFn`, handled in the
DoFn's own thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import apache_beam as beam

from openwit.beam import REJECTED, Core, CoreDoFn


def _apply(core: Core, record: dict[str, Any]) -> list[Any] | Exception:
    try:
        return list(core(record))
    except Exception as exc:  # rejected as stage_error in process(), as CoreDoFn does
        return exc


class ThreadedCoreDoFn(CoreDoFn):
    """A :class:`CoreDoFn` over batches of records, the core run on a thread pool."""

    def __init__(self, stage: str, make_core: Callable[[], Core], threads: int) -> None:
        super().__init__(stage, make_core)
        self.threads = threads

    def setup(self) -> None:
        super().setup()
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix=f"openwit-{self.stage}")

    def teardown(self) -> None:
        self.pool.shutdown()

    def process(self, batch: list[dict[str, Any]]) -> Iterator[Any]:  # type: ignore[override]
        core = self.core
        results = self.pool.map(lambda record: _apply(core, record), batch)
        for record, outputs in zip(batch, results):
            yield from self.emit(record, outputs)


def apply_core_threaded(
    records: beam.PCollection,
    stage: str,
    make_core: Callable[[], Core],
    threads: int | None = None,
) -> tuple[beam.PCollection, beam.PCollection]:
    """Like :func:`openwit.beam.apply_core`, on ``threads`` threads per worker (default:
    one per core); returns ``(kept, rejected)``."""
    fn = ThreadedCoreDoFn(stage, make_core, threads or os.cpu_count() or 1)
    outputs = (
        records
        | f"Batch for {stage}" >> beam.BatchElements(min_batch_size=16, max_batch_size=256)
        | f"Apply {stage}" >> beam.ParDo(fn).with_outputs(REJECTED, main="kept")
    )
    return outputs.kept, outputs[REJECTED]
