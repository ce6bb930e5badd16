"""Execution resources: how many threads a stage may use in one worker process.

The only place that looks at the machine's cores. Stages ask :class:`Resources` -- built in
the launcher from the runner and its pipeline options, shipped to the workers inside the
DoFns -- how many CPU threads they may run (decoding, resizing, hashing) and how many
threads may wait on the network. A runner that starts one SDK process per core (Dataflow's
default, openwit's local pool) gives each process one CPU thread; one that runs everything
in one process gives it every core. Never ``os.cpu_count()`` inside a stage: on a runner
with one SDK process per core that oversubscribes every machine by the number of cores.

Which options say how many SDK processes share a machine:

- ``DirectRunner``: openwit's local pool (the default) -> its size; ``direct_running_mode``
  ``in_memory``/``multi_threading`` -> 1; ``multi_processing`` -> ``direct_num_workers``;
- portable runners (Flink, Spark, PortableRunner): ``sdk_worker_parallelism`` (0: one per
  core);
- ``DataflowRunner``: one per vCPU, unless ``experiments`` has
  ``no_use_multiple_sdk_containers`` (then one).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Beam's runners that run a pipeline on this machine (openwit's worker pool, or Beam's own
#: local modes).
DIRECT_RUNNERS = frozenset({"DirectRunner", "SwitchingDirectRunner", "FnApiRunner"})


def machine_cores() -> int:
    """Cores this process may run on (its CPU affinity, which containers narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Resources:
    """``processes_per_machine``: SDK processes that share one machine's cores (0: one per
    core); ``network_threads``: threads per process that wait on the network."""

    processes_per_machine: int = 1
    network_threads: int = 32

    def cpu_threads(self) -> int:
        """CPU-bound threads this process may run: its share of the machine's cores.
        Call it in the worker (setup), where the machine is the one that runs the work."""
        processes = self.processes_per_machine or machine_cores()
        return max(1, machine_cores() // processes)


def processes_per_machine(
    runner: str, beam_options: Mapping[str, Any] | None, pool_size: int | None = None
) -> int:
    """SDK processes per machine for ``runner`` with these options (0: one per core)."""
    options = dict(beam_options or {})
    if pool_size:
        return pool_size
    if runner in DIRECT_RUNNERS:
        if options.get("direct_running_mode", "in_memory") != "multi_processing":
            return 1
        return int(options.get("direct_num_workers") or 0)
    if runner == "DataflowRunner":
        experiments = options.get("experiments") or []
        if isinstance(experiments, str):
            experiments = [experiments]
        return 1 if "no_use_multiple_sdk_containers" in experiments else 0
    return int(options.get("sdk_worker_parallelism", 1) or 0)


def resources_for(
    runner: str,
    beam_options: Mapping[str, Any] | None,
    network_threads: int,
    pool_size: int | None = None,
) -> Resources:
    return Resources(processes_per_machine(runner, beam_options, pool_size), network_threads)
