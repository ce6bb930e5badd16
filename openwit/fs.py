"""Files by URL: the one I/O layer of a build (local paths, ``s3://``, ``gs://``, any Beam
FileSystem, and fsspec for schemes Beam lacks).

Every path a build reads or writes is a string: a local path (``/data/build``,
``file:///data/build``) or a URL. Local paths take a fast path through the OS (and keep
atomic renames); everything else goes through Beam's ``FileSystems``, which the workers of
every runner already have, or fsspec where Beam has no filesystem for the scheme.

Locations are named by :mod:`openwit.urls` and the stores' clients made by
:mod:`openwit.stores`; this module re-exports what callers use of both (``fs.join``,
``fs.configure``, ``fs.probe`` ...), so code that reads and writes imports one module.

Writes are atomic everywhere: a local file is written beside its name and renamed over it
(with the mode the umask gives, not a temporary file's 0600); an object is uploaded only
when the whole body is ready, so a failed write leaves nothing. Object stores need no
rename: an object is invisible until its upload completes.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

from openwit import stores
from openwit.stores import configure as configure
from openwit.stores import probe as probe
from openwit.stores import s3_client as s3_client
from openwit.urls import absolute as absolute
from openwit.urls import as_uri as as_uri
from openwit.urls import basename as basename
from openwit.urls import bucket_and_key
from openwit.urls import is_local as is_local
from openwit.urls import join as join
from openwit.urls import local_path as local_path
from openwit.urls import parent as parent
from openwit.urls import scheme as scheme

T = TypeVar("T")

#: Bytes a pending upload holds in memory before it spills to a local temporary file.
SPOOL_BYTES = 64 * 1024 * 1024


def _read_umask() -> int:
    """The process's umask, read without changing it where Linux tells it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # at import, before any thread of ours exists
    os.umask(mask)
    return mask


#: Mode of a file this process creates, as ``open()`` would make it (0644 under umask 022).
FILE_MODE = 0o666 & ~_read_umask()


# -- reading ------------------------------------------------------------------------------
def exists(url: str | Path) -> bool:
    url = str(url)
    if is_local(url):
        return local_path(url).exists()
    if scheme(url) == "s3":
        return stores.s3io(url).exists(url)
    fs = stores.beam_fs(url)
    return fs.exists(url) if fs else stores.fsspec_fs(url).exists(url)


def modified(url: str | Path) -> float:
    """When a file was last written, in seconds since the epoch."""
    url = str(url)
    if is_local(url):
        return local_path(url).stat().st_mtime
    if scheme(url) == "s3":
        bucket, key = bucket_and_key(url)
        with store_errors(url, "read"):
            head = stores.s3_client().head_object(Bucket=bucket, Key=key)
        return head["LastModified"].timestamp()
    fs = stores.beam_fs(url)
    if fs is None:
        return stores.fsspec_fs(url).modified(url).timestamp()
    with store_errors(url, "read"):
        return fs.last_updated(url)


def is_file(url: str | Path) -> bool:
    """A file on this machine, or an object in a store (a folder is neither)."""
    return local_path(url).is_file() if is_local(str(url)) else exists(url)


def open_input(url: str | Path) -> IO[bytes]:
    """A seekable binary stream of ``url`` (close it, or use it as a context manager)."""
    url = str(url)
    if is_local(url):
        return open(local_path(url), "rb")
    if scheme(url) == "s3":
        return stores.s3io(url).open(url, "rb")
    fs = stores.beam_fs(url)
    if fs is None:
        return stores.fsspec_fs(url).open(url, "rb")
    from apache_beam.io.filesystem import CompressionTypes

    with store_errors(url, "read"):
        stream = fs.open(url, compression_type=CompressionTypes.UNCOMPRESSED)
    return _StoreReader(stream, url)  # type: ignore[return-value]


