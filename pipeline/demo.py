"""The demo's build part: serve the demo images on loopback and build shards from them.

Writes a few hundred captioned images (and a few transformed copies of evaluation images,
for the audit to find) into a folder, serves it on 127.0.0.1, writes the inputs, a
queries file (unless the queries part made one) and a ``build.yaml``, and runs the real
build. Stages that are not built yet are left out: without the candidate stages a small
stand-in (:class:`PoolCandidates`) turns the pool file into balanced candidates, so the
download, image and shard stages still run on the real runner.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from openwit.config import BuildConfig, load_build_config
from openwit.demo import DemoContext
from openwit.demo_data import (
    ImageServer,
    iter_vocabulary,
    plant_eval_copies,
    write_eval_set,
    write_images,
    write_pool_jsonl,
)
from openwit.schemas import BUILD_STAGES, QUERY_SCHEMA, candidate_schema, uid_for
from openwit.stage import Stage, StageContext, StageResult

DEMO_IMAGES = 300
EVAL_PER_CLASS = 10
PLANTED = 6
MISSING = 3  # URLs that answer 404, so the funnel shows a rejection or two
CANDIDATE_STAGES = ("ingest", "text", "match", "balance")


def pool_candidate(url: str, text: str, source: str, offset: int) -> dict[str, Any]:
    """A pool line as a balanced candidate (English, no query matched yet)."""
    return {
        "uid": uid_for(url, text),
        "url": url,
        "text": text,
        "source": source,
        "source_offset": offset,
        "lang": "en",
        "lang_score": 1.0,
        "query_ids": [],
    }


class PoolCandidates(Stage):
    """Stand-in for ingest..balance: JSONL pool lines (``url``, ``caption``) -> candidates."""

    name = "pool"
    config_keys = ("inputs",)
    rows_per_file = 100

    def run(self, ctx: StageContext) -> StageResult:
        records = []
        for spec in ctx.config.inputs:
            source = Path(spec.path)
            lines = source.read_text(encoding="utf-8").splitlines()
            for offset, line in enumerate(lines):
                item = json.loads(line)
                url, text = item[spec.url_column], item[spec.text_column]
                records.append(pool_candidate(url, text, source.name, offset))
        schema = candidate_schema("balance")
        for start in range(0, max(len(records), 1), self.rows_per_file):
            table = pa.Table.from_pylist(records[start : start + self.rows_per_file], schema)
            pq.write_table(table, ctx.work_dir / f"part-{start // self.rows_per_file:05d}.parquet")
        return StageResult(n_in=len(records))


def _write_queries(path: Path) -> Path:
    rows = [{"query": w, "source": "unigram", "count": 1, "score": 1.0} for w in iter_vocabulary()]
    pq.write_table(pa.Table.from_pylist(rows, schema=QUERY_SCHEMA), path)
    return path


def _write_inputs(images: list, base_url: str, web: Path, out: Path) -> list[dict[str, Any]]:
    try:
        from openwit.pipeline.demo_inputs import write_demo_inputs
    except ImportError:  # the candidate stages' demo inputs are not built on this branch
        pool = write_pool_jsonl(images, base_url, web, out / "pool.jsonl")
        with pool.open("a", encoding="utf-8") as handle:
            for index in range(MISSING):
                url = f"{base_url}/img/missing-{index}.jpg"
                handle.write(json.dumps({"url": url, "caption": "a photo that went missing"}))
                handle.write("\n")
        return [{"path": str(pool), "format": "jsonl"}]
    # The candidates part writes the crawl and pool inputs; it returns build.yaml's ``inputs:``.
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


def _stages() -> tuple[list[Stage], bool]:
    """The built stages (stand-in first if needed); True when the whole build exists."""
    from openwit.build import load_stage
    from openwit.errors import NotBuiltYet

    loaded: dict[str, Stage] = {}
    for name in BUILD_STAGES:
        try:
            loaded[name] = load_stage(name)
        except NotBuiltYet:
            continue
    if len(loaded) == len(BUILD_STAGES):
        return list(loaded.values()), True
    front: list[Stage] = [loaded[n] for n in CANDIDATE_STAGES if n in loaded]
    if len(front) < len(CANDIDATE_STAGES):
        front = [PoolCandidates()]
    back = [loaded[n] for n in BUILD_STAGES if n not in CANDIDATE_STAGES and n in loaded]
    return front + back, False


def run(ctx: DemoContext) -> str:
    from openwit.build import run_build
    from openwit.console import print_funnel
    from openwit.runner import BuildRunner

    web = ctx.out / "web"
    images = write_images(web, DEMO_IMAGES, seed=0)
    if not ctx.eval_sets:
        ctx.eval_sets["shapes"] = write_eval_set(ctx.out / "eval" / "shapes", EVAL_PER_CLASS)
    first_eval = next(iter(ctx.eval_sets.values()))
    planted = plant_eval_copies(first_eval, web, PLANTED)
    queries = ctx.queries or _write_queries(ctx.out / "queries.parquet")
    stages, complete = _stages()
    with ImageServer(web) as server:
        inputs = _write_inputs(images + planted, server.base_url, web, ctx.out)
        config = _config(ctx, inputs, queries)
        # The whole build goes through ``openwit build``'s own entry point once it exists.
        outcome = run_build(config) if complete else BuildRunner(config, stages).run()
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
