"""The image stage hashes in worker processes or in threads, with the same results, and
loses no record when a worker dies."""

from __future__ import annotations

import os
import signal
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from openwit.beam import runs_in_this_process
from openwit.config import BuildConfig
from openwit.hashes.images import bytes_hashes, bytes_hashes_or_errors
from openwit.pipeline.download.resize import PillowResizer, ResizeSettings
from openwit.pipeline.image import hashpool
from openwit.pipeline.image.hashpool import (
    HashMemo,
    ProcessHasher,
    ThreadHasher,
    shared_hasher,
    start_process_hasher,
    stop_shared_hasher,
)
from openwit.pipeline.image.stage import STAGE, CheckUnits, ImageStage
from openwit.schemas import candidate_schema
from openwit.stage import StageContext
from openwit.units import plan_units
from tests.download.servers import photo

SIZES = [(640, 480), (480, 640), (300, 200), (150, 400), (900, 200), (1024, 768)]


def downloaded_records(count: int) -> list[dict]:
    resize = PillowResizer(ResizeSettings(256))
    records = []
    for index in range(count):
        width, height = SIZES[index % len(SIZES)]
        stored = resize(photo(width, height, seed=index))
        records.append(
            {
                "uid": f"{index:032x}",
                "url": f"http://127.0.0.1/{index}.jpg",
                "text": f"a photo, number {index}",
                "source": "pool.jsonl",
                "source_offset": index,
                "lang": "en",
                "lang_score": 1.0,
                "query_ids": [0],
                **stored.columns(),
            }
        )
    return records


@pytest.fixture(scope="module")
def download_output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("download")
    records = downloaded_records(60)
    records[2]["image"] = records[2]["image"][:600]  # a truncated JPEG of a 300x200 photo
    table = pa.Table.from_pylist(records, schema=candidate_schema("download"))
    pq.write_table(table, folder / "part-00000000.parquet", row_group_size=25)
    return folder / "part-00000000.parquet"


def run_image_stage(tmp_path, input_file, hash_processes):
    config = BuildConfig.model_validate({"image": {"hash_processes": hash_processes}})
    work = tmp_path / f"work-{hash_processes}"
    work.mkdir()
    ctx = StageContext(STAGE, config, tmp_path, work, [input_file])
    ImageStage().run(ctx)
    kept = pa.concat_tables(pq.read_table(p) for p in sorted(work.glob("part-*.parquet")))
    rejected = pa.concat_tables(pq.read_table(p) for p in sorted(work.glob("rejections-*")))
    return (
        {
            r["uid"]: (r["phash"], r["dhash"])
            for r in kept.select(["uid", "phash", "dhash"]).to_pylist()
        },
        {r["uid"]: r["reason"] for r in rejected.to_pylist()},
    )


def test_processes_and_threads_give_the_same_hashes_and_rejections(tmp_path, download_output):
    in_processes = run_image_stage(tmp_path, download_output, "on")
    in_threads = run_image_stage(tmp_path, download_output, "off")
    assert in_processes == in_threads
    kept, rejected = in_processes
    assert len(kept) + len(rejected) == 60
    assert rejected[f"{2:032x}"] == "decode_error"
    assert rejected[f"{3:032x}"] == "image_too_small"  # 150x400
    assert rejected[f"{4:032x}"] == "bad_aspect_ratio"  # 900x200
    assert len(rejected) == 1 + 10 + 10
    records = {r["uid"]: r for r in downloaded_records(60)}
    for uid, hashes in kept.items():
        assert hashes == bytes_hashes(records[uid]["image"])


def test_the_runner_decides_where_hashing_runs():
    assert runs_in_this_process("DirectRunner", {})
    assert runs_in_this_process("DirectRunner", {"direct_running_mode": "multi_threading"})
    assert not runs_in_this_process("DirectRunner", {"direct_running_mode": "multi_processing"})
    assert not runs_in_this_process("DataflowRunner", {})


def test_errors_come_back_as_text_in_their_place():
    good = downloaded_records(1)[0]["image"]
    results = bytes_hashes_or_errors([good, b"not an image", good])
    assert results[0] == results[2] == bytes_hashes(good)
    assert isinstance(results[1], str) and results[1].startswith("UnidentifiedImageError")


def test_a_killed_worker_loses_no_record(tmp_path, download_output):
    """A worker killed mid-stage (out of memory, say): its batches are hashed in the
    stage's own process and every record still ends up kept or rejected."""
    work = tmp_path / "work"
    work.mkdir()
    fn = CheckUnits(200, 3.0, str(work), candidate_schema(STAGE), processes=True)
    fn.setup()
    try:
        hasher = fn.hasher
        assert isinstance(hasher, ProcessHasher)
        for worker in hasher._workers:  # the test kills the real workers
            os.kill(worker.pid, signal.SIGKILL)
        fn.start_bundle()
        for unit in plan_units([download_output], 25):
            fn.process(unit)
        fn.finish_bundle()
    finally:
        fn.teardown()
        stop_shared_hasher()  # the one whose workers were killed
    kept = sum(pq.ParquetFile(p).metadata.num_rows for p in work.glob("part-*.parquet"))
    rejected = sum(pq.ParquetFile(p).metadata.num_rows for p in work.glob("rejections-*"))
    assert kept + rejected == 60
    assert kept == 60 - 1 - 10 - 10  # the truncated JPEG, the small and the wide images


