"""Writing an object to ``gs://``: openwit's upload against Beam's GCS writer, same run.

A build writes many small objects (every unit's Parquet part, rejections and done marker;
the manifest; the lease). Beam's GCS writer opens a resumable upload session for each, then
sends the bytes: two requests. ``openwit.fs`` hands an object to Google's client, which
sends one of up to 8 MB in one multipart request. Measured against the GCS emulator on
127.0.0.1 (``tests/gcsserver.py``), with each request to it delayed by a round trip (0 and
20 ms: a region's latency is of that order; the emulator's own is under 1 ms), objects of
2 kB (a marker, a small part) to 1 MB, the two ways alternated: objects/s, and requests per
object counted at the client. ``openwit.fs`` takes the one-request way up to
``GCS_ONE_REQUEST_BYTES`` (256 kB): at 1 MB it lost with no latency added.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time
from pathlib import Path

from common import emit, install_guard

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
install_guard()

ROUNDS = 3
SHAPES = [(2_000, 60), (64_000, 30), (256_000, 20), (1_000_000, 12)]  # bytes, objects a round
LATENCIES = [0.0, 0.020]


def main() -> None:
    import requests

    from openwit import fs, stores
    from tests.gcsserver import gcs_server

    with gcs_server(Path(tempfile.mkdtemp(prefix="gcs-bench-"))) as server:
        os.environ.update(server.environment())
        os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
        fs.configure({})
        bucket = server.bucket("openwit-bench-writes")
        sent = {"requests": 0, "delay": 0.0}
        original = requests.Session.request

        def request(session: requests.Session, method: str, url: str, *args, **kwargs):
            if str(url).startswith(server.endpoint):
                sent["requests"] += 1
                time.sleep(sent["delay"])
            return original(session, method, url, *args, **kwargs)

        requests.Session.request = request  # type: ignore[method-assign]
        ways = {
            "openwit": lambda url, data: fs._upload_to_gcs(url, io.BytesIO(data)),
            "beam": lambda url, data: fs._upload_through_beam(
                stores.beam_fs(url), url, io.BytesIO(data)
            ),
        }
        ways["openwit"](f"{bucket}/warm", b"x")  # clients and credentials made once
        ways["beam"](f"{bucket}/warm", b"x")
        for delay in LATENCIES:
            sent["delay"] = delay
            for size, count in SHAPES:
                data = os.urandom(size)
                seconds = {name: 0.0 for name in ways}
                requests_made = {name: 0 for name in ways}
                for round_ in range(ROUNDS):
                    for name, write in ways.items():
                        before, started = sent["requests"], time.perf_counter()
                        for i in range(count):
                            write(f"{bucket}/{name}/{size}/{round_}/{i:04d}", data)
                        seconds[name] += time.perf_counter() - started
                        requests_made[name] += sent["requests"] - before
                objects = ROUNDS * count
                emit(
                    f"gcs_write_objects_per_s_{size}b_{int(delay * 1000)}ms",
                    objects / seconds["openwit"],
                    "objects/s",
                    "Beam's GCS writer (a resumable upload session per object), same run",
                    objects / seconds["beam"],
                    object_bytes=size,
                    added_latency_ms=int(delay * 1000),
                    requests_per_object=round(requests_made["openwit"] / objects, 2),
                    baseline_requests_per_object=round(requests_made["beam"] / objects, 2),
                    server="gcp-storage-emulator on 127.0.0.1, one request at a time",
                )
        requests.Session.request = original  # type: ignore[method-assign]


if __name__ == "__main__":
    main()
