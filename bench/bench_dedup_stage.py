"""The dedup stage's Beam graph: records/s on the local runner, against a pass-through.

20,000 synthetic candidate records (random 64-bit hashes, 10% exact copies, 10% near
copies with 1-3 bits flipped, 4 KB of image bytes each) go through
``openwit.dedup.stage.build_graph`` with one 100-image eval set, and through a pipeline
that only keys and regroups them (one CoGroupByKey, the same shuffle of the records the
stage's final join does). Both on openwit's offline DirectRunner, in memory.
"""

from __future__ import annotations

import time

import numpy as np
from common import emit, install_guard

install_guard()

N_RECORDS = 20_000
IMAGE_BYTES = 4096


def synthetic_records(rng: np.random.Generator) -> list[dict]:
    phash = rng.integers(0, 2**64 - 1, size=N_RECORDS, dtype=np.uint64, endpoint=True)
    dhash = rng.integers(0, 2**64 - 1, size=N_RECORDS, dtype=np.uint64, endpoint=True)
    sha = [f"{i:064x}" for i in range(N_RECORDS)]
    tenth = N_RECORDS // 10
    for i in range(tenth):  # exact copies of the first records
        j = N_RECORDS - 1 - i
        phash[j], dhash[j], sha[j] = phash[i], dhash[i], sha[i]
    for i in range(tenth, 2 * tenth):  # near copies
        j = N_RECORDS - 1 - i
        flip = np.uint64(0)
        for bit in rng.choice(64, rng.integers(1, 4), replace=False):
            flip |= np.uint64(1) << np.uint64(int(bit))
        phash[j], dhash[j] = phash[i] ^ flip, dhash[i]
    payload = bytes(IMAGE_BYTES)
    return [
        {
            "uid": f"{i:032x}",
            "url": f"http://x.example/{i}.jpg",
            "source": "bench",
            "source_offset": i,
            "sha256": sha[i],
            "phash": int(phash[i]),
            "dhash": int(dhash[i]),
            "image": payload,
        }
        for i in range(N_RECORDS)
    ]


def run_dedup(records: list[dict], eval_hashes: list) -> float:
    import apache_beam as beam

    from openwit.beam import new_pipeline
    from openwit.config import DedupConfig
    from openwit.dedup.detector import Detector
    from openwit.dedup.stage import build_graph

    started = time.perf_counter()
    with new_pipeline() as pipeline:
        kept, rejected, matches = build_graph(
            pipeline | beam.Create(records, reshuffle=False),
            DedupConfig(decontaminate=True),
            Detector(),
            eval_hashes,
        )
        _ = kept | "count kept" >> beam.combiners.Count.Globally()
        _ = rejected | "count rejected" >> beam.combiners.Count.Globally()
        _ = matches | "count matches" >> beam.combiners.Count.Globally()
    return N_RECORDS / (time.perf_counter() - started)


def run_passthrough(records: list[dict]) -> float:
    import apache_beam as beam

    from openwit.beam import new_pipeline

    started = time.perf_counter()
    with new_pipeline() as pipeline:
        keyed = pipeline | beam.Create(records, reshuffle=False) | beam.Map(lambda r: (r["uid"], r))
        _ = (
            {"record": keyed}
            | beam.CoGroupByKey()
            | beam.FlatMap(lambda kv: kv[1]["record"])
            | beam.combiners.Count.Globally()
        )
    return N_RECORDS / (time.perf_counter() - started)


def main() -> None:
    from openwit.dedup.detector import Detector
    from openwit.dedup.evalhash import EvalHashes

    rng = np.random.default_rng(0)
    records = synthetic_records(rng)
    n_variants = len(Detector().variants())
    shape = (100, n_variants)
    eval_hashes = [
        EvalHashes(
            "bench",
            None,  # type: ignore[arg-type]
            [f"c/{i}.jpg" for i in range(100)],
            np.zeros(100, dtype=np.int32),
            rng.integers(0, 2**63, size=shape, dtype=np.uint64),
            rng.integers(0, 2**63, size=shape, dtype=np.uint64),
            np.ones(100, dtype=bool),
        )
    ]
    passthrough = run_passthrough(records)
    dedup = run_dedup(records, eval_hashes)
    emit(
        "dedup_stage_records",
        dedup,
        "records/s",
        "key + CoGroupByKey pass-through",
        passthrough,
        records=N_RECORDS,
    )


if __name__ == "__main__":
    main()
