"""Where a run executes: precision, autocast, and how many CPU threads and data workers."""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any

import torch

from openwit.train.distributed import Processes

log = logging.getLogger(__name__)


def cpus_per_process(processes: Processes) -> int:
    """This process's share of the CPUs it may run on."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // processes.local_world_size)


def default_workers(processes: Processes) -> int:
    """Data workers per process: its CPUs, one kept for the step, at most 16."""
    return max(1, min(16, cpus_per_process(processes) - 1))


def set_cpu_threads(processes: Processes, workers: int) -> None:
    """Data workers each take a core; oversubscribed intra-op threads spin and slow the step."""
    torch.set_num_threads(max(1, cpus_per_process(processes) - workers))


def resolve_precision(requested: str, device: torch.device) -> str:
    if device.type != "cuda":
        if requested not in ("fp32", "amp"):
            log.warning("--precision %s needs a GPU; training in fp32 on the CPU", requested)
        return "fp32"
    if requested == "amp":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def autocast_for(precision: str, device: torch.device) -> Any:
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device.type, dtype=dtype)
