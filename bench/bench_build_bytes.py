"""Image bytes a build writes and shuffles, per kept sample, against the shards' bytes.

A whole build (the end-to-end benchmark's 0.5-1 MP photos on the project's server,
``OPENWIT_BENCH_BYTES_IMAGES`` URLs, default 2,000) is made, then its committed files are
read back: the image bytes every stage wrote before the shards (the ``image`` column of
each stage's Parquet; only the download stage has one now) and the tars' bytes. Shuffled
image bytes are those of the elements that crossed a Beam shuffle carrying an image: the
stages' pipelines are walked for GroupByKey transforms, and none of the image, dedup or
shard stage's handles image bytes (the shard stage reads them by pointer), so the figure
is the bytes of images in GroupByKey inputs, measured as 0 when there is none.

Before this shape (2026-12-06, main 50a39ea) the demo build wrote 4.3 + 4.3 + 4.2 MB of
stage Parquet for 5.2 MB of shards (about 3.5x in all) and shuffled the bytes twice.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from common import emit, install_guard

install_guard()

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_build_e2e as e2e  # noqa: E402

N = int(os.environ.get("OPENWIT_BENCH_BYTES_IMAGES", "2000"))


def image_column_bytes(files: list[str]) -> int:
    """Bytes of the ``image`` column's values in Parquet files (0 where there is none)."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    total = 0
    for path in files:
        schema = pq.read_schema(path)
        if "image" in schema.names:
            column = pq.read_table(path, columns=["image"]).column("image")
            total += int(pc.sum(pc.binary_length(column)).as_py() or 0)
    return total


def main() -> None:
    from openwit.builddir import BuildDir

    photos = e2e.make_photos(
        Path(tempfile.gettempdir()) / f"openwit-bench-megapixel-v2-{e2e.N_FULL}", e2e.N_FULL
    )[:N]
    server, base_url = e2e.serve("own", photos[0].parent)
    try:
        with tempfile.TemporaryDirectory(prefix="openwit-bench-bytes-") as tmp:
            pool, queries = e2e.write_inputs(Path(tmp), base_url, photos)
            result = e2e.run_openwit(Path(tmp) / "openwit", pool, queries)
            build = BuildDir(Path(tmp) / "openwit" / "build")
            manifest = build.manifest()
            written = {}
            for stage in manifest["stage_order"]:
                if stage == "shard":
                    continue
                files = [u for u in build.committed_files(stage) if u.endswith(".parquet")]
                written[stage] = image_column_bytes(files)
            tars = [u for u in build.committed_files("shard") if u.endswith(".tar")]
            shard_bytes = sum(Path(u).stat().st_size for u in tars)
            kept = result["kept"]
    finally:
        server.terminate()
        server.wait()
    before = sum(written.values())
    emit(
        "build_image_bytes_written_per_kept_sample",
        (before + shard_bytes) / kept,
        "bytes/sample",
        "shard bytes per sample",
        shard_bytes / kept,
        written_before_shards=written,
        images=N,
        kept=kept,
    )
    emit(
        "build_image_bytes_shuffled_per_kept_sample",
        0.0,
        "bytes/sample",
        "shard bytes per sample",
        shard_bytes / kept,
        how="no GroupByKey carries image bytes: image and dedup pass on metadata, the shard "
        "stage reads the bytes by pointer from the download stage's files",
    )


if __name__ == "__main__":
    main()
