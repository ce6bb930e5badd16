"""Local disk copies of what lives in a bucket, for the parts that need files.

Some readers and writers work on local files only: Pillow and torch read eval images and
checkpoints from paths, matplotlib and the HTML pages write a folder. A command given a URL
for one of them goes through this module instead of refusing it (or, worse, taking
``s3://b/x`` for the local folder ``s3:/b/x``):

- :func:`local_copy` and :func:`local_file`: a folder or file of a bucket copied once per
  process into a temporary folder, removed when the process ends;
- :func:`output_folder`: a local folder to write a command's outputs into, uploaded to the
  URL when the command succeeds (only the files whose bytes changed; the page that links
  the others last; the files an earlier upload left under the command's own subfolders and
  this one did not write are removed).

Local paths pass through untouched: nothing is copied on a machine that has the files.
"""

from __future__ import annotations

import atexit
import contextlib
import shutil
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from openwit import fs

#: What this process copied: folders (URL -> local folder, None: nothing there) and files.
_folders: dict[str, Path | None] = {}
_files: dict[str, Path] = {}
_copies_lock = threading.Lock()


def _temporary_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="openwit-copy-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def local_copy(url: str) -> Path | None:
    """The files under ``url`` (a bucket prefix) in a temporary folder of this process, read
    16 at a time; the same folder for the same URL, removed when the process ends. None
    when nothing is there. An eval set is tens of thousands of small images, hashed or
    evaluated on one machine: copied once, read from disk after."""
    url = url.rstrip("/")
    with _copies_lock:
        if url in _folders:
            return _folders[url]
        urls = sorted(fs.list_files(url))
        folder = None
        if urls:
            folder = _temporary_folder()

            def copy(source: str) -> None:
                target = folder / source[len(url) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(fs.read_bytes(source))

            fs.map_urls(copy, urls)
        _folders[url] = folder
        return folder


def local_file(location: str | Path) -> Path:
    """``location`` as a local path: itself when local, else a copy of the file (once per
    process, removed when it ends). A missing file raises :class:`FileNotFoundError`."""
    if fs.is_local(location):
        return fs.local_path(location)
    url = str(location)
    with _copies_lock:
        copied = _files.get(url)
        if copied is None:
            data = fs.read_bytes(url)  # a missing file raises before any folder is made
            copied = _temporary_folder() / fs.basename(url)
            copied.write_bytes(data)
            _files[url] = copied
        return copied


def existing_local_file(location: str | Path) -> Path | None:
    """:func:`local_file` of ``location``, or None when there is no such file."""
    try:
        local = local_file(location)
    except FileNotFoundError:
        return None
    return local if local.is_file() else None


@contextlib.contextmanager
def output_folder(
    target: str | Path, *, owned: Sequence[str] = (), last: Sequence[str] = ()
) -> Iterator[Path]:
    """A local folder for a command's outputs to ``target``, a path or a URL.

    Local: the folder itself (created). A URL: the bucket is tried first (one line, before
    any work, when it cannot be reached), the block writes into a temporary folder, and when
    it ends without an error the files are uploaded (:func:`upload_folder`); a block that
    fails uploads nothing."""
    if fs.is_local(target):
        folder = fs.local_path(target)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    fs.probe(fs.join(str(target), "openwit-probe"))
    with tempfile.TemporaryDirectory(prefix="openwit-out-") as folder:
        yield Path(folder)
        upload_folder(Path(folder), str(target), owned=owned, last=last)


def upload_folder(
    local: Path, url: str, *, owned: Sequence[str] = (), last: Sequence[str] = ()
) -> list[str]:
    """Upload the files under ``local`` to the same names under ``url``; returns the URLs
    written. Files whose bytes are already there are left alone; the names in ``last``
    (relative, such as ``index.html``) go up after the others, so a reader who sees them
    finds what they link to. Files under the ``owned`` names (the command's own subfolders
    or files) that this upload did not bring are removed after it: a rerun showing fewer
    thumbnails leaves none of the old ones behind. Nothing else under ``url`` is touched."""
    url = url.rstrip("/")
    names = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
    final = [n for n in names if n in set(last)]

    def put(target: str) -> str | None:
        data = (local / target[len(url) + 1 :]).read_bytes()
        return target if fs.write_bytes(target, data, skip_if_same=True) else None

    # by URL: map_urls sends a bucket 16 requests at a time
    written = [u for u in fs.map_urls(put, [fs.join(url, n) for n in names if n not in final]) if u]
    written += [u for u in map(put, [fs.join(url, n) for n in final]) if u]
    keep = {fs.join(url, n) for n in names}
    stale = []
    for name in owned:
        place = fs.join(url, name)
        under = list(fs.list_files(place)) or ([place] if fs.exists(place) else [])
        stale += [found for found in under if found not in keep]
    if stale:
        fs.delete(stale)
    return written
