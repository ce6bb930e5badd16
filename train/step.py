"""One optimizer step: forward, contrastive loss, backward over one or more micro-batches.

With gradient accumulation the contrastive batch is all micro-batches together, as in
open_clip's ``accum_freq``: the features of every micro-batch are first computed without
gradients, then each micro-batch is run again with gradients and scored against the cached
features of the others. Summed over the micro-batches this is exactly the gradient of the
loss over the whole batch (the temperature's gradient is taken once, not once per
micro-batch, which open_clip_train does). It costs one extra forward pass per micro-batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from openwit.train.loss import contrastive_loss


def _forward(model: Callable, images: torch.Tensor, texts: torch.Tensor) -> dict[str, Any]:
    return model(images, texts)


def _swap_in(cached: list[torch.Tensor], k: int, live: torch.Tensor) -> torch.Tensor:
    """The cached features of every micro-batch, with micro-batch ``k``'s live ones."""
    return torch.cat([*cached[:k], live, *cached[k + 1 :]])


def train_step(
    model: Callable,
    micro_batches: list[tuple[Any, ...]],
    autocast: Callable[[], Any],
    backward: Callable[[torch.Tensor], None],
    no_sync: Callable[[], Any] | None = None,
) -> torch.Tensor:
    """Accumulate the gradients of one step into ``model``; return the loss (detached).

    A micro-batch is ``(images, texts)`` or ``(images, texts, valid)``, ``valid`` marking
    the pairs that count (:func:`~openwit.train.loss.contrastive_loss`; None: all).
    ``no_sync`` (DDP's) keeps gradients local for all but the last micro-batch.
    """
    masks = [batch[2] if len(batch) > 2 else None for batch in micro_batches]
    valid = None if any(m is None for m in masks) else torch.cat(masks)
    if len(micro_batches) == 1:
        images, texts = micro_batches[0][:2]
        with autocast():
            out = _forward(model, images, texts)
            loss = contrastive_loss(
                out["image_features"], out["text_features"], out["logit_scale"], valid
            )
        backward(loss)
        return loss.detach()

    with torch.no_grad(), autocast():
        cached = [_forward(model, *batch[:2]) for batch in micro_batches]
    cached_images = [c["image_features"] for c in cached]
    cached_texts = [c["text_features"] for c in cached]
    last = len(micro_batches) - 1
    for k, (images, texts, *_) in enumerate(micro_batches):
        sync = contextlib.nullcontext() if (k == last or no_sync is None) else no_sync()
        with sync:
            with autocast():
                out = _forward(model, images, texts)
                all_images = _swap_in(cached_images, k, out["image_features"])
                all_texts = _swap_in(cached_texts, k, out["text_features"])
                scale = out["logit_scale"] if k == last else out["logit_scale"].detach()
                loss = contrastive_loss(all_images, all_texts, scale, valid)
            backward(loss)
    return loss.detach()
