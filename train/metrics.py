"""What a run reports: ``metrics.jsonl`` lines, step timing, FLOPs per sample and MFU."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from openwit.io import atomic_write_text

log = logging.getLogger(__name__)

#: Dense bf16/fp16 tensor-core peaks (TFLOP/s) of the cards MFU is reported for.
PEAK_TFLOPS_16BIT = {
    "H100": 989.0,  # SXM; the PCIe card is lower (756)
    "H200": 989.0,
    "GH200": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
}


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's 16-bit peak FLOP/s, or None (CPU, fp32, unknown card): no MFU then."""
    if device.type != "cuda" or precision not in ("bf16", "fp16"):
        return None
    name = torch.cuda.get_device_name(device)
    if "H100" in name and "PCIe" in name:
        return 756e12
    for key, tflops in PEAK_TFLOPS_16BIT.items():
        if key in name:
            return tflops * 1e12
    return None


def train_flops_per_sample(model_name: str) -> float:
    """FLOPs of one training step (forward + backward, both towers) per sample, counted by
    torch's FlopCounterMode on a model built on the meta device (no memory, no compute)."""
    import open_clip
    from torch.utils.flop_counter import FlopCounterMode

    batch = 2
    with torch.device("meta"):
        model = open_clip.create_model(model_name, device="meta", output_dict=True)
        size = model.visual.image_size
        size = (size, size) if isinstance(size, int) else tuple(size)
        images = torch.zeros((batch, 3, *size))
        texts = torch.zeros((batch, model.context_length), dtype=torch.long)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(images, texts)
        (out["image_features"] * out["text_features"]).sum().backward()
    return counter.get_total_flops() / batch


class MetricsLog:
    """``metrics.jsonl``: one JSON line per log step, flushed as written.

    On resume, lines for steps after the checkpoint (written by the interrupted run before
    it died) are dropped, so each step appears once.
    """

    def __init__(self, path: Path, resume_step: int | None) -> None:
        self.path = path
        if resume_step is None:
            atomic_write_text(path, "")
        elif path.is_file():
            kept = [
                line
                for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            atomic_write_text(path, "".join(line + "\n" for line in kept))
        self.handle = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


class StepTimer:
    """Data and batch time over a log interval (GPU work is synchronised at log steps only)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = time.perf_counter()
        self.data = 0.0
        self.steps = 0

    def add_data_wait(self, seconds: float) -> None:
        self.data += seconds

    def step_done(self) -> None:
        self.steps += 1

    def interval(self) -> tuple[float, float]:
        """(mean batch time, mean data time) per step since the last reset."""
        elapsed = time.perf_counter() - self.started
        steps = max(1, self.steps)
        return elapsed / steps, self.data / steps
