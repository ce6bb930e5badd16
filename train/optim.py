"""CLIP's optimizer and learning-rate schedule.

AdamW (betas and eps per image tower, as CLIP chose them: ``TrainConfig.adamw``); decoupled
weight decay on every weight that is not a gain, a bias or the logit scale; linear warmup,
then cosine decay to zero.
"""

from __future__ import annotations

import math

import torch


def no_decay(name: str, parameter: torch.Tensor) -> bool:
    """Gains (norm weights, any 1-d tensor), biases and the temperature are not decayed."""
    return parameter.ndim < 2 or name.endswith("bias") or "logit_scale" in name


def make_optimizer(
    model: torch.nn.Module,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float],
    eps: float,
    device: torch.device,
) -> torch.optim.AdamW:
    decay, plain = [], []
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            (plain if no_decay(name, parameter) else decay).append(parameter)
    groups = [
        {"params": plain, "weight_decay": 0.0},
        {"params": decay, "weight_decay": weight_decay},
    ]
    # The fused kernel: one pass over all parameters (3x faster than foreach on the CPU
    # here, see docs/train.md); available on CUDA and CPU.
    fused = device.type in ("cuda", "cpu")
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=fused)


def learning_rate(step: int, base_lr: float, warmup: int, total: int) -> float:
    """The learning rate of optimizer step ``step`` (0-based): a pure function of the step,
    so a resumed run continues the same schedule."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    decay_steps = max(1, total - warmup)
    progress = min(1.0, (step - warmup) / decay_steps)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
