"""A GCS-compatible server on 127.0.0.1 for the ``gs://`` tests (gcp-storage-emulator).

Run as its own process (``python tests/gcsserver.py GCS_PORT METADATA_PORT``), it serves two
things on loopback:

- the GCS JSON API, in memory (gcp-storage-emulator), which Google's client library reaches
  through the standard ``STORAGE_EMULATOR_HOST``;
- the few paths of a Compute Engine metadata server that Google's auth library asks for an
  access token (``GCE_METADATA_HOST`` / ``GCE_METADATA_IP``). Beam's GCS filesystem looks
  for application default credentials in every process and, finding none, retries for
  about 30 seconds before it connects anonymously; a token from this server is what a
  worker on Compute Engine gets from the real one. The emulator does not check it.

One thing GCS does that the emulator does not is added here: generation preconditions on
writes and deletes (:func:`_honour_generation_preconditions`). GCS refuses an upload or a
delete whose ``ifGenerationMatch`` is not the object's live generation (0: no live object)
with ``412 Precondition Failed``; the emulator ignored the parameter, so the conditional
build lease on ``gs://`` (:mod:`openwit.lease`) could not be tested against it.

Tests reach both the way a user's process reaches GCS: through the environment
(:meth:`GcsServer.environment`), which the fixture sets for the test and every process it
starts. Nothing here is a stand-in for openwit's own code: the build talks to the server
through Beam's ``FileSystems`` and Google's client, as it would to GCS.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PROJECT = "openwit-test"


@dataclass
class GcsServer:
    endpoint: str
    metadata: str
    credentials_dir: Path
    process: subprocess.Popen

    def environment(self) -> dict[str, str]:
        """What a process needs to reach this server as it would reach GCS. No gcloud
        configuration and no key file, so the auth library asks the metadata server."""
        return {
            "STORAGE_EMULATOR_HOST": self.endpoint,
            "GCE_METADATA_HOST": self.metadata,
            "GCE_METADATA_IP": self.metadata,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "CLOUDSDK_CONFIG": str(self.credentials_dir),
        }

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project=PROJECT,
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    def bucket(self, name: str) -> str:
        self.client().create_bucket(name)
        return f"gs://{name}"

    def objects(self, bucket: str, prefix: str = "") -> dict[str, tuple[int, int]]:
        """Each object's size and generation (a rewrite gives a new generation)."""
        name = bucket.removeprefix("gs://")
        return {
            blob.name: (blob.size, blob.generation)
            for blob in self.client().list_blobs(name, prefix=prefix)
        }

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().bucket(bucket.removeprefix("gs://")).blob(key).download_as_bytes()

    def write(self, bucket: str, key: str, data: bytes) -> None:
        self.client().bucket(bucket.removeprefix("gs://")).blob(key).upload_from_string(data)


@contextmanager
def gcs_server(credentials_dir: Path) -> Iterator[GcsServer]:
    """Start the emulator and the metadata paths (one process); ``credentials_dir``: an
    empty folder to stand for gcloud's configuration."""
    from tests.loopback import free_port, stop, wait_for_port

    storage_port, metadata_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, str(storage_port), str(metadata_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(storage_port, process, "the GCS emulator")
        wait_for_port(metadata_port, process, "the GCS emulator's metadata server")
        yield GcsServer(
            f"http://127.0.0.1:{storage_port}",
            f"127.0.0.1:{metadata_port}",
            credentials_dir,
            process,
        )
    finally:
        stop(process)


class _Metadata(BaseHTTPRequestHandler):
    """The metadata server's answers the auth library needs: that it is one, the project,
    the default service account and its token."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "":
            body = b""
        elif path.endswith("/project/project-id"):
            body = PROJECT.encode()
        elif re.search(r"/service-accounts/[^/]+/token$", path):  # "default" or its email
            token = {"access_token": "openwit-test", "expires_in": 3600, "token_type": "Bearer"}
            body = json.dumps(token).encode()
        elif re.search(r"/service-accounts/[^/]+$", path):
            account = {"email": f"test@{PROJECT}.invalid", "scopes": [], "aliases": ["default"]}
            body = json.dumps(account).encode()
        elif path.endswith("/universe/universe-domain"):
            body = b"googleapis.com"
        else:
            self.send_response(404)
            self.send_header("Metadata-Flavor", "Google")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Metadata-Flavor", "Google")
        self.send_header("Content-Type", "application/json" if body[:1] == b"{" else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _honour_generation_preconditions() -> None:
    """Make the emulator's object uploads and deletes honour ``ifGenerationMatch`` as GCS
    documents it: the live object's generation must equal it (0: there must be none), or
    the request is refused with 412 and changes nothing. A lock makes check and write one
    step, as they are in GCS. Must run before the emulator's server module is imported (its
    routes hold the handler functions)."""
    import threading
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    lock = threading.Lock()
    refusal = {
        "error": {
            "code": 412,
            "message": "At least one of the pre-conditions you specified did not hold.",
            "errors": [{"reason": "conditionNotMet", "domain": "global"}],
        }
    }

    def uploaded_name(request: Any) -> str | None:
        if "name" in request.query:
            return request.query["name"][0]
        data = request.data
        return data.get("meta", {}).get("name") if isinstance(data, dict) else None

    def guarded(handler: Any, name_of: Any) -> Any:
        def handle(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
            wanted = request.query.get("ifGenerationMatch")
            if not wanted:
                return handler(request, response, storage, *args, **kwargs)
            with lock:
                try:
                    live = storage.get_file_obj(request.params["bucket_name"], name_of(request))
                    generation = int(live.get("generation") or 0)
                except NotFound:
                    generation = 0
                if generation != int(wanted[0]):
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json(refusal)
                    return None
                return handler(request, response, storage, *args, **kwargs)

        return handle

    objects.insert = guarded(objects.insert, uploaded_name)
    objects.delete = guarded(objects.delete, lambda request: request.params["object_id"])


def _serve(storage_port: int, metadata_port: int) -> None:
    import logging

    _honour_generation_preconditions()
    from gcp_storage_emulator.server import create_server

    logging.disable(logging.CRITICAL)  # it logs every missing object as an error
    create_server("127.0.0.1", storage_port, in_memory=True).start()
    ThreadingHTTPServer(("127.0.0.1", metadata_port), _Metadata).serve_forever()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
