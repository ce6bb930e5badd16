"""Writing a shard's tar: a hand-written USTAR writer against Python's ``tarfile`` (and
webdataset's ``TarWriter``), on a realistic shard, and the share of the shard stage.

The shard stage writes its tars with ``tarfile`` (``pipeline.shard.tars.write_tar``); until
2026-12 it had the hand-written writer below, which gives the same bytes. It is kept here
only to measure what it would save (docs/decisions.md has the decision).

A shard of ``SAMPLES`` samples (a ~15 kB JPEG, its caption and its JSON each), as the
shard stage writes it: once, from a stream, to a file (page cache, no fsync). The
variants alternate, ``REPEATS`` times each; figures are medians of CPU time
(``time.process_time``), since the machine is shared.

Figures:
- ``tar_write_mb_per_s``: the hand-written writer against ``tarfile`` as the shard stage
  uses it (the same members, the same fixed USTAR headers: byte-identical output).
- ``tar_write_mb_per_s_vs_webdataset``: the same against ``webdataset.TarWriter`` (its
  own header fields and member order; mtime fixed to 0).
- ``shard_stage_ms_per_sample``: the shard stage's work for one shard (``ShardCore``:
  read the samples' metadata, their stored bytes from the download's part file, write
  tar, Parquet index and digest) with the hand-written writer, against the stage as it is.
  ``tar_share`` is the share of the stage's time the writer choice moves; the saving per
  sample is compared with the build's CPU per sample (``bench_libs_build_cpu``) in
  docs/decisions.md.
- ``tar_read_mb_per_s``: the trainer's own tar reader (``openwit.train.tar_reader``)
  reading every member of that shard, against ``tarfile`` iterating it and reading each
  member (what webdataset's expander does); for the trainer, not the build.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from common import emit, install_guard, stored_sample

install_guard()

SAMPLES = int(os.environ.get("OPENWIT_BENCH_SHARD_SAMPLES", "10000"))
REPEATS = 3


BLOCK = 512
RECORD = 20 * BLOCK  # tar's record size: archives end on a multiple of it


def _header_template() -> tuple[bytes, int]:
    """A USTAR header of a regular file, mode 0444, owner 0, mtime 0, size and name empty;
    the checksum field counted as spaces. Returns it and its byte sum."""
    header = bytearray(BLOCK)
    header[100:148] = b"0000444\x00" + b"0000000\x00" * 2 + b"\x00" * 12 + b"00000000000\x00"
    header[148:156] = b"        "
    header[156] = ord("0")
    header[257:265] = b"ustar\x0000"
    return bytes(header), sum(header)


TEMPLATE, TEMPLATE_SUM = _header_template()


def hand_write_tar(stream: IO[bytes], members: Iterable[tuple[str, bytes]]) -> int:
    """The hand-written writer: headers from a template, name and size filled in."""
    from openwit.pipeline.shard.tars import MEMBER_NAME, UnsafeMemberName

    offset = 0
    for name, data in members:
        if not MEMBER_NAME.match(name):
            raise UnsafeMemberName(f"refusing tar member name {name!r}")
        encoded, size_field = name.encode("ascii"), b"%011o\x00" % len(data)
        header = bytearray(TEMPLATE)
        header[0 : len(encoded)] = encoded
        header[124:136] = size_field
        header[148:155] = b"%06o\x00" % (TEMPLATE_SUM + sum(encoded) + sum(size_field))
        padding = -len(data) % BLOCK
        stream.write(bytes(header))
        stream.write(data)
        stream.write(b"\x00" * padding)
        offset += BLOCK + len(data) + padding
    end = 2 * BLOCK + -(offset + 2 * BLOCK) % RECORD  # end marker, then the last record
    stream.write(b"\x00" * end)
    return offset + end


def webdataset_write(stream: IO[bytes], samples: list[dict]) -> None:
    import webdataset as wds

    with wds.TarWriter(stream, user="", group="", mtime=0.0, encoder=False) as writer:
        for sample in samples:
            writer.write(sample)


def sample_records() -> list[dict]:
    rng = random.Random(0)
    records = []
    for index in range(SAMPLES):
        size = rng.randint(8_000, 22_000)  # stored 256 px JPEGs: ~15 kB on average
        records.append(stored_sample(rng, index, b"\xff\xd8\xff\xe0" + rng.randbytes(size)))
    records.sort(key=lambda r: r["uid"])
    for index, record in enumerate(records):
        record["key"] = f"{index:09d}"
    return records


def read_with_reader(path: Path) -> int:
    from openwit.train.tar_reader import iter_members

    with open(path, "rb") as stream:
        return sum(len(data) for _, data in iter_members(stream))


def read_with_tarfile(path: Path) -> int:
    import tarfile

    total = 0
    with tarfile.open(path, "r|") as tar:
        for member in tar:
            if member.isfile():
                total += len(tar.extractfile(member).read())  # type: ignore[union-attr]
    return total


def cpu_seconds(fn: Callable[[], object]) -> float:
    started = time.process_time()
    fn()
    return time.process_time() - started


def build_dir_with_one_shard(root: Path, records: list[dict]):  # type: ignore[no-untyped-def]
    """A build directory holding what the shard stage reads: the download's part file
    (the bytes) and the image stage's (metadata pointing at them); its one shard unit."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from openwit.pipeline.shard.stage import plan_shards
    from openwit.schemas import candidate_schema

    download = root / "stages" / "download" / "a" / "part-00000.parquet"
    image = root / "stages" / "image" / "a" / "part-00000.parquet"
    download.parent.mkdir(parents=True)
    image.parent.mkdir(parents=True)
    pq.write_table(pa.table({"image": [r["image"] for r in records]}), download)
    schema = candidate_schema("image")
    rows = [
        {**r, "image_file": "stages/download/a/part-00000.parquet", "image_row": i}
        for i, r in enumerate(records)
    ]
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), image)
    (unit,) = plan_shards([str(image)], SAMPLES)
    return unit


