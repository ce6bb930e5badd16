"""Run open_clip_train's own entry point with openwit's model configs registered.

``python -m openwit.train.open_clip_launcher ARGS`` is ``python -m open_clip_train.main ARGS``
in a process that also knows ``openwit-tiny``: open_clip's model registry lives in the
process (``add_model_config`` does not reach a child), so the registration must happen in the
process that runs open_clip_train. The benchmarks use it to run both trainers on the same
model.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from openwit.train.models import register_model_configs

    register_model_configs()
    from open_clip_train.main import main as open_clip_train_main

    result = open_clip_train_main(argv)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
