"""The build's manifest (``OUT/manifest.json``) and funnel (``OUT/funnel.json``), as the
runner writes them.

The manifest is the record a build writes last for each change: which attempt of each
stage is committed, with what fingerprint and counts, the config and the versions of the
libraries that made the outputs. Writing it is what commits a stage (:mod:`openwit.runner`,
:mod:`openwit.commits`); readers go through :class:`openwit.builddir.BuildDir`.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any

from openwit import fs
from openwit.builddir import FUNNEL, MANIFEST
from openwit.funnel import Funnel

#: Distributions whose versions go into the manifest (read from metadata, not imported).
RECORDED_VERSIONS = (
    "openwit",
    "apache-beam",
    "pyarrow",
    "img2dataset",
    "webdataset",
    "imagehash",
    "torch",
    "open_clip_torch",
)


def now() -> str:
    """The time as the manifest records it: UTC, ISO 8601, to the second."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def package_versions() -> dict[str, str]:
    """Python's version and those of :data:`RECORDED_VERSIONS` that are installed."""
    versions = {"python": sys.version.split()[0]}
    for dist in RECORDED_VERSIONS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return versions


def load_manifest(build_dir: str) -> dict[str, Any]:
    """The build's manifest; a new, empty one where there is none (or one that is not a
    manifest: a hand-edited file, whose outputs then get rebuilt)."""
    try:
        manifest = fs.read_json(fs.join(build_dir, MANIFEST))
        if isinstance(manifest, dict) and isinstance(manifest.get("stages"), dict):
            return manifest
    except (FileNotFoundError, OSError, ValueError):
        pass  # no build yet, or a hand-edited manifest: outputs get rebuilt
    return {"created": now(), "stages": {}}


def save_manifest(build_dir: str, manifest: dict[str, Any], funnel: Funnel) -> None:
    """Write the funnel, then the manifest (each atomically): the manifest last, as it is
    what commits."""
    fs.write_json(fs.join(build_dir, FUNNEL), funnel.to_json())
    fs.write_json(fs.join(build_dir, MANIFEST), manifest)
