"""openwit: CLIP-style (WebImageText) image-text datasets, built with Apache Beam.

The top-level folders of the repository are installed under this namespace:
``openwit.queries``, ``openwit.pipeline``, ``openwit.dedup`` and ``openwit.train``.
This package holds what every stage shares: the CLI, the config, the Arrow schemas,
funnel accounting and the stage runner.

Importing ``openwit`` must stay cheap: heavy libraries (torch, apache_beam, img2dataset,
open_clip) are imported inside the functions that need them.
"""

__version__ = "0.1.0"
