"""open_clip models by name: openwit's own configs registered, names checked, nothing downloaded.

openwit's small configs (``openwit-tiny`` for CPU tests and the demo) are the
``openwit-*.json`` files beside this module, in open_clip's config format, registered through
open_clip's own mechanism (``open_clip.add_model_config``), so every open_clip function that
takes a model name sees them. Weights are never fetched: a pretrained *tag* is refused, only
a local checkpoint file can initialise a model.
"""

from __future__ import annotations

import difflib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openwit.errors import UserError

TINY_MODEL = "openwit-tiny"
CONFIG_FILES = sorted(Path(__file__).resolve().parent.glob("openwit-*.json"))

log = logging.getLogger(__name__)


def register_model_configs() -> None:
    """Make openwit's model configs visible to open_clip in this process (idempotent)."""
    import open_clip

    if TINY_MODEL not in open_clip.list_models():
        for path in CONFIG_FILES:
            open_clip.add_model_config(path)


def known_models() -> list[str]:
    import open_clip

    register_model_configs()
    return open_clip.list_models()


def check_model_name(name: str) -> str:
    """``name`` if open_clip knows it, else a :class:`UserError` listing the close names."""
    if name.startswith("local-dir:"):
        folder = Path(name.removeprefix("local-dir:"))
        if not (folder / "open_clip_config.json").is_file():
            raise UserError(f"model {name}: no open_clip_config.json in {folder}")
        return name
    if name.startswith("hf-hub:"):
        raise UserError(f"model {name}: hf-hub models are downloaded; openwit works offline")
    models = known_models()
    if name in models:
        return name
    close = difflib.get_close_matches(name, models, n=6, cutoff=0.5)
    hint = f"; close names: {', '.join(close)}" if close else ""
    raise UserError(f"unknown model {name!r}{hint} (open_clip knows {len(models)} models)")


@dataclass
class ModelBundle:
    """A model with the transforms and tokenizer that belong to it."""

    model: Any  # open_clip CLIP / CustomTextCLIP, fp32 weights
    preprocess_train: Any
    preprocess_eval: Any
    tokenizer: Any
    image_size: tuple[int, int]
    context_length: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]


def create_model(
    name: str, checkpoint: str | Path | None = None, device: str = "cpu"
) -> ModelBundle:
    """Build model ``name`` (random init, or weights from a local ``checkpoint``).

    Weights stay fp32: mixed precision is autocast's job, so the optimizer keeps fp32 state.
    """
    import open_clip

    name = check_model_name(name)
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise UserError(f"checkpoint not found: {checkpoint}")
    model, preprocess_train, preprocess_eval = open_clip.create_model_and_transforms(
        name,
        pretrained=str(checkpoint) if checkpoint is not None else None,
        device=device,
        precision="fp32",
        pretrained_image=False,  # no timm / HF tower downloads
        pretrained_text=False,
        output_dict=True,
        weights_only=True,
    )
    tokenizer = open_clip.get_tokenizer(name)
    size = model.visual.image_size
    image_size = (size, size) if isinstance(size, int) else tuple(size)
    cfg = getattr(model.visual, "preprocess_cfg", {})
    return ModelBundle(
        model=model,
        preprocess_train=preprocess_train,
        preprocess_eval=preprocess_eval,
        tokenizer=tokenizer,
        image_size=image_size,
        context_length=int(tokenizer.context_length),
        image_mean=tuple(cfg.get("mean", _OPENAI_MEAN)),
        image_std=tuple(cfg.get("std", _OPENAI_STD)),
    )


# open_clip's defaults (OPENAI_DATASET_MEAN/STD), used when a model carries no preprocess cfg.
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
