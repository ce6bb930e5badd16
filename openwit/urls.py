"""Locations: a local path or a URL, as strings. Naming only: no I/O, no imports of a
store's client (:mod:`openwit.fs` reads and writes them; it re-exports these)."""

from __future__ import annotations

import re
from pathlib import Path

_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][-a-zA-Z0-9+.]*)://")


def scheme(url: str) -> str:
    """``"s3"``, ``"gs"``, ... or ``""`` for a local path (``file://`` included)."""
    match = _SCHEME.match(url)
    if match is None or match.group("scheme") == "file":
        return ""
    return match.group("scheme").lower()


def is_local(url: str) -> bool:
    return scheme(str(url)) == ""


def local_path(url: str | Path) -> Path:
    """The local path of a local URL (``file://`` stripped)."""
    text = str(url)
    return Path(text.removeprefix("file://"))


def bucket_and_key(url: str) -> tuple[str, str]:
    """``("bucket", "path/to/object")`` of a store's URL (``s3://``, ``gs://`` ...)."""
    bucket, _, key = str(url).split("://", 1)[1].partition("/")
    return bucket, key


def join(base: str | Path, *parts: str) -> str:
    """``base/part/...`` with exactly one slash between parts."""
    text = str(base)
    for part in parts:
        text = text.rstrip("/") + "/" + part.lstrip("/")
    return text


def absolute(location: str | Path) -> str:
    """A location as a command records it: a local path with ``~`` expanded, made absolute
    (``file://`` stripped); a URL as given, without a trailing slash."""
    if is_local(str(location)):
        return str(local_path(location).expanduser().resolve())
    return str(location).rstrip("/")


def as_uri(location: str | Path) -> str:
    """A location as a URI (``file:///...`` for a local path, a URL as it is): how
    schedulers name data."""
    if is_local(location):
        return local_path(location).resolve().as_uri()
    return str(location)


def basename(url: str) -> str:
    return str(url).rstrip("/").rsplit("/", 1)[-1]


def parent(url: str) -> str:
    if is_local(str(url)):
        return str(local_path(url).parent)  # "shards" -> ".", as Path has it
    return str(url).rstrip("/").rsplit("/", 1)[0]
