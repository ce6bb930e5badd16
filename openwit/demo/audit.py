"""The demo's audit part: the overlap audit of the demo eval set against the demo shards.

It runs after the build and train parts: the build part plants transformed copies of a few
eval images into its pool, so the audit has overlap to find. Where no earlier part left
shards (the part run on its own, as its tests do), it writes a small shard set of its own
from the demo world -- captioned images plus planted eval copies.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from openwit.demo import DemoContext

#: ``openwit.demo.web.plant_eval_copies`` names its copies so; the URL tells them apart.
PLANTED_MARK = "eval-copy-"
POOL_IMAGES = 60
EVAL_PER_CLASS = 6
PLANTED = 5


def _stored_jpeg(path: Path) -> bytes:
    from PIL import Image

    from openwit.dedup.transforms import store

    with Image.open(path) as image:
        buffer = io.BytesIO()
        store(image).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def self_contained_case(root: Path) -> tuple[Path, dict[str, Path], int]:
    """Shards with planted eval copies, and the eval set: ``(shards, eval sets, planted)``."""
    from openwit.demo import web, world
    from openwit.demo.shards import DEMO_URL, write_shards

    eval_root = world.write_eval_set(root / "eval" / "shapes", EVAL_PER_CLASS)
    images = world.write_images(root / "pool", POOL_IMAGES)
    planted = web.plant_eval_copies(eval_root, root / "pool", PLANTED)
    samples = [
        (_stored_jpeg(image.path), image.caption, DEMO_URL.format(image.path.name))
        for image in [*images, *planted]
    ]
    shards = write_shards(samples, root / "shards", per_shard=40)
    return shards, {"shapes": eval_root}, len(planted)


def _checkpoint(ctx: DemoContext) -> Path | None:
    if ctx.checkpoint is None:
        return None
    try:
        from openwit.train.zeroshot import zero_shot_predictions  # noqa: F401
    except ImportError:
        return None
    return ctx.checkpoint


def planted_in_shards(shards: Path) -> int:
    """How many planted eval copies made it into the shards (by their URL)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    total = 0
    for path in sorted(shards.glob("*.parquet")):
        urls = pq.read_table(path, columns=["url"]).column("url")
        total += pc.sum(pc.match_substring(urls, PLANTED_MARK)).as_py() or 0
    return total


def run(ctx: DemoContext) -> str:
    from openwit.dedup.audit import AuditRequest, run_audit

    shards, eval_sets = ctx.shards, dict(ctx.eval_sets)
    if shards is None or not eval_sets or not Path(shards).is_dir():
        shards, eval_sets, _ = self_contained_case(ctx.out / "audit-data")
    shards = Path(shards)
    checkpoint = _checkpoint(ctx)
    out = ctx.out / "audit"
    audit = run_audit(
        AuditRequest(
            shards=shards,
            eval_sets={k: Path(v) for k, v in eval_sets.items()},
            out=out,
            checkpoint=checkpoint,
            model=ctx.model if checkpoint else None,
            progress=False,
        )
    )
    matches = [m for s in audit["sets"] for m in s["matches"]]
    planted = planted_in_shards(shards)
    found = len({m["url"] for m in matches if PLANTED_MARK in (m["url"] or "")})
    others = len({m["url"] for m in matches if PLANTED_MARK not in (m["url"] or "")})
    overlap = sum(s["n_overlap"] for s in audit["sets"])
    ctx.audit_dir = out
    ctx.results["audit"] = {
        "report": str(out / "index.html"),
        "overlapping_eval_images": overlap,
        "planted_copies_in_shards": planted,
        "planted_copies_found": found,
        "other_matched_samples": others,
        "accuracy": checkpoint is not None,
    }
    accuracy = "with zero-shot accuracy" if checkpoint else "no checkpoint: overlap only"
    return (
        f"found {found} of {planted} planted eval copies in {audit['n_shard_samples']} shard "
        f"samples (+{others} look-alike matches); {overlap} eval images in Overlap; "
        f"{accuracy}; {out.name}/index.html"
    )
