"""``openwit audit``: how much of each evaluation set is in the shards, and does it matter?

CLIP section 5 as a tool. Every evaluation image is hashed in the detector's variants, the
shard indexes' hash columns are streamed through one index of those hashes, and each eval
set is split into Overlap (some shard sample matches) and Clean. With zero-shot predictions
-- from a checkpoint through ``openwit.train.zeroshot`` or precomputed tables -- accuracy
on All, Clean and Overlap is compared (:mod:`openwit.dedup.stats`). The result is
``OUT/audit.json`` and a self-contained ``OUT/index.html`` (:mod:`openwit.dedup.report`).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from openwit import fs
from openwit.dedup.detector import Detector
from openwit.dedup.evalhash import EvalCatalog, hash_eval_set
from openwit.dedup.predictions import load_evaluator, predicted_correctness
from openwit.dedup.stats import ALPHA, CI_LEVEL, MIN_OVERLAP_FOR_TEST, accuracy_split
from openwit.errors import UserError
from openwit.evalsets import EvalSet

AUDIT_JSON = "audit.json"
THUMB_SIZE = 160
TEXT_CHARS = 300


@dataclass
class AuditRequest:
    shards: str | Path  # the shard directory: a path or a URL (s3://, gs://, ...)
    eval_sets: dict[str, str | Path]  # a folder, or a bucket's (s3://...)
    out: str | Path  # the report folder: a path or a URL
    detector: Detector = field(default_factory=Detector)
    predictions: dict[str, str | Path] = field(default_factory=dict)  # set -> Parquet table
    checkpoint: str | Path | None = None  # a path or a URL
    model: str | None = None
    device: str = "cpu"
    max_pairs: int = 60  # matched pairs shown with thumbnails per set (all are in the JSON)
    workers: int | None = None
    progress: bool = True


@dataclass
class ShardMatch:
    set_index: int
    sample: int
    shard: str  # index file name without extension (the tar beside it has the same stem)
    key: str
    uid: str | None
    url: str | None
    text: str | None
    variant: str
    phash_distance: int
    dhash_distance: int


# -- inputs ------------------------------------------------------------------------------------
def _check_request(request: AuditRequest) -> tuple[list[EvalSet], list[str]]:
    """The eval sets opened and the shard index files listed, once each (a listing of a
    bucket is a request); one line for the first thing wrong."""
    from openwit.dedup.shards import shard_indexes

    if not request.eval_sets:
        raise UserError("--eval: give at least one evaluation set as NAME=PATH")
    fs.probe(fs.join(str(request.out), AUDIT_JSON))  # a bucket out of reach: now, not at the end
    files = shard_indexes(request.shards)
    eval_sets = [EvalSet.open(name, root) for name, root in request.eval_sets.items()]
    for name, path in request.predictions.items():
        if name not in request.eval_sets:
            raise UserError(f"--predictions {name}: no --eval set of that name")
        if not fs.is_file(path):
            raise UserError(f"--predictions {name}: no such file: {path}")
    if request.checkpoint is not None:
        if not fs.is_file(request.checkpoint):
            raise UserError(f"--checkpoint: no such file: {request.checkpoint}")
        if not request.model:
            raise UserError("--checkpoint needs --model (the open_clip model name)")
        from openwit.train.models import check_model_name

        check_model_name(request.model)  # an unknown name fails now, not after the search
        from openwit.train.distributed import resolve_device

        request.device = resolve_device(request.device)
    return eval_sets, files


# -- overlap search ----------------------------------------------------------------------------
def find_overlaps(
    files: list[str], total: int, catalog: EvalCatalog, progress: bool = True
) -> list[ShardMatch]:
    """Every (shard sample, eval image) pair the detector matches in the shard index
    ``files`` (``total`` rows in all, for the progress bar)."""
    from openwit.console import progress_bar
    from openwit.dedup.shards import iter_batches, shard_name
    from openwit.hashes.images import as_uint64_array

    found: list[ShardMatch] = []
    with progress_bar("searching shards", total=total) as advance:
        for path, batch in iter_batches(files):
            valid = np.ones(batch.num_rows, dtype=bool)
            for column in ("phash", "dhash"):
                nulls = batch.column(column).is_null().to_numpy(zero_copy_only=False)
                valid &= ~nulls
            rows = np.flatnonzero(valid)
            phash = as_uint64_array(batch.column("phash").fill_null(0))[rows]
            dhash = as_uint64_array(batch.column("dhash").fill_null(0))[rows]
            matches = catalog.match(phash, dhash)
            if matches:
                columns = {name: batch.column(name) for name in batch.schema.names}
                for m in matches:
                    row = int(rows[m.query])
                    value = {n: c[row].as_py() for n, c in columns.items() if n not in ("phash",)}
                    found.append(
                        ShardMatch(
                            m.set_index,
                            m.sample,
                            shard_name(path),
                            str(value["key"]),
                            value.get("uid"),
                            value.get("url"),
                            (value.get("text") or "")[:TEXT_CHARS] or None,
                            m.variant,
                            m.phash_distance,
                            m.dhash_distance,
                        )
                    )
            if progress:
                advance(batch.num_rows)
    return found


def decontamination_counts(shards: str | Path) -> dict[str, dict[str, int]] | None:
    """What the build's dedup stage removed as eval overlap, when ``shards`` is in a build."""
    from openwit.builddir import BuildDir
    from openwit.dedup.layout import MATCHES_GLOB, STAGE

    build = BuildDir(fs.parent(str(shards)))
    try:
        manifest = build.manifest()
    except (OSError, ValueError):
        manifest = {}
    dedup_config = (manifest.get("config") or {}).get("dedup") or {}
    if not dedup_config.get("decontaminate"):
        return None
    table = build.read_table(build.stage_files(STAGE, MATCHES_GLOB))
    counts: dict[str, dict[str, set]] = defaultdict(lambda: {"images": set(), "samples": set()})
    for row in table.to_pylist() if table is not None else []:
        if row["rejected"]:
            counts[row["eval_set"]]["images"].add(row["eval_path"])
            counts[row["eval_set"]]["samples"].add(row["uid"])
    return {
        name: {"images": len(v["images"]), "training_samples": len(v["samples"])}
        for name, v in counts.items()
    }


