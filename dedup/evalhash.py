"""Hashing evaluation sets with the detector's variants, and one index over all of them.

Both the build (decontamination) and ``openwit audit`` start here: every image of every
evaluation set is hashed in all detector variants, and the hashes of all sets go into one
:class:`EvalIndex` whose sample ids map back to ``(set, image)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from openwit.dedup.detector import Detector, EvalIndex, Matches
from openwit.evalsets import EvalSet

#: Below this many images a set is hashed in this process (starting workers costs more).
PARALLEL_FROM = 256


@dataclass
class EvalHashes:
    """The variant hashes of one evaluation set; row ``i`` is ``EvalSet.samples[i]``."""

    name: str
    root: Path
    paths: list[str]
    labels: np.ndarray
    phash: np.ndarray  # (n, n_variants) uint64
    dhash: np.ndarray
    readable: np.ndarray  # bool; unreadable images are never matched
    errors: dict[str, str] = field(default_factory=dict)  # path -> why it could not be read

    def __len__(self) -> int:
        return len(self.paths)


def _hash_one(detector: Detector, path: str) -> tuple[np.ndarray, np.ndarray] | str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB", (512, 512))  # large JPEGs: decode at reduced size
            return detector.variant_hashes(image)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        return f"{type(exc).__name__}: {exc}"


def _hash_chunk(detector: Detector, paths: list[str]) -> list[tuple[np.ndarray, np.ndarray] | str]:
    return [_hash_one(detector, p) for p in paths]


def hash_eval_set(
    eval_set: EvalSet, detector: Detector, workers: int | None = None, progress: bool = True
) -> EvalHashes:
    """Hash every image of ``eval_set`` in every variant of ``detector``."""
    from openwit.console import progress_bar
    from openwit.hashes.resample import single_threaded_blas

    samples = eval_set.samples
    paths = [str(eval_set.root / s.path) for s in samples]
    n_variants = len(detector.variants())
    results: list[tuple[np.ndarray, np.ndarray] | str] = []
    workers = workers if workers is not None else min(8, os.cpu_count() or 1)
    chunk = 32
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    label = f"hashing eval set {eval_set.name}"
    bar = progress_bar(label, total=len(paths)) if progress else nullcontext(lambda n=1: None)
    with bar as advance:
        if workers > 1 and len(paths) >= PARALLEL_FROM:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: the caller may hold threads (Beam, the progress bar).
            context = multiprocessing.get_context("spawn")
            # One BLAS thread per worker: the workers already fill the cores.
            pool = ProcessPoolExecutor(
                workers, mp_context=context, initializer=single_threaded_blas
            )
            with pool:
                for part in pool.map(_hash_chunk, [detector] * len(chunks), chunks):
                    results.extend(part)
                    advance(len(part))
        else:
            for part_paths in chunks:
                results.extend(_hash_chunk(detector, part_paths))
                advance(len(part_paths))
    phash = np.zeros((len(paths), n_variants), dtype=np.uint64)
    dhash = np.zeros((len(paths), n_variants), dtype=np.uint64)
    readable = np.ones(len(paths), dtype=bool)
    errors = {}
    for i, result in enumerate(results):
        if isinstance(result, str):
            readable[i] = False
            errors[samples[i].path] = result
        else:
            phash[i], dhash[i] = result
    labels = np.asarray([s.label for s in samples], dtype=np.int32)
    return EvalHashes(
        eval_set.name,
        eval_set.root,
        [s.path for s in samples],
        labels,
        phash,
        dhash,
        readable,
        errors,
    )


@dataclass
class EvalMatch:
    """One training sample matched to one eval image."""

    set_index: int
    sample: int  # row in that set's EvalHashes
    query: int  # position of the training hash in the batch searched
    variant: str
    phash_distance: int
    dhash_distance: int


class EvalCatalog:
    """Every evaluation set's hashes and one index over all of them."""

    def __init__(self, detector: Detector, sets: list[EvalHashes]) -> None:
        self.detector = detector
        self.sets = sets
        self.variant_names = [v.name for v in detector.variants()]
        offsets, ids, variants, phash, dhash = [], [], [], [], []
        start = 0
        for hashes in sets:
            offsets.append(start)
            rows = np.flatnonzero(hashes.readable)
            n_variants = hashes.phash.shape[1]
            ids.append(np.repeat(rows + start, n_variants))
            variants.append(np.tile(np.arange(n_variants), len(rows)))
            phash.append(hashes.phash[rows].ravel())
            dhash.append(hashes.dhash[rows].ravel())
            start += len(hashes)
        self.offsets = np.asarray([*offsets, start], dtype=np.int64)
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.empty(0, dtype)  # noqa: E731
        self.index = EvalIndex(
            detector,
            cat(ids, np.int64),
            cat(variants, np.int32),
            cat(phash, np.uint64),
            cat(dhash, np.uint64),
        )

    @classmethod
    def build(
        cls,
        eval_roots: Mapping[str, str | Path],
        detector: Detector,
        workers: int | None = None,
        progress: bool = True,
    ) -> EvalCatalog:
        sets = [
            hash_eval_set(EvalSet.open(name, root), detector, workers, progress)
            for name, root in eval_roots.items()
        ]
        return cls(detector, sets)

    def match(self, phash: np.ndarray, dhash: np.ndarray) -> list[EvalMatch]:
        """Matches of a batch of training hashes, one per (training sample, eval image)."""
        found: Matches = self.index.match(phash, dhash)
        set_index = np.searchsorted(self.offsets, found.sample, side="right") - 1
        return [
            EvalMatch(
                int(s),
                int(sample - self.offsets[s]),
                int(q),
                self.variant_names[int(v)],
                int(pd),
                int(dd),
            )
            for s, sample, q, v, pd, dd in zip(
                set_index,
                found.sample,
                found.query,
                found.variant,
                found.phash_distance,
                found.dhash_distance,
            )
        ]
