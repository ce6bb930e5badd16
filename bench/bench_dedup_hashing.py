"""Hashing throughput: stored images hashed per second, eval images per second.

Figures (each against a baseline measured in the same run, one process):
- ``hash_stored_images``: ``openwit.hashes.images.bytes_hashes`` on 256-px JPEGs as the
  build stores them (decode, border trim, pHash, dHash) against decoding alone.
- ``hash_stored_images_vs_imagehash``: the same against imagehash's own ``phash`` and
  ``dhash`` of the same decoded, trimmed image (the values are identical; openwit computes
  Pillow's Lanczos resampling as matrix products, see docs/dedup.md).
- ``border_trim_overhead``: the same with trimming against the same hashes without it.
- ``hash_eval_images``: all detector variants of a 512-px eval image against one hash.
"""

from __future__ import annotations

import io
import time

from common import emit, install_guard

install_guard()

N_STORED = 400
N_EVAL = 12


def rate(fn, items) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - started)


def main() -> None:
    import imagehash
    import skimage.data
    from PIL import Image

    from openwit.dedup import transforms as tf
    from openwit.dedup.detector import Detector
    from openwit.hashes.images import bytes_hashes, hash_pair, trim_borders

    photos = [
        Image.fromarray(getattr(skimage.data, n)()).convert("RGB")
        for n in ("astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field")
    ]
    stored = []
    for index in range(N_STORED):
        image = photos[index % len(photos)]
        image = tf.rescale(0.6 + 0.4 * ((index * 7) % 10) / 10)(image)
        buffer = io.BytesIO()
        tf.store(image).save(buffer, "JPEG", quality=90)
        stored.append(buffer.getvalue())

    def decode(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            image.load()

    def plain(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            hash_pair(image)

    def with_imagehash(data: bytes) -> None:
        with Image.open(io.BytesIO(data)) as image:
            trimmed = trim_borders(image.convert("L"))
            imagehash.phash(trimmed), imagehash.dhash(trimmed)

    bytes_hashes(stored[0])  # first use checks the fast path against Pillow once
    decode_rate = rate(decode, stored)
    hash_rate = rate(bytes_hashes, stored)
    plain_rate = rate(plain, stored)
    imagehash_rate = rate(with_imagehash, stored)
    emit("hash_stored_images", hash_rate, "images/s", "JPEG decode only", decode_rate)
    emit(
        "hash_stored_images_vs_imagehash",
        hash_rate,
        "images/s",
        "imagehash phash + dhash of the same trimmed image (same values)",
        imagehash_rate,
    )
    emit("border_trim_overhead", hash_rate, "images/s", "the same hashes without trim", plain_rate)

    detector = Detector()
    evals = [tf.rescale(512 / max(p.size))(p) for p in photos] * (N_EVAL // len(photos))
    variant_rate = rate(detector.variant_hashes, evals)
    single_rate = rate(hash_pair, evals)
    emit(
        "hash_eval_images",
        variant_rate,
        "images/s",
        "one hash per image",
        single_rate,
        variants=len(detector.variants()),
    )


if __name__ == "__main__":
    main()
