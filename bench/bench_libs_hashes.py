"""The image stage's hashes, images/s per core: openwit's matrix-product thumbnails
against calling imagehash itself, as the image stage runs them (one hashing thread in a
worker process, BLAS limited to one thread).

Input: stored images as the build stores them (the e2e benchmark's photo-like JPEGs of
300x200 to 1600x1200, through the download's resizer: 256 px, JPEG quality 95). Both
variants decode the stored bytes, convert to grey and trim uniform bars the same way
(:func:`openwit.hashes.images.border_box`); then openwit computes pHash and dHash from
its own Lanczos thumbnails (:mod:`openwit.hashes.resample`), the library variant calls
``imagehash.phash`` and ``imagehash.dhash`` on the trimmed image. The values are checked
equal. The variants alternate, ``REPEATS`` times each; figures are medians of CPU time
(``time.process_time``), since the machine is shared.

Figure: ``hash_images_per_s_per_core``, with ``saved_ms_per_image``; docs/decisions.md
compares that saving with the build's CPU per sample (``bench_libs_build_cpu``).
"""

from __future__ import annotations

import io
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench_download_e2e import make_photos
from common import emit, install_guard

install_guard()

N_IMAGES = int(os.environ.get("OPENWIT_BENCH_HASH_IMAGES", "600"))
REPEATS = 3


def stored_images() -> list[bytes]:
    from openwit.config import ImageConfig
    from openwit.pipeline.download.resize import PillowResizer

    folder = Path(tempfile.gettempdir()) / "openwit-bench-photos-3000"
    photos = make_photos(folder, 3000)[:N_IMAGES]
    resize = PillowResizer(ImageConfig())
    return [resize(p.read_bytes()).data for p in photos]


def imagehash_hashes(data: bytes) -> tuple[int, int]:
    """The library variant: the same decode and trim, then imagehash itself."""
    import imagehash
    from PIL import Image

    from openwit.hashes.images import border_box, hash_to_int

    with Image.open(io.BytesIO(data)) as image:
        grey = image.convert("L")
    box = border_box(grey)
    if box != (0, 0, *grey.size):
        grey = grey.crop(box)
    return hash_to_int(imagehash.phash(grey)), hash_to_int(imagehash.dhash(grey))


def cpu_per_image(fn: Callable[[bytes], object], images: list[bytes]) -> float:
    started = time.process_time()
    for data in images:
        fn(data)
    return (time.process_time() - started) / len(images)


def main() -> None:
    from openwit.hashes.images import bytes_hashes
    from openwit.hashes.resample import single_threaded_blas

    single_threaded_blas()  # as the download does
    images = stored_images()
    mismatches = sum(bytes_hashes(d) != imagehash_hashes(d) for d in images)
    if mismatches:
        raise RuntimeError(f"{mismatches} images hash differently: the comparison is void")
    times: dict[str, list[float]] = {"openwit": [], "imagehash": []}
    for _ in range(REPEATS):
        for name, fn in (("openwit", bytes_hashes), ("imagehash", imagehash_hashes)):
            times[name].append(cpu_per_image(fn, images))
    ours, theirs = statistics.median(times["openwit"]), statistics.median(times["imagehash"])
    emit(
        "hash_images_per_s_per_core",
        1 / ours,
        "images/s",
        "imagehash.phash + imagehash.dhash of the same decoded, trimmed image (same values)",
        1 / theirs,
        images=len(images),
        repeats=REPEATS,
        saved_ms_per_image=round((theirs - ours) * 1000, 4),
        openwit_ms=[round(v * 1000, 4) for v in times["openwit"]],
        imagehash_ms=[round(v * 1000, 4) for v in times["imagehash"]],
    )


if __name__ == "__main__":
    main()
