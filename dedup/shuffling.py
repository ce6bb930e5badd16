"""Beam DoFns whose outputs feed batched shuffles (the dedup stage's links pass).

A :class:`Shuffling` DoFn buffers its output rows per destination partition
(:class:`openwit.dedup.batches.PartitionBuffers`) and sends one payload per partition when
its bundle ends -- spilled to a file when the settings name a shuffle directory -- and
reports how many bytes each of its shuffles carried as ``(name:stat, number)`` on its
``stats`` output.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from openwit.beam import beam
from openwit.dedup.batches import PartitionBuffers, partition_of, unit_of
from openwit.dedup.slim import Settings

MAIN = "main"
STATS = "stats"
CHANGES = "changes"


def windowed(value: Any) -> Any:
    from apache_beam.transforms.window import GlobalWindows

    return GlobalWindows.windowed_value(value)


class Shuffling(beam.DoFn):
    """A DoFn whose outputs feed shuffles: rows are buffered per destination partition and
    sent as one payload each at the bundle's end; the bytes sent are reported as stats.
    ``shuffles`` maps output tags (``main`` first) to the names of the shuffles they feed."""

    shuffles: ClassVar[dict[str, str]] = {}

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def start_bundle(self) -> None:
        spill = self.settings.shuffle_dir
        self.buffers = {
            tag: PartitionBuffers(spill_to=spill, name=name) for tag, name in self.shuffles.items()
        }

    def send(self, tag: str, partitions: np.ndarray, arrays: dict[str, np.ndarray]) -> Iterator:
        for element in self.buffers[tag].add(partitions, arrays):
            yield element if tag == MAIN else beam.pvalue.TaggedOutput(tag, element)

    def finish_bundle(self) -> Iterator:
        for tag, buffer in self.buffers.items():
            for element in buffer.flush():
                value = windowed(element)
                yield value if tag == MAIN else beam.pvalue.TaggedOutput(tag, value)
            name = self.shuffles[tag]
            for stat, number in (
                ("bytes", buffer.bytes_emitted),
                ("runner_bytes", buffer.runner_bytes),
                ("elements", buffer.elements_emitted),
            ):
                yield beam.pvalue.TaggedOutput(STATS, windowed((f"{name}:{stat}", number)))

    def partitions(self, ids: np.ndarray) -> np.ndarray:
        return partition_of(ids, self.settings.partitions)

    def units(self, ids: np.ndarray) -> np.ndarray:
        return unit_of(ids, self.settings.unit_starts)
