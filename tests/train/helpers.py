"""Small builders for the trainer's tests: shards from raw samples, test images."""

from __future__ import annotations

import io
import json
import random
import shutil
import tarfile
from pathlib import Path

from openwit.demo.world import render


def copy_shards(source: Path, dest: Path) -> Path:
    shutil.copytree(source, dest)
    return dest


def jpeg_bytes(colour: str = "red", shape: str = "circle", size: int = 64) -> bytes:
    return render(colour, shape, "grey", random.Random(0), (size, size))


def png_bytes(size: int = 40) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (10, 200, 30)).save(buffer, "PNG")
    return buffer.getvalue()


def write_tar(path: Path, samples: list[dict]) -> Path:
    """A shard from raw sample dicts (``__key__``, ``jpg``, ``txt``, ...)."""
    import webdataset as wds

    with wds.TarWriter(str(path)) as writer:
        for sample in samples:
            writer.write(sample)
    return path


def write_sizes(folder: Path, sizes: dict[str, int]) -> None:
    (folder / "sizes.json").write_text(json.dumps(sizes))


def _tar_of_members(path, members):
    """A tar of (name, bytes) members in the order given (webdataset's writer would group)."""
    with tarfile.open(path, "w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def unusable_shards(folder):
    """One shard of each kind that holds no usable sample."""
    folder.mkdir()
    jpg, txt = jpeg_bytes(), b"a red circle"
    _tar_of_members(folder / "00000.tar", [])  # an empty tar: end-of-archive blocks only
    (folder / "00001.tar").write_bytes(b"")  # zero bytes
    _tar_of_members(folder / "00002.tar", [(f"{i}.txt", txt) for i in range(3)])
    _tar_of_members(folder / "00003.tar", [(f"{i}.jpg", jpg) for i in range(3)])
    ungrouped = [("a.jpg", jpg), ("b.jpg", jpg), ("a.txt", txt), ("b.txt", txt)]
    _tar_of_members(folder / "00004.tar", ungrouped)
    return folder


UNUSABLE_REASONS = [
    ("00000.tar", "00000.tar: no samples in it"),
    ("00001.tar", "00001.tar: unreadable (TarError: truncated tar"),
    ("00002.tar", "00002.tar: 3 samples, 3 without an image"),
    ("00003.tar", "00003.tar: 3 samples, 3 without a caption"),
    ("00004.tar", "00004.tar: 4 samples, 2 without an image, 2 without a caption (are each"),
]
