"""A hashing worker: ``python -m openwit.pipeline.image.hashworker``.

It reads requests from standard input and writes their hashes
(:func:`openwit.hashes.images.bytes_hashes_or_errors`) to standard output, one pickle frame
each way, until its input ends: a batch of encoded images, or the path of a download part
file whose images it reads itself (so the build's process does not copy them over).
:mod:`openwit.pipeline.image.hashpool` runs one per core and is its only client (the frames
never leave the machine).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys

#: The workers' scheduling priority: the lowest, so that prefetching hashes while the
#: download stage runs takes the CPU it leaves idle rather than CPU it needs.
WORKER_NICENESS = 19


def main() -> None:
    from openwit.hashes.images import bytes_hashes_or_errors
    from openwit.hashes.resample import _fast_path_verified, single_threaded_blas

    # Yield the cores to the build's own threads: hash in the gaps while it downloads.
    with contextlib.suppress(AttributeError, OSError):  # no os.nice on every platform
        os.nice(WORKER_NICENESS)
    single_threaded_blas()  # one worker per core already; BLAS threads would only spin
    _fast_path_verified()  # the resampler's self-check, once, before the first image
    requests, replies = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # anything a library prints must not corrupt the frames
    while True:
        try:
            request = pickle.load(requests)
        except EOFError:
            return
        if isinstance(request, str):  # a Parquet file of stored images: read it here
            reply: object = file_hashes(request)
        else:  # a batch of encoded images
            reply = bytes_hashes_or_errors(request)
        pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
        replies.flush()


def file_hashes(path: str) -> tuple[list[str], list[tuple[int, int] | str]]:
    """``(sha256s, hashes)`` of the stored images in a download part file."""
    import pyarrow.parquet as pq

    from openwit.hashes.images import bytes_hashes_or_errors

    table = pq.read_table(path, columns=["sha256", "image"])
    images = table.column("image").to_pylist()
    return table.column("sha256").to_pylist(), bytes_hashes_or_errors(images)


if __name__ == "__main__":
    main()
