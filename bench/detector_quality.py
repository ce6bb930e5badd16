"""How good is the duplicate detector? A labelled set of real photographs, measured.

The set is built from photographs scikit-image ships inside its package (no download):
each photo, and each quarter of the larger ones, is an *evaluation image*; the *training
pool* holds copies of them as a crawl produces them (:data:`QUALITY_TRANSFORMS`, each then
stored as the build stores images) plus look-alikes that are different pictures: the other
view of a stereo pair, aligned faces of other people (LFW), neighbouring quarters of the
same photo. A pair (eval image, pool image) is positive when the pool image was made from
that eval image.

For each detector setting the evaluation reports recall and precision per transform
(precision of transform ``t``: among the matches whose pool image went through ``t``, the
share that are true copies) and the false matches among the look-alikes.
``bench/bench_dedup_detector.py`` prints the table; docs/dedup.md keeps it.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from openwit.dedup import transforms as tf
from openwit.dedup.detector import Detector
from openwit.hashes.images import image_hashes, phash_int

if TYPE_CHECKING:
    from PIL import Image

#: skimage.data photographs whose files ship inside the package (others are fetched with
#: pooch at run time and must not be used).
PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "camera",
    "coins",
    "moon",
    "hubble_deep_field",
    "retina",
    "grass",
    "gravel",
    "brick",
    "immunohistochemistry",
    "clock",
    "cell",
    "page",
)
#: Photos at least this large on both sides also give their four quarters as images.
TILE_MIN_SIDE = 400
N_EVAL_FACES = 20


def _random_crop(max_share: float, corner: bool) -> tf.Transform:
    """A crop with sides drawn per image (seeded by the image size), up to ``max_share``."""

    def apply(image: Image.Image) -> Image.Image:
        rng = random.Random(zlib.crc32(f"{image.size}{image.getpixel((0, 0))}".encode()))
        if corner:
            sides = [rng.uniform(0.03, max_share), rng.uniform(0.03, max_share), 0.0, 0.0]
            rng.shuffle(sides)
        else:
            sides = [rng.uniform(0.01, max_share) for _ in range(4)]
        return tf.crop(*sides)(image)

    return apply


#: What the labelled set does to each evaluation image to make its training copies.
QUALITY_TRANSFORMS: dict[str, tf.Transform] = {
    "stored copy": lambda image: image,
    "jpeg q30": tf.jpeg(30),
    "rescale 0.5": tf.rescale(0.5),
    "rescale 0.25": tf.rescale(0.25),
    "grayscale": tf.grayscale,
    "crop <=6% a side": _random_crop(0.06, corner=False),
    "crop <=12% two sides": _random_crop(0.12, corner=True),
    "letterbox black 30%": tf.letterbox(0.3, (0, 0, 0)),
    "pillarbox white 30%": tf.letterbox(0.3, (255, 255, 255), vertical=False),
    "letterbox grey 10%": tf.letterbox(0.1, (128, 128, 128)),
    "watermark text": tf.watermark(),
    "mirror": tf.hflip,
    "mirror+crop+jpeg": tf.compose(tf.hflip, _random_crop(0.06, corner=False), tf.jpeg(60)),
}
LOOKALIKE = "look-alike (negative)"


@dataclass
class LabelledSet:
    eval_names: list[str]
    eval_images: list[Image.Image]
    pool_source: list[str | None]  # the eval image a pool image was made from (None: none)
    pool_kind: list[str]  # transform name, or LOOKALIKE
    pool_images: list[Image.Image] = field(repr=False)


def _skimage_photos(names: Sequence[str]) -> dict[str, Image.Image]:
    import skimage.data
    from PIL import Image

    photos = {}
    for name in names:
        array = getattr(skimage.data, name)()
        photos[name] = Image.fromarray(array).convert("RGB")
    return photos


def _quarters(name: str, image: Image.Image) -> dict[str, Image.Image]:
    w, h = image.size
    return {
        f"{name}[{i}{j}]": image.crop((i * w // 2, j * h // 2, (i + 1) * w // 2, (j + 1) * h // 2))
        for i in range(2)
        for j in range(2)
    }


def _faces() -> list[Image.Image]:
    import skimage.data
    from PIL import Image

    faces = skimage.data.lfw_subset()[:100]  # the first 100 of the subset are faces
    return [
        Image.fromarray((face * 255).astype(np.uint8)).resize((200, 200), Image.Resampling.BICUBIC)
        for face in faces
    ]


def build_labelled_set(
    photos: Sequence[str] = PHOTOS,
    transforms: dict[str, tf.Transform] | None = None,
    tiles: bool = True,
    n_eval_faces: int = N_EVAL_FACES,
) -> LabelledSet:
    """The labelled set: eval images, their crawl copies and look-alike negatives."""
    from PIL import Image

    transforms = QUALITY_TRANSFORMS if transforms is None else transforms
    evals: dict[str, Image.Image] = {}
    for name, image in _skimage_photos(photos).items():
        evals[name] = image
        if tiles and min(image.size) >= TILE_MIN_SIDE:
            evals.update(_quarters(name, image))
    lookalikes: list[Image.Image] = []
    if n_eval_faces:
        faces = _faces()
        for index, face in enumerate(faces[:n_eval_faces]):
            evals[f"face{index:02d}"] = face
        lookalikes.extend(faces[n_eval_faces:])
    import skimage.data

    left, right, _ = skimage.data.stereo_motorcycle()
    evals["motorcycle (left view)"] = Image.fromarray(left)
    lookalikes.append(Image.fromarray(right))

    sources: list[str | None] = []
    kinds: list[str] = []
    pool: list[Image.Image] = []
    for name, image in evals.items():
        for kind, transform in transforms.items():
            sources.append(name)
            kinds.append(kind)
            pool.append(tf.store(transform(image)))
    for image in lookalikes:
        sources.append(None)
        kinds.append(LOOKALIKE)
        pool.append(tf.store(image))
    return LabelledSet(list(evals), list(evals.values()), sources, kinds, pool)


@dataclass(frozen=True)
class Setting:
    """A detector to measure: the production :class:`Detector`, or the plain-pHash baseline."""

    label: str
    detector: Detector
    trim: bool = True  # False: plain imagehash pHash of the untrimmed image (the baseline)


def default_settings(phash_radius: int, dhash_radius: int | None) -> list[Setting]:
    """The ladder from plain pHash to the full detector, at one radius."""
    plain = Detector(phash_radius, None, flip=False, crop_steps=())
    return [
        Setting("pHash", plain, trim=False),
        Setting("+ border trim", plain),
        Setting("+ mirror", Detector(phash_radius, None, flip=True, crop_steps=())),
        Setting("+ crop grid", Detector(phash_radius, None)),
        Setting("+ dHash check", Detector(phash_radius, dhash_radius)),
    ]


@dataclass
class Distances:
    """pHash and dHash distances of every (eval image, variant, pool image)."""

    phash: np.ndarray  # (n_eval, n_variants, n_pool)
    dhash: np.ndarray


def distances(labelled: LabelledSet, setting: Setting) -> Distances:
    if setting.trim:
        pool = np.asarray([image_hashes(i) for i in labelled.pool_images], dtype=np.uint64)
        evals = [setting.detector.variant_hashes(i) for i in labelled.eval_images]
        ev_p = np.stack([p for p, _ in evals])
        ev_d = np.stack([d for _, d in evals])
    else:  # the baseline: imagehash on the image as it is, one hash per eval image
        from openwit.hashes.images import dhash_int

        pool = np.asarray(
            [(phash_int(i), dhash_int(i)) for i in labelled.pool_images], dtype=np.uint64
        )
        ev_p = np.asarray([[phash_int(i)] for i in labelled.eval_images], dtype=np.uint64)
        ev_d = np.asarray([[dhash_int(i)] for i in labelled.eval_images], dtype=np.uint64)
    phash = np.bitwise_count(ev_p[:, :, None] ^ pool[None, None, :, 0])
    dhash = np.bitwise_count(ev_d[:, :, None] ^ pool[None, None, :, 1])
    return Distances(phash, dhash)


def predicted(dist: Distances, phash_radius: int, dhash_radius: int | None) -> np.ndarray:
    """(n_eval, n_pool) booleans: does some variant match within the radii?"""
    hit = dist.phash <= phash_radius
    if dhash_radius is not None:
        hit &= dist.dhash <= dhash_radius
    return hit.any(axis=1)


def score(labelled: LabelledSet, matched: np.ndarray) -> dict[str, dict[str, Any]]:
    """Recall, precision and counts per pool kind, plus an ``all`` row."""
    names = np.asarray(labelled.eval_names, dtype=object)
    source = np.asarray([s if s is not None else "" for s in labelled.pool_source], dtype=object)
    truth = names[:, None] == source[None, :]
    kinds = np.asarray(labelled.pool_kind, dtype=object)
    rows: dict[str, dict[str, Any]] = {}
    for kind in [*dict.fromkeys(labelled.pool_kind), "all"]:
        cols = np.ones(len(kinds), dtype=bool) if kind == "all" else kinds == kind
        tp = int((matched[:, cols] & truth[:, cols]).sum())
        fp = int((matched[:, cols] & ~truth[:, cols]).sum())
        positives = int(truth[:, cols].sum())
        rows[kind] = {
            "positives": positives,
            "negative_pairs": int((~truth[:, cols]).sum()),
            "true_matches": tp,
            "false_matches": fp,
            "recall": tp / positives if positives else None,
            "precision": tp / (tp + fp) if tp + fp else None,
        }
    return rows


def evaluate(
    labelled: LabelledSet,
    settings: Sequence[Setting],
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``{setting label: score(...)}`` for each setting at its own radii."""
    results = {}
    for setting in settings:
        if progress is not None:
            progress(setting.label)
        dist = distances(labelled, setting)
        det = setting.detector
        results[setting.label] = score(
            labelled, predicted(dist, det.phash_radius, det.dhash_radius)
        )
    return results


def radius_sweep(
    labelled: LabelledSet,
    detector: Detector,
    phash_radii: Sequence[int],
    dhash_radii: Sequence[int | None],
) -> list[dict[str, Any]]:
    """Overall recall, precision and worst per-transform recall over a grid of radii."""
    dist = distances(labelled, Setting("sweep", detector))
    rows = []
    for p_radius in phash_radii:
        for d_radius in dhash_radii:
            scores = score(labelled, predicted(dist, p_radius, d_radius))
            per_kind = [v["recall"] for k, v in scores.items() if k not in ("all", LOOKALIKE)]
            rows.append(
                {
                    "phash_radius": p_radius,
                    "dhash_radius": d_radius,
                    "recall": scores["all"]["recall"],
                    "precision": scores["all"]["precision"],
                    "false_matches": scores["all"]["false_matches"],
                    "worst_transform_recall": min(per_kind) if per_kind else None,
                }
            )
    return rows
