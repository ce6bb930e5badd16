"""The training run's settings: built once from the command line, passed down, saved as JSON.

A plain dataclass of JSON values, so ``config.json`` and the ``config`` entry of every
checkpoint hold it as is (checkpoints load with ``weights_only=True``, which admits only
tensors and plain containers).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from openwit.errors import UserError

Precision = Literal["fp32", "bf16", "fp16", "amp"]
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16", "amp")
Switch = Literal["auto", "on", "off"]
Decode = Literal["auto", "workers", "device"]

#: CLIP's weight decay (Radford et al. 2021). AdamW's betas and eps depend on the image
#: tower, as in CLIP: :func:`openwit.train.models.adamw_defaults`.
CLIP_WEIGHT_DECAY = 0.2


@dataclass
class TrainConfig:
    train_data: str  # shard directory or brace pattern(s), "::"-separated
    model: str
    out: str
    batch_size: int = 256  # per process, per micro-batch
    steps: int | None = None  # optimizer steps; or epochs
    epochs: float | None = None
    lr: float = 5e-4
    warmup: int | None = None  # steps; default 5% of the run, at most 2000 (CLIP's)
    weight_decay: float = CLIP_WEIGHT_DECAY
    beta1: float | None = None  # AdamW; None: the model's default (adamw_betas)
    beta2: float | None = None
    eps: float | None = None
    precision: str = "amp"  # amp: bf16 (or fp16) autocast on a GPU, fp32 on the CPU
    grad_accum: int = 1  # micro-batches per step; the contrastive batch grows with it
    grad_checkpointing: bool = False
    grad_clip: float | None = None  # max global gradient norm
    compile: str = "auto"  # torch.compile: auto = on for CUDA, off on CPU (docs/train.md)
    save_every: int = 1000  # steps between checkpoints (and one at the end)
    resume: str | None = None  # "auto" or a checkpoint path
    init_checkpoint: str | None = None  # initialise weights from a checkpoint (path or URL)
    eval_sets: dict[str, str] = field(default_factory=dict)
    workers: int | None = None  # data workers per process; default from the CPU count
    seed: int = 0
    log_every: int = 10
    shuffle_buffer: int = 5000  # samples per worker
    resampled: bool = False  # draw shards with replacement (multi-node; no epochs)
    decode: str = "auto"  # where JPEGs are decoded: auto = device on CUDA, workers on CPU
    device: str = "auto"
    train_num_samples: int | None = None  # dataset size when no sizes.json gives it

    def __post_init__(self) -> None:
        if self.steps is None and self.epochs is None:
            raise UserError("give --steps N or --epochs N")
        if self.steps is not None and self.epochs is not None:
            raise UserError("give --steps or --epochs, not both")
        positive = {
            "--batch-size": self.batch_size,
            "--steps": self.steps,
            "--epochs": self.epochs,
            "--lr": self.lr,
            "--save-every": self.save_every,
            "--log-every": self.log_every,
            "--grad-accum": self.grad_accum,
            "--shuffle-buffer": self.shuffle_buffer,
        }
        for flag, value in positive.items():
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"{flag} must be positive, got {value}")
        for flag, value in {"--warmup": self.warmup, "--workers": self.workers}.items():
            if value is not None and value < 0:
                raise UserError(f"{flag} must be >= 0, got {value}")
        for flag, value in {"--beta1": self.beta1, "--beta2": self.beta2}.items():
            if value is not None and not 0 <= value < 1:
                raise UserError(f"{flag} must be in [0, 1), got {value}")
        if self.eps is not None and not (self.eps > 0 and math.isfinite(self.eps)):
            raise UserError(f"--eps must be positive, got {self.eps}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise UserError(f"--grad-clip must be positive, got {self.grad_clip}")
        choices = {
            "--precision": (self.precision, PRECISIONS),
            "--compile": (self.compile, ("auto", "on", "off")),
            "--decode": (self.decode, ("auto", "workers", "device")),
        }
        for flag, (value, allowed) in choices.items():
            if value not in allowed:
                raise UserError(f"{flag} must be one of {', '.join(allowed)}, got {value!r}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise UserError(f"--device must be auto, cpu or cuda[:N], got {self.device!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def adamw(self) -> tuple[float, float, float]:
        """(beta1, beta2, eps): the ones given, the model's defaults for the others."""
        from openwit.train.models import adamw_defaults

        beta1, beta2, eps = adamw_defaults(self.model)
        return (
            beta1 if self.beta1 is None else self.beta1,
            beta2 if self.beta2 is None else self.beta2,
            eps if self.eps is None else self.eps,
        )

    def total_steps(self, dataset_size: int | None, global_batch: int) -> int:
        """Optimizer steps of the whole run (``global_batch`` counts every micro-batch)."""
        if self.steps is not None:
            return self.steps
        if not dataset_size:
            raise UserError(
                "--epochs needs the dataset size: the shards have no sizes.json; "
                "give --train-num-samples N or --steps N"
            )
        assert self.epochs is not None
        return max(1, math.ceil(self.epochs * dataset_size / global_batch))

    def warmup_steps(self, total_steps: int) -> int:
        if self.warmup is not None:
            return self.warmup
        return min(2000, total_steps // 20)