class _StoreReader:
    """A Beam filesystem's read stream whose errors are :func:`store_errors`'s: GCS opens
    an object lazily, so a missing one fails at the first call that reaches the store
    (``tell`` and ``seek`` fetch its size; pyarrow's first call is ``tell``, a text
    wrapper's ``read1``), with the client library's 404, where a caller expects
    :class:`FileNotFoundError` as from a file. Every method of the stream is wrapped."""

    def __init__(self, stream: IO[bytes], url: str) -> None:
        self._stream, self._url = stream, url

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._stream, name)
        if not callable(attribute):  # closed, mode, name ...
            return attribute

        def translated(*args: Any, **kwargs: Any) -> Any:
            with store_errors(self._url, "read"):
                return attribute(*args, **kwargs)

        return translated

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        with store_errors(self._url, "read"):
            line = self._stream.readline()
        if not line:
            raise StopIteration
        return line

    def __enter__(self) -> _StoreReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()


def read_bytes(url: str | Path) -> bytes:
    with open_input(url) as stream:
        return stream.read()


def read_text(url: str | Path) -> str:
    return read_bytes(url).decode("utf-8")


def read_json(url: str | Path) -> Any:
    return json.loads(read_bytes(url))


#: Requests an object store serves at once for one caller (:func:`map_urls`).
REMOTE_READERS = 16


def map_urls(function: Callable[[str], T], urls: Sequence[str]) -> list[T]:
    """``[function(url) for url in urls]``, in order; :data:`REMOTE_READERS` at a time when
    any is remote. A launcher reads a file per unit (markers, count tables, eval images):
    from a bucket each is a request whose latency, not its bytes, is the cost."""
    if len(urls) > 1 and not all(is_local(url) for url in urls):
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(REMOTE_READERS) as pool:
            return list(pool.map(function, urls))
    return [function(url) for url in urls]


def list_files(prefix: str | Path) -> dict[str, int]:
    """Every file under ``prefix`` (a directory, recursively) with its size, by URL.

    A missing prefix lists nothing. Local names are given as ``prefix/relative/path``.
    """
    prefix = str(prefix).rstrip("/")
    if is_local(prefix):
        root = local_path(prefix)
        if not root.is_dir():
            return {}
        found = {}
        for dirpath, _, names in os.walk(root):
            for name in names:
                path = Path(dirpath) / name
                try:
                    found[join(prefix, str(path.relative_to(root)))] = path.stat().st_size
                except FileNotFoundError:  # removed while listing
                    continue
        return found
    if scheme(prefix) == "s3":
        return dict(stores.s3io(prefix).list_files(prefix + "/", with_metadata=False))
    fs = stores.beam_fs(prefix)
    if fs is None:
        files = stores.fsspec_fs(prefix).find(prefix, detail=True)
        return {_with_scheme(prefix, name): info.get("size", 0) for name, info in files.items()}
    with store_errors(prefix, "list"):
        result = fs.match([prefix + "/**"])[0]
    return {meta.path: meta.size_in_bytes for meta in result.metadata_list}


def _with_scheme(prefix: str, name: str) -> str:
    """fsspec lists names without their scheme; put it back."""
    return name if "://" in name else f"{scheme(prefix)}://{name}"


def glob(pattern: str) -> list[str]:
    """Files matching a glob (``*`` within a name, ``**`` across directories), sorted."""
    if is_local(pattern):
        import glob as globlib

        text = str(local_path(pattern))
        return sorted(m for m in globlib.glob(text, recursive=True) if Path(m).is_file())
    if scheme(pattern) == "s3":
        stores.bucket_tried(pattern)
    fs = stores.beam_fs(pattern)
    if fs is None:
        return sorted(_with_scheme(pattern, m) for m in stores.fsspec_fs(pattern).glob(pattern))
    with store_errors(pattern, "list"):
        return sorted(m.path for m in fs.match([pattern])[0].metadata_list)


