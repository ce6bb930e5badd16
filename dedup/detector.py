"""The eval-overlap detector: which training images are copies of an evaluation image.

A training image is represented by the two hashes the build stores (``phash``, ``dhash``,
see :mod:`openwit.hashes.images`); nothing else about it is needed, so the audit runs from
shard indexes alone. The evaluation side is small (thousands of images, not billions), so
the work that makes the detector robust is done there: each evaluation image is hashed in
several *variants* -- mirrored, and cropped on a small grid of boxes -- and a training image
matches when it is within the radii of any variant:

    phash distance <= phash_radius  and  dhash distance <= dhash_radius   (same variant)

pHash carries the search (a sublinear Hamming index, :mod:`openwit.dedup.hamming`); dHash
only confirms, which removes look-alikes pHash alone lets through. Why these variants and
radii: the measurements in docs/dedup.md (``bench.detector_quality``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from openwit.dedup.hamming import HammingIndex
from openwit.hashes.images import hash_pair, trim_borders

if TYPE_CHECKING:
    from PIL import Image

    from openwit.config import DedupConfig

#: Eval images are shrunk to this longest side before hashing (the build's default
#: ``image.resize_max_side``).
STORED_SIDE = 256
#: (left, top, right, bottom) fractions cut off an image for one crop variant, per step.
CROP_PATTERNS: tuple[tuple[int, int, int, int], ...] = (
    (1, 1, 1, 1),  # centre
    (1, 1, 0, 0),  # towards the bottom-right corner
    (0, 1, 1, 0),
    (1, 0, 0, 1),
    (0, 0, 1, 1),
    (1, 0, 1, 0),  # left and right
    (0, 1, 0, 1),  # top and bottom
)


@dataclass(frozen=True)
class Variant:
    name: str
    flip: bool
    box: tuple[float, float, float, float]  # fractions cut off left, top, right, bottom


@dataclass(frozen=True)
class Detector:
    """How eval images are hashed and when a training hash counts as a match."""

    phash_radius: int = 8
    dhash_radius: int | None = 14
    flip: bool = True
    crop_steps: tuple[float, ...] = (0.04, 0.08, 0.12)

    @classmethod
    def from_config(cls, config: DedupConfig) -> Detector:
        return cls(
            config.eval_phash_radius,
            config.eval_dhash_radius,
            config.eval_mirror,
            tuple(config.eval_crop_steps),
        )

    @property
    def name(self) -> str:
        parts = [f"pHash<={self.phash_radius}"]
        if self.dhash_radius is not None:
            parts.append(f"dHash<={self.dhash_radius}")
        extras = ["borders trimmed"]
        if self.flip:
            extras.append("mirrored")
        if self.crop_steps:
            steps = "/".join(f"{round(s * 100)}" for s in self.crop_steps)
            extras.append(f"crops {steps}%")
        return " & ".join(parts) + f" ({', '.join(extras)})"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "phash_radius": self.phash_radius,
            "dhash_radius": self.dhash_radius,
            "flip": self.flip,
            "crop_steps": list(self.crop_steps),
            "variants": len(self.variants()),
        }

    def variants(self) -> list[Variant]:
        boxes: list[tuple[str, tuple[float, float, float, float]]] = [("full", (0, 0, 0, 0))]
        for step in self.crop_steps:
            for pattern in CROP_PATTERNS:
                box = tuple(step * p for p in pattern)
                label = "".join("ltrb"[i] for i, p in enumerate(pattern) if p)
                boxes.append((f"crop{round(step * 100)}-{label}", box))  # type: ignore[arg-type]
        flips = (False, True) if self.flip else (False,)
        return [
            Variant(f"{'mirror-' if flip else ''}{name}", flip, box)
            for flip in flips
            for name, box in boxes
        ]

    def variant_hashes(self, image: Image.Image) -> tuple[np.ndarray, np.ndarray]:
        """``(phash, dhash)`` arrays with one entry per variant of an eval image."""
        from PIL import Image, ImageOps

        base = trim_borders(image.convert("L"))
        # Training images are stored at most STORED_SIDE pixels long and hashed there; an
        # eval image hashed at that size is closer to them, and 44 variants cost less.
        scale = STORED_SIDE / max(base.size)
        if scale < 1:
            size = (max(1, round(base.width * scale)), max(1, round(base.height * scale)))
            base = base.resize(size, Image.Resampling.BICUBIC)
        mirrored = ImageOps.mirror(base) if self.flip else None
        phashes, dhashes = [], []
        for variant in self.variants():
            source = mirrored if variant.flip else base
            assert source is not None
            left, top, right, bottom = variant.box
            w, h = source.size
            box = (round(w * left), round(h * top), round(w * (1 - right)), round(h * (1 - bottom)))
            # The base is trimmed once; trimming a crop again would move the box.
            cropped = source.crop(box) if variant.box != (0, 0, 0, 0) else source
            p, d = hash_pair(cropped)
            phashes.append(p)
            dhashes.append(d)
        return np.asarray(phashes, dtype=np.uint64), np.asarray(dhashes, dtype=np.uint64)


@dataclass
class Matches:
    """Matched (training query, eval sample) pairs: the best variant of each pair."""

    query: np.ndarray  # position of the training hash in the queried batch
    sample: np.ndarray  # eval sample id given to :class:`EvalIndex`
    variant: np.ndarray  # index into ``Detector.variants()``
    phash_distance: np.ndarray
    dhash_distance: np.ndarray

    def __len__(self) -> int:
        return len(self.query)


class EvalIndex:
    """The variant hashes of eval images, searchable by training hashes."""

    def __init__(
        self,
        detector: Detector,
        sample_ids: np.ndarray,
        variant_ids: np.ndarray,
        phash: np.ndarray,
        dhash: np.ndarray,
    ) -> None:
        """Hash ``i`` is variant ``variant_ids[i]`` of eval sample ``sample_ids[i]``."""
        self.detector = detector
        self.sample_ids = np.asarray(sample_ids, dtype=np.int64)
        self.variant_ids = np.asarray(variant_ids, dtype=np.int32)
        self.phash = np.asarray(phash, dtype=np.uint64)
        self.dhash = np.asarray(dhash, dtype=np.uint64)
        self.index = HammingIndex(self.phash, detector.phash_radius)

    @classmethod
    def from_sample_hashes(
        cls, detector: Detector, phash: np.ndarray, dhash: np.ndarray
    ) -> EvalIndex:
        """From ``(n_samples, n_variants)`` hash arrays; sample ids are row numbers."""
        phash = np.asarray(phash, dtype=np.uint64).reshape(len(phash), -1)
        dhash = np.asarray(dhash, dtype=np.uint64).reshape(phash.shape)
        n_samples, n_variants = phash.shape
        ids = np.repeat(np.arange(n_samples), n_variants)
        variants = np.tile(np.arange(n_variants), n_samples)
        return cls(detector, ids, variants, phash.ravel(), dhash.ravel())

    def match(self, phash: np.ndarray, dhash: np.ndarray) -> Matches:
        """Every (query, eval sample) pair within the detector's radii, best variant each."""
        phash = np.asarray(phash, dtype=np.uint64)
        dhash = np.asarray(dhash, dtype=np.uint64)
        query, hit, pdist = self.index.search(phash)
        ddist = np.bitwise_count(dhash[query] ^ self.dhash[hit]).astype(np.int32)
        if self.detector.dhash_radius is not None:
            keep = ddist <= self.detector.dhash_radius
            query, hit, pdist, ddist = query[keep], hit[keep], pdist[keep], ddist[keep]
        sample = self.sample_ids[hit]
        variant = self.variant_ids[hit]
        # One row per (query, sample): the closest variant (pHash, then dHash, then order).
        order = np.lexsort((variant, ddist, pdist, sample, query))
        query, sample, variant = query[order], sample[order], variant[order]
        pdist, ddist = pdist[order], ddist[order]
        first = np.ones(len(query), dtype=bool)
        first[1:] = (query[1:] != query[:-1]) | (sample[1:] != sample[:-1])
        return Matches(query[first], sample[first], variant[first], pdist[first], ddist[first])
