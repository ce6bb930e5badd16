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

from openwit.train.distributed import gather_with_grad

#: CLIP's temperature: initialised to 1/0.07, clipped so logits are scaled by at most 100.
INIT_LOGIT_SCALE = math.log(1 / 0.07)
MAX_LOGIT_SCALE = math.log(100)


def contrastive_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Symmetric cross-entropy of image->text and text->image logits (features normalised,
    ``logit_scale`` the exponentiated temperature the model returns)."""
    rows = image_features.shape[0]
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        all_images = gather_with_grad(image_features)
        all_texts = gather_with_grad(text_features)
        offset = dist.get_rank() * rows
    else:
        all_images, all_texts, offset = image_features, text_features, 0
    labels = torch.arange(offset, offset + rows, device=image_features.device)
    logits_per_image = logit_scale * image_features @ all_texts.T
    logits_per_text = logit_scale * text_features @ all_images.T
    image_loss = F.cross_entropy(logits_per_image, labels)
    text_loss = F.cross_entropy(logits_per_text, labels)
    return (image_loss + text_loss) / 2


@torch.no_grad()
def clamp_logit_scale(model: torch.nn.Module) -> None:
    """Keep the learned log temperature in [0, ln 100] (CLIP clips the scale at 100)."""
    model.logit_scale.clamp_(0, MAX_LOGIT_SCALE)
