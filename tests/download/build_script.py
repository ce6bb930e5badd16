"""``python -m tests.download.build_script CONFIG [resume]``: the download tests' build in a
process of its own, so a test can kill it mid-download and resume it."""

from __future__ import annotations

import sys

from openwit.config import load_build_config
from openwit.pipeline.download.stage import DownloadStage
from openwit.pipeline.image.stage import ImageStage
from openwit.pipeline.shard.stage import ShardStage
from openwit.runner import BuildRunner
from tests.download.stages import PoolCandidates


def main(argv: list[str]) -> int:
    config = load_build_config(argv[0])
    stages = [PoolCandidates(), DownloadStage(), ImageStage(), ShardStage()]
    BuildRunner(config, stages).run(resume=argv[1:] == ["resume"])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
