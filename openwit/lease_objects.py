"""The lease object in a bucket, through each store's conditional writes (no Beam).

:mod:`openwit.lease` holds a build's lease with four operations on one object, each of
which names the version of the object it expects, so that two builds can never both
believe they hold it:

- ``create(body)``: write the object only if there is none; its version, or None when
  there is one already;
- ``read()``: ``(version, body)`` of the object, or None when there is none;
- ``replace(version, body)``: write it only if it is still at ``version``; the new
  version, or None when it is not (another writer came in between, or it is gone);
- ``delete(version)``: delete it only if it is still at ``version`` (else leave it).

S3's versions are ETags (``If-None-Match: *`` to create, ``If-Match`` to replace and
delete); GCS's are generations (``ifGenerationMatch``, 0 meaning "no live object").
Failures other than a failed condition are :class:`openwit.errors.StorageError` lines.
"""

from __future__ import annotations

import contextlib
from typing import Any, Protocol

from openwit import fs
from openwit.errors import StorageError
from openwit.urls import bucket_and_key


class LeaseObject(Protocol):
    def create(self, body: bytes) -> str | None: ...

    def read(self) -> tuple[str, bytes] | None: ...

    def replace(self, version: str, body: bytes) -> str | None: ...

    def delete(self, version: str) -> None: ...


def lease_object(url: str, build_url: str, seconds: float) -> LeaseObject | None:
    """The lease object at ``url`` on a store with conditional writes, else None.
    ``seconds``: the lease's life, which bounds how long a renewal may retry."""
    if fs.scheme(url) == "s3":
        return S3LeaseObject(url, build_url)
    if fs.scheme(url) == "gs":
        return GcsLeaseObject(url, seconds)
    return None


class S3LeaseObject:
    def __init__(self, url: str, build_url: str) -> None:
        self.url, self.build_url = url, build_url
        self.bucket, self.key = bucket_and_key(url)

    @staticmethod
    def _code(exc: Any) -> str:
        return str(exc.response.get("Error", {}).get("Code"))

    def _refused(self, exc: Any) -> bool:
        """A failed condition (an object that is gone is ``store_errors``'s missing file)."""
        return self._code(exc) in ("PreconditionFailed", "412")

    def create(self, body: bytes) -> str | None:
        from botocore.exceptions import ClientError

        with fs.store_errors(self.url, "write"):  # a timeout, an old botocore: one line
            try:
                put = fs.s3_client().put_object(
                    Bucket=self.bucket, Key=self.key, Body=body, IfNoneMatch="*"
                )
            except ClientError as exc:
                if self._refused(exc):
                    return None
                error = exc.response.get("Error", {})
                raise StorageError(
                    f"cannot write to {self.build_url}: {error.get('Code')}: {error.get('Message')}"
                ) from None
        return put["ETag"]

    def read(self) -> tuple[str, bytes] | None:
        try:
            with fs.store_errors(self.url, "read"):
                got = fs.s3_client().get_object(Bucket=self.bucket, Key=self.key)
                return got["ETag"], got["Body"].read()
        except FileNotFoundError:
            return None

    def replace(self, version: str, body: bytes) -> str | None:
        from botocore.exceptions import ClientError

        try:
            with fs.store_errors(self.url, "write"):
                try:
                    put = fs.s3_client().put_object(
                        Bucket=self.bucket, Key=self.key, Body=body, IfMatch=version
                    )
                except ClientError as exc:
                    if self._refused(exc):
                        return None
                    raise
        except FileNotFoundError:  # gone (If-Match on no object: NoSuchKey)
            return None
        return put["ETag"]

    def delete(self, version: str) -> None:
        from botocore.exceptions import ClientError, ParamValidationError

        client = fs.s3_client()
        try:
            client.delete_object(Bucket=self.bucket, Key=self.key, IfMatch=version)
        except (ClientError, ParamValidationError) as exc:
            unsupported = isinstance(exc, ParamValidationError) or self._code(exc) in (
                "NotImplemented",
                "501",
            )
            if not unsupported:
                return  # another build's lease now, or the store failing: it expires
            # a store (or a botocore) without conditional deletes: delete it only while
            # it is ours
            current = self.read()
            if current is not None and current[0] == version:
                client.delete_object(Bucket=self.bucket, Key=self.key)


class GcsLeaseObject:
    def __init__(self, url: str, seconds: float) -> None:
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.url = url
        self.key = bucket_and_key(url)[1]
        # A renewal or a release that is still retrying when the next beat comes is late:
        # give up then (the next beat tries again) instead of holding the build's exit.
        self.patient = DEFAULT_RETRY.with_timeout(max(1.0, seconds / 3))
        self.timeout = max(1.0, seconds / 3)

    def _blob(self) -> Any:
        from openwit.stores import gcs_bucket

        return gcs_bucket(self.url).blob(self.key)

    def _write(self, expected: int, body: bytes, **limits: Any) -> str | None:
        from google.api_core.exceptions import PreconditionFailed

        blob = self._blob()
        with fs.store_errors(self.url, "write"):
            try:
                blob.upload_from_string(
                    body, "application/json", if_generation_match=expected, **limits
                )
            except PreconditionFailed:
                return None
        return str(blob.generation)

    def create(self, body: bytes) -> str | None:
        return self._write(0, body)

    def read(self) -> tuple[str, bytes] | None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        from openwit.stores import gcs_bucket

        for _ in range(3):  # rewritten between the two requests: read it again
            with fs.store_errors(self.url, "read"):
                current = gcs_bucket(self.url).get_blob(self.key)
                if current is None:
                    return None
                live = int(current.generation)
                try:
                    body = self._blob().download_as_bytes(if_generation_match=live)
                except (NotFound, PreconditionFailed):
                    continue
            return str(live), body
        raise StorageError(f"cannot read {self.url}: it changed under three reads in a row")

    def replace(self, version: str, body: bytes) -> str | None:
        return self._write(int(version), body, retry=self.patient, timeout=self.timeout)

    def delete(self, version: str) -> None:
        from google.api_core.exceptions import NotFound, PreconditionFailed

        with contextlib.suppress(NotFound, PreconditionFailed):  # gone, or another's now
            self._blob().delete(
                if_generation_match=int(version), retry=self.patient, timeout=self.timeout
            )
