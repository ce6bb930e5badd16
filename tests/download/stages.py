"""First stages for the download tests (balance is another part's): they emit balanced
candidates, or ready-made image records, so the real runner's funnel checks apply.

Module-level so Beam's multi-processing workers can unpickle them by reference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from openwit.config import BuildConfig, load_build_config
from openwit.schemas import candidate_schema, uid_for
from openwit.stage import Stage, StageContext, StageResult


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


class PoolCandidates(Stage):
    """Stand-in for ingest..balance: the JSONL pool lines (``url``, ``caption``) in
    ``inputs`` as balanced candidates, in files of 50 rows (several files, so the work
    spreads over Beam workers). The download half is tested and benchmarked on its own."""

    name = "candidates"
    config_keys = ("inputs",)
    rows_per_file = 50

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


class ReadyRecords(Stage):
    """Passes on Parquet files of image-stage records named in ``inputs`` (shard tests)."""

    name = "images"
    config_keys = ("inputs",)

    def run(self, ctx: StageContext) -> StageResult:
        total = 0
        for index, spec in enumerate(ctx.config.inputs):
            target = ctx.work_dir / f"part-{index:05d}.parquet"
            shutil.copyfile(spec.path, target)
            total += pq.ParquetFile(target).metadata.num_rows
        return StageResult(n_in=total)


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