# -- thumbnails --------------------------------------------------------------------------------
def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "set"


def _thumbnail(data_or_path: bytes | Path, dest: Path) -> bool:
    import io

    from PIL import Image

    try:
        source = io.BytesIO(data_or_path) if isinstance(data_or_path, bytes) else data_or_path
        with Image.open(source) as image:
            image.draft("RGB", (THUMB_SIZE * 2, THUMB_SIZE * 2))
            image = image.convert("RGB")
            image.thumbnail((THUMB_SIZE, THUMB_SIZE))
            dest.parent.mkdir(parents=True, exist_ok=True)
            image.save(dest, "JPEG", quality=85)
        return True
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def write_thumbnails(
    out: Path, shards: str | Path, folder_name: str, root: Path, pairs: list[dict[str, Any]]
) -> None:
    """Thumbnails of the shown pairs under ``out/thumbs/<folder>/``; paths go into ``pairs``."""
    from openwit.dedup.shards import read_images

    folder = Path("thumbs") / folder_name
    wanted: dict[str, set[str]] = defaultdict(set)
    for pair in pairs:
        wanted[pair["shard"]].add(pair["shard_key"])
    images: dict[tuple[str, str], bytes] = {}
    for shard, keys in wanted.items():
        for key, data in read_images(fs.join(str(shards), f"{shard}.tar"), keys).items():
            images[(shard, key)] = data
    for index, pair in enumerate(pairs):
        eval_rel = folder / f"{index:04d}-eval.jpg"
        shard_rel = folder / f"{index:04d}-shard.jpg"
        ok = _thumbnail(root / pair["eval_path"], out / eval_rel)
        pair["eval_thumb"] = eval_rel.as_posix() if ok else None
        data = images.get((pair["shard"], pair["shard_key"]))
        ok = data is not None and _thumbnail(data, out / shard_rel)
        pair["shard_thumb"] = shard_rel.as_posix() if ok else None


# -- the audit ---------------------------------------------------------------------------------
def run_audit(request: AuditRequest) -> dict[str, Any]:
    """Run the audit and write ``audit.json`` and ``index.html`` into ``request.out``."""
    import shutil

    from openwit.dedup.report import DELTA_CHART
    from openwit.dedup.shards import count_rows
    from openwit.staging import output_folder

    eval_sets, files = _check_request(request)
    samples = count_rows(files)  # the footers, read once
    evaluator = load_evaluator(request.checkpoint, request.model, request.device)
    hashed = [
        hash_eval_set(s, request.detector, request.workers, request.progress) for s in eval_sets
    ]
    catalog = EvalCatalog(request.detector, hashed)
    matches = find_overlaps(files, samples, catalog, request.progress)
    removed = decontamination_counts(request.shards)

    # a URL: written locally, uploaded when complete (the page last, stale thumbnails gone)
    with output_folder(request.out, owned=("thumbs", DELTA_CHART), last=("index.html",)) as out:
        if (out / "thumbs").is_dir():
            shutil.rmtree(out / "thumbs")  # a rerun must not show stale pairs
        searched = {"n_shard_files": len(files), "n_shard_samples": samples}
        return _write_audit(request, out, eval_sets, catalog, matches, removed, evaluator, searched)


