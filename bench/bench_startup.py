"""Start-up costs: ``openwit --help`` and a trivial Beam pipeline on the default runner.

Baselines in the same run: a bare ``python -c pass`` for the CLI; Beam's stock
DirectRunner (which first tries to download Prism; here the network guard makes that fail
at once, the best case of an offline machine) for the pipeline.
"""

from __future__ import annotations

import subprocess
import sys

from common import emit, guarded_env, install_guard, median_time

install_guard()


def cli_help() -> None:
    subprocess.run(
        [sys.executable, "-m", "openwit.cli", "--help"],
        check=True,
        capture_output=True,
        env=guarded_env(),
    )


def bare_python() -> None:
    subprocess.run([sys.executable, "-c", "pass"], check=True, env=guarded_env())


def trivial(pipeline) -> None:
    import apache_beam as beam

    with pipeline as p:
        _ = p | beam.Create(range(1000)) | beam.combiners.Count.Globally()


def main() -> None:
    emit(
        "cli_help_wall",
        median_time(cli_help, 5),
        "s",
        "python -c pass",
        median_time(bare_python, 5),
    )

    import apache_beam as beam

    from openwit.beam import new_pipeline

    ours = median_time(lambda: trivial(new_pipeline()), 5)
    stock = median_time(lambda: trivial(beam.Pipeline(runner="DirectRunner")), 5)
    emit(
        "beam_trivial_pipeline_wall",
        ours,
        "s",
        "beam stock DirectRunner (Prism attempt blocked offline)",
        stock,
    )
    multi = median_time(
        lambda: trivial(
            new_pipeline(
                "DirectRunner", {"direct_running_mode": "multi_processing", "direct_num_workers": 2}
            )
        ),
        3,
    )
    emit("beam_trivial_pipeline_multiprocess_wall", multi, "s", "openwit in_memory", ours)


if __name__ == "__main__":
    main()
