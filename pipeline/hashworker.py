"""A hashing worker: ``python -m openwit.pipeline.hashworker``.

It reads batches of encoded images from standard input and writes their hashes
(:func:`openwit.dedup.hashing.bytes_hashes_or_errors`) to standard output, one pickle frame
each way per batch, until its input ends. :mod:`openwit.pipeline.hashpool` runs one per core
and is its only client (the frames never leave the machine).
"""

from __future__ import annotations

import pickle
import sys


def main() -> None:
    from openwit.dedup.hashing import bytes_hashes_or_errors
    from openwit.dedup.resample import _fast_path_verified, single_threaded_blas

    single_threaded_blas()  # one worker per core already; BLAS threads would only spin
    _fast_path_verified()  # the resampler's self-check, once, before the first image
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the frames
    while True:
        try:
            images = pickle.load(requests)
        except EOFError:
            return
        pickle.dump(bytes_hashes_or_errors(images), replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


if __name__ == "__main__":
    main()
