"""The demo's build part: serve the demo images on loopback and build shards from them.

Writes a few hundred captioned images (with a few transformed copies of evaluation images,
for the audit to find, and crawl junk for every check to reject) into a folder, serves it on
127.0.0.1, writes the inputs, a ``build.yaml`` that uses the queries part's list, and runs
``openwit build``'s own entry point (all eight stages). Inputs, URLs and config are the same
on every run, so a second run finds the build complete and reruns no stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from openwit.builddir import BuildDir
from openwit.config import BuildConfig, load_build_config
from openwit.demo import DemoContext
from openwit.demo.web import PREFERRED_PORT, ImageServer, plant_eval_copies, write_crawl_junk
from openwit.demo.world import write_eval_set, write_images
from openwit.io import atomic_write_text

DEMO_IMAGES = 600
EVAL_PER_CLASS = 20
PLANTED = 6


def _write_inputs(images: list, base_url: str, web: Path, out: Path) -> list[dict[str, Any]]:
    from openwit.demo.inputs import write_demo_inputs

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
        # Low enough that the head queries ("a", "of") go over it: the report shows the cap.
        "balance": {"max_per_query": 100},
        "download": {
            "allow_private_networks": True,  # the demo server is on loopback
            "timeout_s": 5,
            "per_host_concurrency": 16,
            "per_host_requests_per_s": 0,  # one host, our own: no politeness needed
            "threads_per_worker": 16,
            "records_per_unit": 100,
        },
        # The demo's model sees 32 x 32 pixels: 128-pixel images decode several times faster
        # than the default 256 in the trainer's data worker, and look the same to it.
        "image": {"resize_max_side": 128},
        "dedup": {
            "eval_sets": {name: str(path) for name, path in ctx.eval_sets.items()},
            "decontaminate": False,
        },
        "shards": {"samples_per_shard": 100},
        "card": {"pretty_name": "openwit demo: coloured shapes"},
    }
    path = ctx.out / "build.yaml"
    atomic_write_text(path, yaml.safe_dump(raw, sort_keys=False), skip_if_same=True)
    return load_build_config(path)


def run(ctx: DemoContext) -> str:
    from openwit.build import run_build
    from openwit.console import print_funnel, stdout

    if ctx.queries is None:
        raise RuntimeError("the demo's build part needs the queries part's list (ctx.queries)")

    web = ctx.out / "web"
    images = write_images(web, DEMO_IMAGES, seed=0)
    if not ctx.eval_sets:
        ctx.eval_sets["shapes"] = write_eval_set(ctx.out / "eval" / "shapes", EVAL_PER_CLASS)
    first_eval = next(iter(ctx.eval_sets.values()))
    planted = plant_eval_copies(first_eval, web, PLANTED)
    junk = write_crawl_junk(web, images)
    with ImageServer(web, PREFERRED_PORT) as server:
        if server.moved:
            stdout.print(
                f"note: port {PREFERRED_PORT} is taken; the demo's images are served on "
                f"{server.base_url} instead, so their URLs change and the build reruns",
                highlight=False,
            )
        base_url = server.base_url
        inputs = _write_inputs(images + planted + junk, base_url, web, ctx.out)
        config = _config(ctx, inputs, ctx.queries)
        outcome = run_build(config, report=False)  # the report part writes it, with more
    print_funnel(outcome.funnel, outcome.manifest)
    build = BuildDir(config.out)
    ctx.build_dir, ctx.shards = Path(build.root), Path(build.shards_dir)  # always local
    sizes = build.shard_sizes()
    samples = sum(sizes.values())
    rejected = sum(c.n_rejected for c in outcome.funnel.stages.values())
    ctx.results["build"] = {
        "samples": samples,
        "shards": len(sizes),
        "rejected": rejected,
        "base_url": base_url,
        "stages_run": outcome.ran,
    }
    reused = "" if outcome.ran else " (complete from an earlier run: no stage rerun)"
    return (
        f"{samples} samples in {len(sizes)} shards from {len(images) + len(planted)} images "
        f"and {len(junk)} junk links served, {rejected} rejected{reused} -> {ctx.shards}"
    )
