"""The demo's build part: serve the demo images on loopback and build shards from them.

Writes a few hundred captioned images (and a few transformed copies of evaluation images,
for the audit to find) into a folder, serves it on 127.0.0.1, writes the inputs, a
``build.yaml`` that uses the queries part's list, and runs ``openwit build``'s own entry
point (all eight stages).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from openwit.config import BuildConfig, load_build_config
from openwit.demo import DemoContext
from openwit.demo_data import (
    ImageServer,
    plant_eval_copies,
    write_eval_set,
    write_images,
)

DEMO_IMAGES = 300
EVAL_PER_CLASS = 10
PLANTED = 6


def _write_inputs(images: list, base_url: str, web: Path, out: Path) -> list[dict[str, Any]]:
    from openwit.pipeline.demo_inputs import write_demo_inputs

    # The crawl (WAT) and the messy pool; returns build.yaml's ``inputs:``.
    return write_demo_inputs(out_dir=out, images=images, image_root=web, base_url=base_url)


def _config(ctx: DemoContext, inputs: list[dict[str, Any]], queries: Path) -> BuildConfig:
    raw = {
        "out": str(ctx.out / "build"),
        "queries": str(queries),
        "inputs": inputs,
        # lid.176 gives short English captions ("photo of a blue star") scores of 0.25-0.5;
        # the default 0.5 is tuned for real alt text and would drop a third of the demo.
        "text": {"min_lang_score": 0.2},
        "download": {
            "allow_private_networks": True,  # the demo server is on loopback
            "timeout_s": 5,
            "per_host_concurrency": 16,
            "per_host_requests_per_s": 0,  # one host, our own: no politeness needed
            "threads_per_worker": 16,
            "records_per_unit": 100,
        },
        "dedup": {
            "eval_sets": {name: str(path) for name, path in ctx.eval_sets.items()},
            "decontaminate": False,
        },
        "shards": {"samples_per_shard": 100},
    }
    path = ctx.out / "build.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return load_build_config(path)


def run(ctx: DemoContext) -> str:
    from openwit.build import run_build
    from openwit.console import print_funnel

    if ctx.queries is None:
        raise RuntimeError("the demo's build part needs the queries part's list (ctx.queries)")

    web = ctx.out / "web"
    images = write_images(web, DEMO_IMAGES, seed=0)
    if not ctx.eval_sets:
        ctx.eval_sets["shapes"] = write_eval_set(ctx.out / "eval" / "shapes", EVAL_PER_CLASS)
    first_eval = next(iter(ctx.eval_sets.values()))
    planted = plant_eval_copies(first_eval, web, PLANTED)
    with ImageServer(web) as server:
        inputs = _write_inputs(images + planted, server.base_url, web, ctx.out)
        config = _config(ctx, inputs, ctx.queries)
        outcome = run_build(config)
    print_funnel(outcome.funnel, outcome.manifest)
    ctx.build_dir = Path(config.out)
    ctx.shards = ctx.build_dir / "shards"
    sizes = json.loads((ctx.shards / "sizes.json").read_text())
    samples = sum(sizes.values())
    rejected = sum(c.n_rejected for c in outcome.funnel.stages.values())
    ctx.results["build"] = {"samples": samples, "shards": len(sizes), "rejected": rejected}
    return (
        f"{samples} samples in {len(sizes)} shards from {len(images) + len(planted)} served "
        f"images, {rejected} rejected -> {ctx.shards}"
    )