def main() -> None:
    from openwit.pipeline.shard import tars
    from openwit.pipeline.shard.stage import ShardCore

    records = sample_records()
    members = list(tars._members(records))
    samples = [
        {
            "__key__": r["key"],
            "jpg": r["image"],
            "txt": r["text"].encode(),
            "json": json.dumps(tars.sample_metadata(r), sort_keys=True).encode(),
        }
        for r in records
    ]
    with tempfile.TemporaryDirectory(prefix="openwit-bench-tar-") as tmp:
        root = Path(tmp)
        path = root / "shard.tar"

        def to_file(write: Callable[[IO[bytes]], object]) -> Callable[[], None]:
            def run() -> None:
                with open(path, "wb") as stream:
                    write(stream)

            return run

        variants = {
            "hand": to_file(lambda s: hand_write_tar(s, members)),
            "tarfile": to_file(lambda s: tars.write_tar(s, members)),
            "webdataset": to_file(lambda s: webdataset_write(s, samples)),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        sizes = {}
        for _ in range(REPEATS):
            for name, run in variants.items():
                times[name].append(cpu_seconds(run))
                sizes[name] = path.stat().st_size
        same = _tar_bytes(hand_write_tar, members) == _tar_bytes(tars.write_tar, members)
        megabytes = sizes["hand"] / 1e6
        rate = {name: megabytes / statistics.median(t) for name, t in times.items()}
        emit(
            "tar_write_mb_per_s",
            rate["hand"],
            "MB/s",
            "tarfile as the shard stage writes (stream mode, the same fixed USTAR headers)",
            rate["tarfile"],
            samples=SAMPLES,
            tar_mb=round(megabytes, 1),
            byte_identical=same,
            us_per_member={
                n: round(statistics.median(t) / len(members) * 1e6, 2) for n, t in times.items()
            },
        )
        emit(
            "tar_write_mb_per_s_vs_webdataset",
            rate["hand"],
            "MB/s",
            "webdataset.TarWriter (mtime 0, no encoder)",
            rate["webdataset"],
            samples=SAMPLES,
        )

        with open(path, "wb") as stream:
            tars.write_tar(stream, members)
        reads: dict[str, list[float]] = {"reader": [], "tarfile": []}
        for _ in range(REPEATS):
            for name, read in (("reader", read_with_reader), ("tarfile", read_with_tarfile)):
                reads[name].append(cpu_seconds(lambda read=read: read(path)))
        emit(
            "tar_read_mb_per_s",
            megabytes / statistics.median(reads["reader"]),
            "MB/s",
            "tarfile iterating the shard and reading every member",
            megabytes / statistics.median(reads["tarfile"]),
            samples=SAMPLES,
            us_per_member={
                n: round(statistics.median(t) / len(members) * 1e6, 2) for n, t in reads.items()
            },
        )

        unit = build_dir_with_one_shard(root / "build", records)
        build_dir = str(root / "build")
        stage: dict[str, list[float]] = {"hand": [], "tarfile": []}
        original = tars.write_tar
        try:
            for _ in range(REPEATS):
                for name, writer in (("hand", hand_write_tar), ("tarfile", original)):
                    tars.write_tar = writer  # write_shard looks it up in its module
                    shutil.rmtree(root / "build" / "shards", ignore_errors=True)  # no shard kept
                    core = ShardCore(build_dir, SAMPLES)  # a fresh core: nothing cached
                    stage[name].append(cpu_seconds(lambda core=core: core.run(unit)))
        finally:
            tars.write_tar = original
    ours, theirs = statistics.median(stage["hand"]), statistics.median(stage["tarfile"])
    emit(
        "shard_stage_ms_per_sample",
        ours / SAMPLES * 1000,
        "ms",
        "the shard stage as it is (tarfile writing the tar)",
        theirs / SAMPLES * 1000,
        samples=SAMPLES,
        saved_ms_per_sample=round((theirs - ours) / SAMPLES * 1000, 4),
        tar_share=round((theirs - ours) / theirs, 4),
        hand_runs_s=[round(v, 3) for v in stage["hand"]],
        tarfile_runs_s=[round(v, 3) for v in stage["tarfile"]],
    )


def _tar_bytes(write: Callable[[IO[bytes], list], int], members: list) -> bytes:
    buffer = io.BytesIO()
    write(buffer, members)
    return buffer.getvalue()


if __name__ == "__main__":
    main()