def test_workers_that_cannot_start_mean_threads(monkeypatch):
    import subprocess

    def refuse(*args, **kwargs):
        raise OSError("no processes here")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    assert start_process_hasher(2) is None


def test_a_worker_hashes_exactly_what_this_process_would():
    records = downloaded_records(8)
    images = [r["image"] for r in records] + [b"not an image"]
    hasher = ProcessHasher(2)
    try:
        futures = [hasher.submit(images[i : i + 3]) for i in range(0, len(images), 3)]
        results = [h for f in futures for h in f.result(timeout=60)]
    finally:
        hasher.shutdown()
    assert results[:-1] == bytes_hashes_or_errors(images[:-1])
    assert results[-1].startswith("UnidentifiedImageError")
    assert all(w.returncode == 0 for w in hasher._workers)  # ended by their input's end


def test_the_memo_hashes_part_files_ahead_within_its_bounds(download_output):
    table = pq.read_table(download_output, columns=["sha256", "image"]).to_pylist()
    memo = HashMemo(max_entries=100)
    hasher = ProcessHasher(1)  # the worker reads the part file itself
    try:
        assert not memo.offer(hasher, str(download_output), 101)  # over max_entries
        assert memo.offer(hasher, str(download_output), len(table))
        deadline = time.monotonic() + 60
        while (first := memo.take(table[0]["sha256"])) is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert first == bytes_hashes(table[0]["image"])
        assert memo.take(table[1]["sha256"]) == bytes_hashes(table[1]["image"])
        assert memo.take(table[1]["sha256"]) is None  # each result is taken once
        truncated = memo.take(table[2]["sha256"])
        assert isinstance(truncated, str) and "truncated" in truncated.lower()
    finally:
        hasher.shutdown()
    busy = HashMemo(max_batches=0)
    assert not busy.offer(ThreadHasher(1), str(download_output), 1)  # nothing in flight


def test_the_image_stage_takes_prefetched_hashes(tmp_path, download_output):
    """What the download stage prefetched (here: planted) is used, not hashed again."""
    records = {r["uid"]: r for r in pq.read_table(download_output).to_pylist()}
    planted = records[f"{0:032x}"]["sha256"]
    hasher = shared_hasher()
    assert hasher is not None
    hashpool._memo._results[planted] = (1, 2)  # as if hashed while the download ran
    kept, _ = run_image_stage(tmp_path, download_output, "on")
    assert kept[f"{0:032x}"] == (1, 2)
    assert kept[f"{1:032x}"] == bytes_hashes(records[f"{1:032x}"]["image"])
    assert hashpool._memo.take(planted) is None  # taken, and the memo cleared after the stage


def test_waiting_bodies_are_bounded_in_bytes():
    """A network thread whose body would pass the budget waits for a pixel thread."""
    import threading

    from openwit.pipeline.download.downloader import ByteBudget

    budget = ByteBudget(100)
    budget.add(60)
    budget.add(40)  # exactly the limit
    entered = threading.Event()

    def third() -> None:
        budget.add(10)
        entered.set()

    thread = threading.Thread(target=third)
    thread.start()
    assert not entered.wait(0.2)  # over the limit: it waits
    budget.remove(60)
    assert entered.wait(5)
    thread.join()
    assert budget.held == 50
    lone = ByteBudget(10)
    lone.add(1_000)  # nothing else waits: one body, however large, always goes
    assert lone.held == 1_000


def test_a_failed_hand_over_is_a_counted_stage_error_not_a_hang():
    """Whatever goes wrong between a network thread and a pixel thread, the record's
    future is completed (a stage_error) and the bytes it held are given back."""
    from openwit.pipeline.download.downloader import Downloader, DownloadSettings
    from openwit.pipeline.download.fetch.client import ClientSettings, Fetched

    downloader = Downloader(DownloadSettings(ClientSettings(), ResizeSettings(), threads=1))
    body = downloaded_records(1)[0]["image"]

    def fetched(record):
        return Fetched(body, record["url"], "image/jpeg", 1, 0.01)

    def refuse(*args, **kwargs):
        raise RuntimeError("no pixel thread")

    downloader._fetch = fetched
    downloader.pixel_pool.submit = refuse
    outcome = downloader.submit({"uid": "u1", "url": "http://127.0.0.1/x.jpg"}).result(10)
    assert outcome.result.reason == "stage_error" and "no pixel thread" in outcome.result.detail
    assert downloader.waiting_bodies.held == 0
