"""open_clip models by name: openwit's own configs registered, names checked, nothing downloaded.

openwit's small configs (``openwit-tiny`` for CPU tests and the demo) are the
``openwit-*.json`` files beside this module, in open_clip's config format, registered through
open_clip's own mechanism (``open_clip.add_model_config``), so every open_clip function that
takes a model name sees them. Weights are never fetched: a pretrained *tag* is refused, only
a local checkpoint file can initialise a model.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
from collections.abc import Iterator
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


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


@contextlib.contextmanager
def _random_init_is_expected() -> Iterator[None]:
    """open_clip warns (on the root logger) when it builds a model without pretrained
    weights; openwit always does that and loads a local checkpoint itself afterwards."""
    root, quiet = logging.getLogger(), _DropRandomInitWarning()
    root.addFilter(quiet)
    try:
        yield
    finally:
        root.removeFilter(quiet)


def model_config(name: str) -> dict[str, Any]:
    """open_clip's config of model ``name`` (a registered name or ``local-dir:``)."""
    import json

    import open_clip

    if name.startswith("local-dir:"):
        path = Path(name.removeprefix("local-dir:")) / "open_clip_config.json"
        try:
            return dict(json.loads(path.read_text(encoding="utf-8")).get("model_cfg") or {})
        except (OSError, ValueError, AttributeError) as error:
            raise UserError(f"model {name}: cannot read {path}: {error}") from None
    register_model_configs()
    return dict(open_clip.get_model_config(name) or {})


def check_trainable(name: str) -> None:
    """Refuse model families whose training objective is not CLIP's contrastive loss.

    openwit's loss (:mod:`openwit.train.loss`) is CLIP's softmax loss with a learned
    temperature. SigLIP models carry a ``logit_bias`` for a sigmoid loss, CoCa models a
    caption decoder with its own loss; training them with CLIP's loss would leave the bias
    or the decoder untrained and report a run that is not what the name says.
    """
    config = model_config(name)
    family = None
    if "init_logit_bias" in config:
        family = "a SigLIP model (sigmoid loss with a learned logit_bias)"
    elif "multimodal_cfg" in config:
        family = "a CoCa model (contrastive plus captioning loss)"
    if family:
        raise UserError(
            f"model {name} is {family}; openwit train trains CLIP-loss models only "
            "(open_clip's CLIP and CustomTextCLIP: ViT, ResNet, ConvNeXt and other towers "
            "without logit_bias or a text decoder); openwit eval can still evaluate it"
        )


#: AdamW (beta1, beta2, eps) from CLIP's hyperparameter tables (Radford et al. 2021): the
#: Vision Transformers used beta2 0.98 and eps 1e-6, the ResNets 0.999 and 1e-8.
ADAMW_TRANSFORMER = (0.9, 0.98, 1e-6)
ADAMW_CONVNET = (0.9, 0.999, 1e-8)
_TRANSFORMER_TIMM_NAMES = ("vit", "eva", "deit", "beit", "swin", "hiera")


def has_transformer_image_tower(name: str) -> bool:
    """Whether model ``name``'s image tower is a transformer (open_clip's own ViT, or a timm
    tower of a transformer family); ResNets and other convolutional towers are not."""
    if "vit" in name.lower():  # open_clip_train's rule, by name
        return True
    vision = model_config(name).get("vision_cfg") or {}
    timm_name = str(vision.get("timm_model_name") or "").lower()
    if timm_name:
        return any(family in timm_name for family in _TRANSFORMER_TIMM_NAMES)
    return isinstance(vision.get("layers"), int)  # a list of stage depths is a ResNet


def adamw_defaults(name: str) -> tuple[float, float, float]:
    """(beta1, beta2, eps) for model ``name`` when the command line does not set them."""
    return ADAMW_TRANSFORMER if has_transformer_image_tower(name) else ADAMW_CONVNET


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
    """Build model ``name`` (random init, or weights from ``checkpoint``, a path or a URL).

    Weights stay fp32: mixed precision is autocast's job, so the optimizer keeps fp32 state.
    """
    import open_clip

    name = check_model_name(name)
    local = None
    if checkpoint is not None:
        from openwit.staging import existing_local_file

        local = existing_local_file(checkpoint)  # open_clip's loader reads a local file
        if local is None:
            raise UserError(f"checkpoint not found: {checkpoint}")
    with _random_init_is_expected():
        model, preprocess_train, preprocess_eval = open_clip.create_model_and_transforms(
            name,
            pretrained=None,
            device=device,
            precision="fp32",
            pretrained_image=False,  # no timm / HF tower downloads
            pretrained_text=False,
            output_dict=True,
            weights_only=True,
        )
    if local is not None:
        load_weights(model, name, local, shown=str(checkpoint))
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


def load_weights(model: Any, name: str, checkpoint: Path, shown: str | None = None) -> None:
    """Load a local checkpoint into ``model`` with open_clip's loader (which converts older
    and third-party layouts); a file that is not a checkpoint of this model is a one-line
    :class:`UserError` saying what is wrong with it, naming the file as ``shown`` (the URL
    it was copied from) when given."""
    import open_clip

    try:
        open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
    except MemoryError:
        raise
    except Exception as error:  # torch.load and open_clip raise many kinds: explain below
        raise UserError(why_not_loaded(model, name, checkpoint, error, shown)) from None


def why_not_loaded(
    model: Any, name: str, checkpoint: Path, error: Exception, shown: str | None = None
) -> str:
    """Tell an unreadable file, a file of the wrong kind and another model's weights apart."""
    import torch

    from openwit.train.checkpoint import first_line, read

    shown = shown or str(checkpoint)
    try:
        content = read(checkpoint)
    except UserError as unreadable:  # its one line, naming the file as the user did
        raise UserError(str(unreadable).replace(str(checkpoint), shown)) from None
    weights = content.get("state_dict", content) if isinstance(content, dict) else content
    if not isinstance(weights, dict) or not any(
        isinstance(v, torch.Tensor) for v in weights.values()
    ):
        kind = type(weights).__name__
        return f"{shown} holds a {kind} without model weights, not a checkpoint"
    why = weight_mismatch(model, weights) or first_line(error)
    return f"{shown} is not a checkpoint of model {name}: {why}"


def weight_mismatch(model: Any, weights: dict[str, Any]) -> str | None:
    """Which weights a state dict lacks, adds or shapes differently from ``model``'s."""
    own = model.state_dict()
    given = {k.removeprefix("module."): v for k, v in weights.items()}
    missing = [k for k in own if k not in given]
    unknown = [k for k in given if k not in own]
    shaped = [
        k for k in own if k in given and tuple(getattr(given[k], "shape", ())) != own[k].shape
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of its {len(own)} weights missing (e.g. {missing[0]})")
    if unknown:
        parts.append(f"{len(unknown)} unknown (e.g. {unknown[0]})")
    if shaped:
        k = shaped[0]
        parts.append(
            f"{len(shaped)} of other shapes (e.g. {k}: {list(given[k].shape)} in the file, "
            f"{list(own[k].shape)} in the model)"
        )
    return ", ".join(parts) or None


# open_clip's defaults (OPENAI_DATASET_MEAN/STD), used when a model carries no preprocess cfg.
_OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
