"""Which evaluation images a model gets right, for the audit's accuracy split.

CLIP section 5 compares a model's zero-shot accuracy on the overlapping and the clean part
of each evaluation set. The per-image correctness comes from a predictions table (one row
per image: ``path`` and ``correct``, as ``openwit eval`` writes it) or from a checkpoint,
whose model makes the zero-shot predictions here (:mod:`openwit.train.zeroshot`). A table
must name every image of the set exactly once; an image the model could not read is
unmeasured, not wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openwit.errors import UserError
from openwit.evalsets import EvalSet


def correctness(table: Any, eval_set: EvalSet, source: str) -> list[bool | None]:
    """Per-sample correctness, in ``eval_set.samples`` order, from a predictions table.

    The table has one row per image: ``path`` (relative to the set's root, as
    ``EvalSet.samples``) and ``correct``; every image of the set must be there exactly once.
    An image the evaluator could not read (``pred`` -1, as ``openwit eval`` writes it, or a
    null ``correct``) is None: not wrong, unmeasured.
    """
    names = set(table.column_names)
    if not {"path", "correct"} <= names:
        raise UserError(f"{source}: predictions need columns 'path' and 'correct'")
    paths = [str(p) for p in table.column("path").to_pylist()]
    flags = table.column("correct").to_pylist()
    if "pred" in names:
        preds = table.column("pred").to_pylist()
        flags = [None if p is not None and p < 0 else f for f, p in zip(flags, preds)]
    by_path = dict(zip(paths, flags))
    if len(by_path) != len(paths):
        raise UserError(f"{source}: some image paths appear more than once")
    expected = [s.path for s in eval_set.samples]
    missing = [p for p in expected if p not in by_path]
    extra = set(by_path) - set(expected)
    if missing or extra:
        example = (missing or sorted(extra))[0]
        raise UserError(
            f"{source}: predictions do not match eval set {eval_set.name}: "
            f"{len(missing)} of its {len(expected)} images missing, {len(extra)} unknown "
            f"(e.g. {example!r})"
        )
    return [None if by_path[p] is None else bool(by_path[p]) for p in expected]


def load_evaluator(checkpoint: str | Path | None, model: str | None, device: str) -> Any:
    """The checkpoint's model, loaded once before the search (a file that is not a
    checkpoint of ``model`` fails now, in one line, not after the hashing); None without a
    checkpoint."""
    if checkpoint is None:
        return None
    from openwit.train.zeroshot import load_model

    return load_model(checkpoint, str(model), device)  # a URL is read through a local copy


def predicted_correctness(
    eval_set: EvalSet, path: str | Path | None, evaluator: Any, device: str
) -> tuple[list[bool | None] | None, str | None]:
    """Per-sample correctness of ``eval_set`` and where it came from: the predictions table
    at ``path`` when given, else the zero-shot predictions of ``evaluator`` (a loaded
    checkpoint); ``(None, None)`` with neither."""
    import pyarrow.parquet as pq

    if path is not None:
        from openwit import fs
        from openwit.staging import local_file

        try:
            table = pq.read_table(local_file(path))
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise UserError(f"--predictions {eval_set.name}: cannot read {path}: {exc}") from None
        return correctness(table, eval_set, str(path)), f"predictions {fs.basename(str(path))}"
    if evaluator is not None:
        from openwit.train.zeroshot import predict

        table = predict(
            evaluator.model,
            evaluator.tokenizer,
            evaluator.preprocess_eval,
            eval_set,
            device=device,
        )
        return correctness(table, eval_set, "zero-shot predictions"), "checkpoint"
    return None, None
