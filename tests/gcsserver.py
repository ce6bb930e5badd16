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

Two things GCS does that the emulator does not are added here (:func:`_as_gcs_does`):

- generation preconditions on writes and deletes: GCS refuses an upload or a delete whose
  ``ifGenerationMatch`` is not the object's live generation (0: no live object) with
  ``412 Precondition Failed``; the emulator ignored the parameter, so the conditional
  build lease on ``gs://`` (:mod:`openwit.lease`) could not be tested against it;
- a refusal: a second metadata server hands out the token of an account that may read but
  not write (:meth:`GcsServer.read_only_environment`), and every write it sends is refused
  with ``403 Forbidden``, as IAM refuses a service account without ``storage.objects.create``.

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
    read_only_metadata: str
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

    def read_only_environment(self) -> dict[str, str]:
        """:meth:`environment` with the credentials of an account that may only read."""
        metadata = {"GCE_METADATA_HOST": self.read_only_metadata}
        return {**self.environment(), **metadata, "GCE_METADATA_IP": self.read_only_metadata}

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

    storage_port, metadata_port, read_only_port = free_port(), free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, __file__, str(storage_port), str(metadata_port), str(read_only_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(storage_port, process, "the GCS emulator")
        wait_for_port(metadata_port, process, "the GCS emulator's metadata server")
        wait_for_port(read_only_port, process, "the GCS emulator's read-only metadata server")
        yield GcsServer(
            f"http://127.0.0.1:{storage_port}",
            f"127.0.0.1:{metadata_port}",
            f"127.0.0.1:{read_only_port}",
            credentials_dir,
            process,
        )
    finally:
        stop(process)


#: The access token of the account that may read but not write (the other's: "openwit-test").
READ_ONLY_TOKEN = "openwit-test-read-only"


class _Metadata(BaseHTTPRequestHandler):
    """The metadata server's answers the auth library needs: that it is one, the project,
    the default service account and its token (``token``: which account this server's
    processes act as)."""

    token = "openwit-test"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if path == "":
            body = b""
        elif path.endswith("/project/project-id"):
            body = PROJECT.encode()
        elif re.search(r"/service-accounts/[^/]+/token$", path):  # "default" or its email
            token = {"access_token": self.token, "expires_in": 3600, "token_type": "Bearer"}
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


class _ReadOnlyMetadata(_Metadata):
    token = READ_ONLY_TOKEN


def _gcs_error(code: int, message: str, reason: str) -> dict[str, Any]:
    """An error body as GCS's JSON API sends it (Google's client reads ``error.message``)."""
    return {"error": {"code": code, "message": message, "errors": [{"reason": reason}]}}


def _as_gcs_does() -> None:
    """Make the emulator's object writes behave as GCS's in two ways it did not:

    - an upload or delete with ``ifGenerationMatch`` goes through only if the live
      object's generation equals it (0: there must be none); otherwise 412, nothing
      changed. A lock makes check and write one step, as they are in GCS;
    - every write (upload, resumable chunk, delete, copy, rewrite, compose, patch, batch)
      sent with the read-only account's token is refused with 403.

    Must run before the emulator's server module is imported (its routes hold the handler
    functions)."""
    import threading
    from http import HTTPStatus

    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    lock = threading.Lock()
    not_met = _gcs_error(
        412, "At least one of the pre-conditions you specified did not hold.", "conditionNotMet"
    )
    forbidden = _gcs_error(
        403,
        f"test@{PROJECT}.invalid does not have storage.objects.create access to the object.",
        "forbidden",
    )

    def uploaded_name(request: Any) -> str | None:
        if "name" in request.query:
            return request.query["name"][0]
        data = request.data  # multipart: the metadata under "meta"; resumable: itself
        return data.get("meta", data).get("name") if isinstance(data, dict) else None

    def write(handler: Any, name_of: Any = None) -> Any:
        def handle(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> Any:
            if request.get_header("Authorization") == f"Bearer {READ_ONLY_TOKEN}":
                response.status = HTTPStatus.FORBIDDEN
                response.json(forbidden)
                return None
            wanted = request.query.get("ifGenerationMatch")
            if not wanted or name_of is None:
                return handler(request, response, storage, *args, **kwargs)
            with lock:
                try:
                    live = storage.get_file_obj(request.params["bucket_name"], name_of(request))
                    generation = int(live.get("generation") or 0)
                except NotFound:
                    generation = 0
                if generation != int(wanted[0]):
                    response.status = HTTPStatus.PRECONDITION_FAILED
                    response.json(not_met)
                    return None
                return handler(request, response, storage, *args, **kwargs)

        return handle

    objects.insert = write(objects.insert, uploaded_name)
    objects.delete = write(objects.delete, lambda request: request.params["object_id"])
    for name in ("upload_partial", "xml_upload", "copy", "rewrite", "compose", "patch", "batch"):
        setattr(objects, name, write(getattr(objects, name)))


def _serve(storage_port: int, metadata_port: int, read_only_port: int) -> None:
    import logging
    import threading

    _as_gcs_does()
    from gcp_storage_emulator.server import create_server

    logging.disable(logging.CRITICAL)  # it logs every missing object as an error
    create_server("127.0.0.1", storage_port, in_memory=True).start()
    read_only = ThreadingHTTPServer(("127.0.0.1", read_only_port), _ReadOnlyMetadata)
    threading.Thread(target=read_only.serve_forever, daemon=True).start()
    ThreadingHTTPServer(("127.0.0.1", metadata_port), _Metadata).serve_forever()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
