"""Hashing throughput: stored images hashed per second, eval images per second.

Figures (each against a baseline measured in the same run, one process):
- ``hash_stored_images``: ``openwit.dedup.hashing.bytes_hashes`` on 256-px JPEGs as the
  build stores them (decode, border trim, pHash, dHash) against decoding alone.
- ``border_trim_overhead``: the same with trimming against plain imagehash pHash + dHash.
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
    import skimage.data
    from PIL import Image

    from openwit.dedup import transforms as tf
    from openwit.dedup.detector import Detector
    from openwit.dedup.hashing import bytes_hashes, hash_pair

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

    decode_rate = rate(decode, stored)
    hash_rate = rate(bytes_hashes, stored)
    plain_rate = rate(plain, stored)
    emit("hash_stored_images", hash_rate, "images/s", "JPEG decode only", decode_rate)
    emit("border_trim_overhead", hash_rate, "images/s", "imagehash without trim", plain_rate)

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
