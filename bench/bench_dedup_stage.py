"""The dedup stage on the default runner against its plain core, on the same input.

1,000,000 synthetic stored-image records (``dedup_data``: 10% exact copies, 10% near copies
with chains) go through a build's dedup stage on openwit's local worker pool (one worker
per core), and through the same functions in one process without Beam
(``openwit.dedup.plain`` and the keep pass's apply-and-write per unit). Both reject the
same records (checked). Figures: records/s per core, wall and per CPU-second (launcher and
workers) against the plain core, and the bytes the stage's shuffles carry per record
against the size of a record itself (Arrow, metadata only). A million records, the size
the issue names: at 100k the stage's pipeline's fixed cost (about 1.5 s) is most of its
time (``bench_dedup_scale`` reports both sizes).
"""

from __future__ import annotations

import os

from common import emit, install_guard

install_guard()

RECORDS = int(os.environ.get("OPENWIT_BENCH_DEDUP_RECORDS", 1_000_000))


def main() -> None:
    from dedup_scale import measure

    result = measure(RECORDS)
    stage, plain = result["stage"], result["plain"]
    n, cores = RECORDS, stage["cores"]
    cpu = stage["cpu_seconds"]["launcher"] + stage["cpu_seconds"]["workers"]
    extra = {"records": n, "cores": cores, "machine": "provisional: shared 2-core machine"}
    emit(
        "dedup_stage_records_per_core",
        n / stage["seconds"] / cores,
        "records/s",
        "plain core, one process",
        n / plain["seconds"],
        **extra,
    )
    emit(
        "dedup_stage_records_wall",
        n / stage["seconds"],
        "records/s",
        "plain core, one process",
        n / plain["seconds"],
        **extra,
    )
    emit(
        "dedup_stage_records_per_cpu_second",
        n / cpu,
        "records/s",
        "plain core, one process",
        n / plain["cpu_seconds"],
        **extra,
        cpu_seconds=stage["cpu_seconds"],
    )
    links = stage["links"]
    emit(
        "dedup_shuffle_bytes_per_record",
        links["shuffle_bytes_per_record"],
        "B",
        "a record's own metadata (Arrow bytes of the stage's input row)",
        stage["input_bytes_per_record"],
        **extra,
        by_step=links["shuffle_bytes_per_record_by_step"],
        through_runner=links["runner_bytes_per_record"],
        rounds=links["rounds"],
        peak_rss_launcher_mb=stage["peak_rss_launcher_mb"],
        peak_rss_worker_mb=stage["peak_rss_worker_mb"],
    )


if __name__ == "__main__":
    main()
