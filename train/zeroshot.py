"""Zero-shot classification on image-folder eval sets, as in CLIP.

Each class's text embedding is the normalised mean of its prompts' embeddings (class name
x templates: the set's ``templates.txt`` or CLIP's 80-template ensemble); an image is
assigned the class with the highest cosine similarity. Per-sample predictions keep the
eval set's stable relative paths, so the overlap audit can split accuracy into clean and
overlapping samples (``openwit audit``).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from openwit.evalsets import EvalSet
from openwit.io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

PREDICTION_SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("label", pa.int32()),
        ("pred", pa.int32()),  # -1: the image could not be read
        ("correct", pa.bool_()),
        ("top5", pa.list_(pa.int32())),
    ]
)


@torch.no_grad()
def class_embeddings(
    model: Any, tokenizer: Any, eval_set: EvalSet, device: torch.device
) -> torch.Tensor:
    """[classes, dim]: per class, the normalised mean of its normalised prompt embeddings."""
    templates = eval_set.templates
    rows = []
    for name in eval_set.classnames:
        tokens = tokenizer([t.replace("{}", name) for t in templates]).to(device)
        features = model.encode_text(tokens, normalize=True).float()
        rows.append(torch.nn.functional.normalize(features.mean(0), dim=-1))
    return torch.stack(rows)


class _EvalImages(torch.utils.data.Dataset):
    def __init__(self, eval_set: EvalSet, preprocess: Any, shape: tuple[int, ...]) -> None:
        self.eval_set, self.preprocess, self.shape = eval_set, preprocess, shape

    def __len__(self) -> int:
        return len(self.eval_set.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        from PIL import Image

        path = self.eval_set.root / self.eval_set.samples[index].path
        try:
            with Image.open(path) as image:
                return self.preprocess(image.convert("RGB")), True
        except Exception as error:  # unreadable image: predicted -1, counted as wrong
            log.warning("eval set %s: cannot read %s: %s", self.eval_set.name, path, error)
            return torch.zeros(self.shape), False


@torch.no_grad()
def predict(
    model: Any,
    tokenizer: Any,
    preprocess: Any,
    eval_set: EvalSet,
    *,
    batch_size: int = 64,
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> pa.Table:
    """Per-sample predictions of ``model`` on ``eval_set`` (PREDICTION_SCHEMA)."""
    device = torch.device(device)
    model.eval()
    classes = class_embeddings(model, tokenizer, eval_set, device)
    size = model.visual.image_size
    shape = (3, *((size, size) if isinstance(size, int) else size))
    loader = torch.utils.data.DataLoader(
        _EvalImages(eval_set, preprocess, shape), batch_size=batch_size, num_workers=workers
    )
    k = min(5, len(eval_set.classes))
    preds, top5s = [], []
    for images, readable in loader:
        features = model.encode_image(images.to(device), normalize=True).float()
        top = (features @ classes.T).topk(k, dim=-1).indices.cpu()
        top[~readable] = -1
        preds.extend(top[:, 0].tolist())
        top5s.extend([row if row[0] >= 0 else [] for row in top.tolist()])
    labels = [s.label for s in eval_set.samples]
    return pa.table(
        {
            "path": [s.path for s in eval_set.samples],
            "label": labels,
            "pred": preds,
            "correct": [p == y for p, y in zip(preds, labels)],
            "top5": top5s,
        },
        schema=PREDICTION_SCHEMA,
    )


def summarize(table: pa.Table, n_classes: int) -> dict[str, Any]:
    """top-1 / top-5 accuracy of a predictions table, with chance level and counts."""
    n = table.num_rows
    labels = table.column("label").to_pylist()
    top5 = table.column("top5").to_pylist()
    correct = sum(table.column("correct").to_pylist())
    correct5 = sum(1 for y, row in zip(labels, top5) if y in row)
    return {
        "top1": correct / n if n else None,
        "top5": correct5 / n if n else None,
        "n": n,
        "classes": n_classes,
        "chance_top1": 1 / n_classes,
        "unreadable": sum(1 for p in table.column("pred").to_pylist() if p < 0),
    }


def load_model(checkpoint: str | Path, model: str, device: torch.device | str = "cpu") -> Any:
    from openwit.train.models import create_model

    return create_model(model, checkpoint, device=str(device))


def zero_shot_predictions(
    checkpoint: Path,
    model: str,
    eval_root: Path,
    *,
    batch_size: int = 64,
    device: str = "cpu",
) -> pa.Table:
    """Predictions of the model in ``checkpoint`` (open_clip name ``model``) on the eval set
    at ``eval_root``: columns path, label, pred, correct, top5 (the audit's interface)."""
    bundle = load_model(Path(checkpoint), model, device)
    eval_set = EvalSet.open(Path(eval_root).name, eval_root)
    return predict(
        bundle.model,
        bundle.tokenizer,
        bundle.preprocess_eval,
        eval_set,
        batch_size=batch_size,
        device=device,
    )


def write_predictions(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def evaluate_sets(
    model: Any,
    tokenizer: Any,
    preprocess: Any,
    eval_sets: dict[str, str | Path],
    out_json: Path,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 64,
    checkpoint: str | Path | None = None,
    model_name: str | None = None,
) -> dict[str, Any]:
    """Evaluate on every set; write ``out_json`` and ``predictions/<set>.parquet`` beside it."""
    results: dict[str, Any] = {}
    opened = {name: EvalSet.open(name, root) for name, root in eval_sets.items()}
    for name, eval_set in opened.items():
        table = predict(
            model, tokenizer, preprocess, eval_set, batch_size=batch_size, device=device
        )
        predictions = out_json.parent / "predictions" / f"{name}.parquet"
        write_predictions(table, predictions)
        results[name] = {
            **summarize(table, len(eval_set.classes)),
            "path": eval_set.location,
            "templates": len(eval_set.templates),
            "predictions": str(predictions.relative_to(out_json.parent)),
        }
    report = {
        "model": model_name,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "sets": results,
    }
    atomic_write_json(out_json, report, skip_if_same=False)
    return results
