"""openwit: CLIP-style (WebImageText) image-text datasets, built with Apache Beam.

The top-level folders of the repository are installed under this namespace:
``openwit.queries``, ``openwit.pipeline``, ``openwit.dedup`` and ``openwit.train``.
This package holds what every stage shares: the CLI, the config, the Arrow schemas,
funnel accounting and the stage runner.

Importing ``openwit`` must stay cheap: heavy libraries (torch, apache_beam, img2dataset,
open_clip) are imported inside the functions that need them.
"""

import os
import sys

__version__ = "0.1.0"

# Arrow's memory pool: jemalloc, not pyarrow's default mimalloc, which kept the pages a
# finished work unit freed -- a worker that had sorted one ingest bucket stayed that much
# bigger for the rest of the build (docs/decisions.md, "Arrow's memory pool"). Arrow reads
# the variable once, when pyarrow is first imported, and its C++ readers and kernels
# allocate from that pool whatever pyarrow.set_memory_pool says later, so it is set here,
# before any openwit module imports pyarrow; worker processes inherit it. A user's own
# choice wins. Linux only: the wheels measured here; elsewhere Arrow may lack jemalloc.
if sys.platform == "linux":
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
