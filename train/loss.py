"""CLIP's contrastive loss over the global batch, with a learned temperature.

Each process scores its own images against every process's captions (and its captions
against every image), with labels offset by its rank: the softmax runs over the global
batch, but each process computes only its rows of the logit matrix (1/world of the work).
The features are gathered with a gradient path back to the rank that made them
(:class:`~openwit.train.distributed.GatherWithGrad`), so a step on N processes at batch B
has the loss and gradients of one process at batch N*B (tests/train/test_distributed.py).
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist
import torch.nn.functional as F

from openwit.train.distributed import gather_mask, gather_with_grad

#: CLIP's temperature: initialised to 1/0.07, clipped so logits are scaled by at most 100.
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100)
#: cross_entropy's label for a row that does not count.
IGNORE = -100


def contrastive_loss(
    image_features: torch.Tensor,
    text_features: torch.Tensor,
    logit_scale: torch.Tensor,
    valid: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric cross-entropy of image->text and text->image logits (features normalised,
    ``logit_scale`` the exponentiated temperature the model returns).

    ``valid`` (bool, one per row) takes pairs out of the loss: a pair whose image could not
    be decoded is neither a positive nor anybody's negative. The loss is then the mean over
    the valid pairs of the global batch (after DDP averages it over processes), so processes
    with fewer valid pairs weigh exactly as much as their pairs. Every process of a run must
    pass a mask, or none (the masks are gathered).
    """
    rows = image_features.shape[0]
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if distributed:
        all_images = gather_with_grad(image_features)
        all_texts = gather_with_grad(text_features)
        offset = dist.get_rank() * rows
    else:
        all_images, all_texts, offset = image_features, text_features, 0
    labels = torch.arange(offset, offset + rows, device=image_features.device)
    logits_per_image = logit_scale * image_features @ all_texts.T
    logits_per_text = logit_scale * text_features @ all_images.T
    if valid is None:
        image_loss = F.cross_entropy(logits_per_image, labels)
        text_loss = F.cross_entropy(logits_per_text, labels)
        return (image_loss + text_loss) / 2
    all_valid = gather_mask(valid) if distributed else valid
    hidden = ~all_valid[None, :]  # dropped pairs are nobody's negatives
    logits_per_image = logits_per_image.masked_fill(hidden, float("-inf"))
    logits_per_text = logits_per_text.masked_fill(hidden, float("-inf"))
    labels = labels.masked_fill(~valid, IGNORE)  # nor their own positives
    total = F.cross_entropy(logits_per_image, labels, ignore_index=IGNORE, reduction="sum")
    total = total + F.cross_entropy(logits_per_text, labels, ignore_index=IGNORE, reduction="sum")
    world = dist.get_world_size() if distributed else 1
    return total / 2 * world / all_valid.sum().clamp(min=1)


@torch.no_grad()
def clamp_logit_scale(model: torch.nn.Module) -> None:
    """Keep the learned log temperature in [0, ln 100] (CLIP clips the scale at 100)."""
    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