def _write_audit(
    request: AuditRequest,
    out: Path,
    eval_sets: list[EvalSet],
    catalog: EvalCatalog,
    matches: list[ShardMatch],
    removed: Any,
    evaluator: Any,
    searched: dict[str, int],
) -> dict[str, Any]:
    """Per set: the Overlap/Clean split, accuracies and tests, thumbnails of the shown
    pairs; then ``audit.json`` and the page, all in the local folder ``out``."""
    from openwit.dedup.report import write_report
    from openwit.io import atomic_write_json

    by_set: dict[int, list[ShardMatch]] = defaultdict(list)
    for match in matches:
        by_set[match.set_index].append(match)

    sets = []
    for index, (eval_set, hashes) in enumerate(zip(eval_sets, catalog.sets)):
        set_matches = sorted(
            by_set[index],
            key=lambda m: (m.phash_distance, m.dhash_distance, hashes.paths[m.sample], m.key),
        )
        overlap = np.zeros(len(hashes), dtype=bool)
        for m in set_matches:
            overlap[m.sample] = True
        given = request.predictions.get(eval_set.name)
        correct, source = predicted_correctness(eval_set, given, evaluator, request.device)
        # An image that was not read (by the hasher, or by the evaluator) is neither Clean
        # nor Overlap: it was not searched or not scored, so it leaves every accuracy.
        unreadable = dict(hashes.errors)
        if correct is not None:
            for path, flag in zip(hashes.paths, correct):
                if flag is None:
                    unreadable.setdefault(path, "the zero-shot evaluator could not read it")
        readable = np.asarray([p not in unreadable for p in hashes.paths], dtype=bool)
        n_readable = int(readable.sum())
        n_overlap = int(overlap[readable].sum())
        pairs = [
            {
                "eval_path": hashes.paths[m.sample],
                "eval_label": int(hashes.labels[m.sample]),
                "eval_class": eval_set.classnames[int(hashes.labels[m.sample])],
                "shard": m.shard,
                "shard_key": m.key,
                "uid": m.uid,
                "url": m.url,
                "text": m.text,
                "variant": m.variant,
                "phash_distance": m.phash_distance,
                "dhash_distance": m.dhash_distance,
                "eval_thumb": None,
                "shard_thumb": None,
            }
            for m in set_matches
        ]
        shown = pairs[: request.max_pairs]
        # Numbered, so two set names that sanitise alike never share a folder.
        folder = f"{index:02d}-{safe_name(eval_set.name)}"
        write_thumbnails(out, request.shards, folder, eval_set.root, shown)
        entry: dict[str, Any] = {
            "name": eval_set.name,
            "root": eval_set.location,
            "n": len(hashes),
            "n_unreadable": len(unreadable),
            "n_overlap": n_overlap,
            "overlap_rate": n_overlap / n_readable if n_readable else None,
            "n_training_matches": len({(m.shard, m.key) for m in set_matches}),
        }
        split = None
        if correct is not None and n_readable:
            keep = np.flatnonzero(readable)
            split = accuracy_split([bool(correct[i]) for i in keep], overlap[keep].tolist())
        for name in (
            "acc_all",
            "acc_clean",
            "acc_overlap",
            "delta_all_minus_clean",
            "delta_overlap_minus_clean",
            "p_value",
        ):
            entry[name] = getattr(split, name) if split else None
        entry["ci_overlap"] = list(split.ci_overlap) if split and split.ci_overlap else None
        entry["correct_overlap"] = split.correct_overlap if split else None
        entry["test_note"] = (
            split.test_note
            if split
            else "no readable images: accuracy not measured"
            if correct is not None
            else "no predictions: accuracy not measured"
        )
        entry["accuracy_source"] = source
        entry["detector"] = request.detector.name
        entry["phash_radius"] = request.detector.phash_radius
        entry["dhash_radius"] = request.detector.dhash_radius
        if removed is not None:  # the shards come from a build that decontaminated
            entry["removed_by_decontamination"] = removed.get(
                eval_set.name, {"images": 0, "training_samples": 0}
            )
        else:
            entry["removed_by_decontamination"] = None
        entry["unreadable"] = dict(list(unreadable.items())[:20])
        entry["pairs_shown"] = min(len(pairs), request.max_pairs)
        entry["matches"] = pairs
        sets.append(entry)

    audit = {
        "openwit_audit": 1,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "shards": str(request.shards),
        **searched,
        "build_decontaminated": removed is not None,
        "detector": request.detector.to_json(),
        "test": {
            "kind": "one-sided binomial test: overlap accuracy against clean accuracy as null",
            "alpha": round(ALPHA, 6),
            "ci": f"{CI_LEVEL:.1%} Clopper-Pearson interval on the overlap accuracy",
            "min_overlap_for_test": MIN_OVERLAP_FOR_TEST,
            "gate": (
                f"openwit's rule: a p-value only from {MIN_OVERLAP_FOR_TEST} overlapping "
                f"images on, and only where acc_clean ** n_overlap <= {ALPHA:g} (an overlap "
                "subset answered entirely right could reach significance)"
            ),
            "unreadable": "images not read are in neither Overlap nor Clean",
        },
        "checkpoint": str(request.checkpoint) if request.checkpoint else None,
        "model": request.model if request.checkpoint else None,
        "sets": sets,
    }
    atomic_write_json(out / AUDIT_JSON, audit, skip_if_same=False)
    write_report(audit, out)
    return audit