# -- writing ------------------------------------------------------------------------------
@contextmanager
def open_output(url: str | Path) -> Iterator[IO[bytes]]:
    """A binary stream whose content appears at ``url`` whole, only if the block succeeds.

    Local: a temporary file beside ``url``, renamed over it (umask mode). Elsewhere: the
    bytes are spooled (memory, then a local temporary file) and uploaded in one go.
    """
    url = str(url)
    if is_local(url):
        path = local_path(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as stream:
                yield stream
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
        yield spool  # type: ignore[misc]
        spool.seek(0)
        _upload(url, spool)


@contextmanager
def store_errors(url: str, action: str) -> Iterator[None]:
    """A store's refusal as one :class:`StorageError` line naming the URL and the reason."""
    from openwit.errors import StorageError, access_error, google_reason, google_status

    try:
        yield
    except StorageError:
        raise
    except Exception as raised:
        exc = _client_error(raised)
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and "Error" in response:  # botocore's ClientError
            error = response["Error"]
            if str(error.get("Code")) in stores.MISSING_CODES:
                raise FileNotFoundError(f"no such object: {url}") from None  # as a local file
            reason = f"{error.get('Code', '?')}: {error.get('Message', '')}".rstrip(": ")
        elif isinstance(exc, FileNotFoundError):
            raise exc from None
        elif (status := google_status(exc)) == 404:  # no such object, or no such bucket
            if action == "read":
                raise FileNotFoundError(f"no such object: {url}") from None
            reason = "not found (HTTP 404: does the bucket exist?)"
        elif status is not None:  # Google's client: a refusal, the store failing
            reason = f"{type(exc).__name__} (HTTP {status}: {google_reason(exc)})"
        elif (access := access_error(exc)) is not None:
            raise access from None  # no credentials, no route: the store's, not the URL's
        else:
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
        raise StorageError(f"cannot {action} {url}: {reason}") from None


def _client_error(exc: BaseException) -> BaseException:
    """The store client's own error inside Beam's ``BeamIOError`` (one per path)."""
    details = getattr(exc, "exception_details", None)
    if isinstance(details, dict) and details:
        return _client_error(next(iter(details.values())))
    return exc


def _upload(url: str, stream: IO[bytes]) -> None:
    with store_errors(url, "write"):
        _upload_unchecked(url, stream)


def _upload_unchecked(url: str, stream: IO[bytes]) -> None:
    if scheme(url) == "s3":
        length = _length(stream)
        if length <= SPOOL_BYTES:  # one PUT; Beam's writer always makes a multipart upload
            bucket, key = bucket_and_key(url)
            stores.s3_client().put_object(Bucket=bucket, Key=key, Body=stream.read())
            return
        with stores.s3io(url).open(url, "wb") as out:
            shutil.copyfileobj(stream, out, 8 * 1024 * 1024)
        return
    fs = stores.beam_fs(url)
    if fs is None:
        with stores.fsspec_fs(url).open(url, "wb") as out:
            shutil.copyfileobj(stream, out, 8 * 1024 * 1024)
        return
    if scheme(url) == "gs":
        length = _length(stream)
        if length <= GCS_ONE_REQUEST_BYTES:
            _upload_to_gcs(url, stream, length)
            return
    _upload_through_beam(fs, url, stream)


#: Objects up to this size go to GCS in one request (bench/bench_gcs_writes.py, 2026-12-07:
#: 1.35-2.7x the objects a second of Beam's writer from 2 to 256 kB, with 0 or 20 ms added to
#: each request; at 1 MB 0.7-1.2x, so larger ones keep Beam's resumable upload).
GCS_ONE_REQUEST_BYTES = 256 * 1024


def _length(stream: IO[bytes]) -> int:
    """The bytes of a seekable stream (it is left at its start)."""
    stream.seek(0, io.SEEK_END)
    length = stream.tell()
    stream.seek(0)
    return length


def _upload_to_gcs(url: str, stream: IO[bytes], length: int) -> None:
    """A small object in one request (a multipart upload): Beam's writer always opens a
    resumable upload session first, two requests for every marker and small unit file."""
    from google.cloud.storage.retry import DEFAULT_RETRY

    blob = stores.gcs_bucket(url).blob(bucket_and_key(url)[1])
    # the same bytes to the same name: safe to retry, which Google's client only does for
    # uploads it is told are
    blob.upload_from_file(stream, size=length, retry=DEFAULT_RETRY)


def _upload_through_beam(fs: Any, url: str, stream: IO[bytes]) -> None:
    from apache_beam.io.filesystem import CompressionTypes

    out = fs.create(url, compression_type=CompressionTypes.UNCOMPRESSED)
    try:
        shutil.copyfileobj(stream, out, 8 * 1024 * 1024)
    finally:
        out.close()


def write_bytes(url: str | Path, data: bytes, *, skip_if_same: bool = False) -> bool:
    """Write ``data`` atomically; with ``skip_if_same`` an identical file is left alone
    (its mtime does not change). Returns whether it was written."""
    if skip_if_same:
        try:
            if read_bytes(url) == data:
                return False
        except (FileNotFoundError, OSError):
            pass
    with open_output(url) as stream:
        stream.write(data)
    return True


def dumps_json(value: Any) -> str:
    """The project's JSON layout: indented, keys in insertion order, trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"


def write_json(url: str | Path, value: Any, *, skip_if_same: bool = True) -> bool:
    return write_bytes(url, dumps_json(value).encode("utf-8"), skip_if_same=skip_if_same)


def write_text(url: str | Path, text: str, *, skip_if_same: bool = False) -> bool:
    return write_bytes(url, text.encode("utf-8"), skip_if_same=skip_if_same)


def makedirs(url: str | Path) -> None:
    """Create a local directory (object stores have none to create)."""
    if is_local(str(url)):
        local_path(url).mkdir(parents=True, exist_ok=True)


def delete(urls: Iterable[str]) -> None:
    """Delete files; missing ones are fine."""
    urls = [str(u) for u in urls]
    local = [u for u in urls if is_local(u)]
    for url in local:
        local_path(url).unlink(missing_ok=True)
    remote = [u for u in urls if not is_local(u)]
    if not remote:
        return
    if scheme(remote[0]) == "s3":
        with store_errors(remote[0], "delete"):
            results = stores.s3io(remote[0]).delete_files(remote)
        failed = {p: e for p, e in results if e is not None}
        failed = {p: e for p, e in failed.items() if not _is_missing(e)}
        if failed:
            path, error = next(iter(failed.items()))
            raise OSError(f"could not delete {path}: {error}")
        return
    fs = stores.beam_fs(remote[0])
    if fs is None:
        stores.fsspec_fs(remote[0]).rm(remote)
        return
    from apache_beam.io.filesystem import BeamIOError

    try:
        fs.delete(remote)
    except BeamIOError as exc:  # a file already gone is not an error here
        if any(not isinstance(e, FileNotFoundError) for e in exc.exception_details.values()):
            still = [u for u in remote if exists(u)]
            if still:
                raise


def _is_missing(error: Any) -> bool:
    return "404" in str(error) or "NoSuchKey" in str(error)


def delete_tree(prefix: str | Path) -> None:
    """Delete everything under ``prefix`` (and the local directory itself)."""
    prefix = str(prefix)
    if is_local(prefix):
        shutil.rmtree(local_path(prefix), ignore_errors=True)
        return
    delete(list_files(prefix))


def copy_into(stream: IO[bytes], url: str) -> None:
    """Write a whole stream to ``url`` atomically."""
    with open_output(url) as out:
        shutil.copyfileobj(stream, out, 8 * 1024 * 1024)


def copy(source: str | Path, target: str | Path) -> None:
    """Copy one file to ``target``: inside S3, or inside one GCS bucket, by the store
    itself (S3's copy, GCS's objects.copy through Beam: nothing passes through this
    machine, however large), elsewhere streamed; atomic at the target."""
    source, target = str(source), str(target)
    if scheme(source) == scheme(target) == "s3":
        bucket, key = bucket_and_key(source)
        with store_errors(f"{source} to {target}", "copy"):
            stores.s3_client().copy({"Bucket": bucket, "Key": key}, *bucket_and_key(target))
        return
    if scheme(source) == scheme(target) == "gs" and (
        bucket_and_key(source)[0] == bucket_and_key(target)[0]
    ):
        fs = stores.beam_fs(source)
        with store_errors(source, "read"):  # a 404: the source (the bucket is the same)
            fs.copy([source], [target])
        return
    with open_input(source) as stream:
        copy_into(stream, target)


def upload_file(path: Path, url: str) -> None:
    """A local file to ``url``, atomically, read from the file as it goes: no copy of it is
    made on the way, whatever its size (a checkpoint of several GB)."""
    with open(path, "rb") as stream:
        if is_local(url):
            copy_into(stream, url)
        else:
            _upload(url, stream)


def bytes_io(data: bytes) -> IO[bytes]:
    return io.BytesIO(data)
