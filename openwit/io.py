"""Local file helpers: atomic writes, so a reader never sees half a file.

For a build directory (which may be a bucket) use :mod:`openwit.fs`; these helpers are for
files that are always local (training runs, reports, query lists).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from openwit.fs import FILE_MODE


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    On an exception the temporary file is removed and ``path`` is untouched. The temporary
    name starts with a dot and ends in ``.tmp`` so globs for finished files skip it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, FILE_MODE)  # mkstemp's 0600 would keep other accounts out
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, skip_if_same: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically; return whether the file was (re)written.

    With ``skip_if_same`` an identical existing file is left alone, so its mtime does not
    change and a rerun rewrites nothing.
    """
    path = Path(path)
    if skip_if_same and path.is_file() and path.read_bytes() == data:
        return False
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return True


def atomic_write_text(path: str | Path, text: str, *, skip_if_same: bool = False) -> bool:
    return atomic_write_bytes(path, text.encode("utf-8"), skip_if_same=skip_if_same)


def dumps_json(value: Any) -> str:
    """The project's JSON layout: indented, keys in insertion order, trailing newline."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n"


def atomic_write_json(path: str | Path, value: Any, *, skip_if_same: bool = True) -> bool:
    return atomic_write_text(path, dumps_json(value), skip_if_same=skip_if_same)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
