"""First stages for the download tests (balance is another part's): they emit balanced
candidates, or ready-made download records, so the real runner's funnel checks apply.

Module-level so Beam's workers can unpickle them by reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openwit.config import BuildConfig, load_build_config
from openwit.outputs import UnitOutput, rejections_table
from openwit.schemas import candidate_schema, uid_for
from openwit.stage import Stage, StageContext, StageResult
from openwit.unit_transform import UnitWork, run_units
from openwit.units import WorkUnit


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


def candidate(url: str, caption: str, source: str = "pool.jsonl", offset: int = 0) -> dict:
    """A record as the balance stage passes it on."""
    return {**pool_candidate(url, caption, source, offset), "query_ids": [0]}


def write_pool(path: Path, urls: list[str]) -> Path:
    """A JSONL pool: one ``{"url", "caption"}`` line per URL."""
    with path.open("w", encoding="utf-8") as handle:
        for index, url in enumerate(urls):
            caption = f"picture number {index} of a coloured shape"
            handle.write(json.dumps({"url": url, "caption": caption}) + "\n")
    return path


class PoolCore(UnitWork):
    """A unit: lines ``start:stop`` of a JSONL pool, as balanced candidates in uid order
    (the order ingest gives a build)."""

    def run(self, unit: WorkUnit) -> UnitOutput:
        path, url_column, text_column, start, stop = unit.payload
        lines = Path(path).read_text(encoding="utf-8").splitlines()[start:stop]
        records = []
        for offset, line in enumerate(lines, start):
            item = json.loads(line)
            records.append(
                pool_candidate(item[url_column], item[text_column], Path(path).name, offset)
            )
        table = pa.Table.from_pylist(records, schema=candidate_schema("balance")).sort_by("uid")
        return UnitOutput(table, rejections_table([]), n_in=len(lines))


class PoolCandidates(Stage):
    """Stand-in for ingest..balance: the JSONL pool lines (``url``, ``caption``) in
    ``inputs`` as balanced candidates, in units of 50 lines (several, so the work spreads
    over Beam workers). The download half is tested and benchmarked on its own."""

    name = "candidates"
    config_keys = ("inputs",)
    rows_per_file = 50

    def run(self, ctx: StageContext) -> StageResult:
        payloads = []
        for spec in ctx.config.inputs:
            count = len(Path(spec.path).read_text(encoding="utf-8").splitlines())
            for start in range(0, count, self.rows_per_file):
                stop = min(count, start + self.rows_per_file)
                payloads.append((spec.path, spec.url_column, spec.text_column, start, stop))
        units = [WorkUnit(i, payload=p) for i, p in enumerate(payloads)]
        schema = candidate_schema("balance")
        if units:
            with ctx.new_pipeline(len(units)) as pipeline:
                run_units(pipeline, "Pool", units, None, ctx.run_units_fn(PoolCore, schema))
        return StageResult(units=len(units))


class FileCore(UnitWork):
    """A unit: one Parquet file named in ``inputs``, passed on as it is."""

    def run(self, unit: WorkUnit) -> UnitOutput:
        table = pq.read_table(unit.payload)
        return UnitOutput(table, rejections_table([]), n_in=table.num_rows)


class ReadyDownloads(Stage):
    """Passes on Parquet files of download-stage records (image bytes included) named in
    ``inputs``: the image and shard stages' tests start from it."""

    name = "download"
    config_keys = ("inputs",)

    def run(self, ctx: StageContext) -> StageResult:
        units = [WorkUnit(i, payload=spec.path) for i, spec in enumerate(ctx.config.inputs)]
        schema = candidate_schema("download")
        with ctx.new_pipeline(len(units)) as pipeline:
            run_units(pipeline, "Files", units, None, ctx.run_units_fn(FileCore, schema))
        return StageResult(units=len(units))


def build_config(tmp_path: Path, pool: Path, **sections: dict[str, Any]) -> BuildConfig:
    """A build config for the download tests: private networks allowed, short budgets."""
    download = {
        "allow_private_networks": True,
        "timeout_s": 2.0,
        "retry_backoff_s": 0.05,
        "per_host_concurrency": 16,
        "per_host_requests_per_s": 0,
        "threads_per_worker": 16,
        "records_per_unit": 8,
        **sections.pop("download", {}),
    }
    raw = {
        "out": str(tmp_path / "out"),
        "inputs": [{"path": str(pool), "format": "jsonl"}],
        "download": download,
        "shards": {"samples_per_shard": 10, **sections.pop("shards", {})},
        **sections,
    }
    tmp_path.mkdir(parents=True, exist_ok=True)
    config_path = tmp_path / "build.yaml"
    config_path.write_text(json.dumps(raw))  # JSON is YAML
    return load_build_config(config_path)
