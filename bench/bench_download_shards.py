"""Shard writing, MB/s: one webdataset shard (tar of KEY.jpg/.txt/.json, Parquet index,
stats, atomic renames) against copying a file of the same size.

Both write to the same temporary directory (page cache, no fsync), so the ratio is the
cost of building the tar members and the index over moving the bytes.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from common import emit, install_guard, stored_sample

install_guard()

SAMPLES = 2000
REPEATS = 3


def sample_records() -> list[dict]:
    rng = random.Random(0)
    records = []
    for index in range(SAMPLES):
        size = rng.randint(8_000, 30_000)  # stored 256 px JPEGs are 8-30 kB
        image = b"\xff\xd8\xff\xe0" + os.urandom(size)
        records.append({**stored_sample(rng, index, image), "key": f"{index:09d}"})
    records.sort(key=lambda r: r["uid"])
    return records


def best_time(fn) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    from openwit.pipeline.shard.tars import write_shard

    records = sample_records()
    with tempfile.TemporaryDirectory(prefix="openwit-bench-shards-") as tmp:
        root = Path(tmp)
        counter = iter(range(10**6))

        def write() -> None:
            write_shard(str(root / "shards"), next(counter), records, {})

        (root / "shards").mkdir()
        write()  # warm up (imports, page cache)
        shard_s = best_time(write)
        tar_bytes = (root / "shards" / "00000.tar").stat().st_size
        source = root / "source.bin"
        source.write_bytes(os.urandom(tar_bytes))

        def copy() -> None:
            shutil.copyfile(source, root / "copy.bin")

        copy_s = best_time(copy)
    megabytes = tar_bytes / 1e6
    emit(
        "shard_write_mb_per_s",
        megabytes / shard_s,
        "MB/s",
        "shutil.copyfile of a file of the same size",
        megabytes / copy_s,
        samples=SAMPLES,
        tar_mb=round(megabytes, 1),
    )


if __name__ == "__main__":
    main()
