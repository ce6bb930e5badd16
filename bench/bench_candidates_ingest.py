"""WAT ingest records/s: openwit's FastWARC reader against the same extraction over warcio.

The file is a Common Crawl-style WAT (one gzip member per record) of 3,000 pages with 15
image links each, relative and absolute. The baseline is the same per-record code
(:func:`openwit.pipeline.ingest.readers.warc.wat_record_pairs`) fed by warcio's ArchiveIterator
instead of FastWARC's, so the figure is the WARC library's share. Also measured: the whole
ingest stage on the offline DirectRunner (reading, dedup combine, Parquet writing) against
the reader alone.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from common import emit, install_guard

install_guard()

PAGES = 3_000
LINKS = 15


def write_wat(path: Path) -> int:
    from openwit.demo.inputs import warc_record, wat_payload

    records = [warc_record(0, "warcinfo", None, b"software: bench\r\n")]
    for page in range(PAGES):
        target = f"https://site{page % 97}.example.com/section/page-{page}.html"
        links = [
            {
                "path": "IMG@/src",
                "url": f"img/{page}-{i}.jpg"
                if i % 2
                else f"https://cdn.example.com/{page}/{i}.jpg",
                "alt": f"a photo of item {i} on page {page} with a short caption",
            }
            for i in range(LINKS)
        ]
        links.append({"path": "A@/href", "url": "/next", "text": "next page"})
        records.append(warc_record(len(records), "metadata", target, wat_payload(target, links)))
    path.write_bytes(b"".join(records))
    return PAGES * LINKS


def read_with_fastwarc(path: Path) -> int:
    from openwit.pipeline.ingest.readers.warc import read_wat

    stats: dict[str, int] = {}
    with open(path, "rb") as handle:
        return sum(1 for _ in read_wat(handle, str(path), True, stats))


def read_with_warcio(path: Path) -> int:
    from warcio.archiveiterator import ArchiveIterator

    from openwit.pipeline.ingest.readers.warc import wat_record_pairs

    count = 0
    with open(path, "rb") as handle:
        for offset, record in enumerate(ArchiveIterator(handle)):
            if record.rec_type != "metadata":
                continue
            payload = record.content_stream().read()
            target = record.rec_headers.get_header("WARC-Target-URI")
            count += sum(1 for _ in wat_record_pairs(payload, target, str(path), offset, True))
    return count


def best_time(function, *args, rounds: int = 3) -> tuple[float, int]:
    best, result = float("inf"), 0
    for _ in range(rounds):
        started = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - started)
    return best, result


def stage_time(path: Path, tmp: Path) -> float:
    from openwit.config import BuildConfig
    from openwit.pipeline.ingest.stage import IngestStage
    from openwit.stage import StageContext

    work = tmp / "work"
    work.mkdir()
    config = BuildConfig(inputs=[{"path": str(path)}])
    started = time.perf_counter()
    IngestStage().run(StageContext("ingest", config, tmp, work, []))
    return time.perf_counter() - started


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.warc.wat.gz"
        records = write_wat(path)
        ours, n_ours = best_time(read_with_fastwarc, path)
        theirs, n_theirs = best_time(read_with_warcio, path)
        assert n_ours == n_theirs == records, (n_ours, n_theirs, records)
        emit(
            "ingest_wat_records_per_s",
            records / ours,
            "records/s",
            "same extraction over warcio",
            records / theirs,
            records=records,
            file_mb=round(path.stat().st_size / 1e6, 2),
        )
        emit(
            "ingest_stage_wat_records_per_s",
            records / stage_time(path, Path(tmp)),
            "records/s",
            "FastWARC reader alone",
            records / ours,
        )


if __name__ == "__main__":
    main()
