"""The lean tar reader reads what tarfile and webdataset write, and refuses broken tars."""

from __future__ import annotations

import io
import tarfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openwit.train.tar_reader import TarError, iter_members


def _tar(members: list[tuple[str, bytes]], fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


names = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\0/", exclude_categories=("Cs",)),
    min_size=1,
    max_size=150,
)


@settings(max_examples=80, deadline=None)
@given(
    members=st.lists(st.tuples(names, st.binary(max_size=1500)), min_size=0, max_size=6),
    fmt=st.sampled_from([tarfile.PAX_FORMAT, tarfile.GNU_FORMAT]),
)
def test_reads_every_member_tarfile_writes_long_and_unicode_names_included(members, fmt):
    if fmt == tarfile.GNU_FORMAT:
        members = [(n.encode("utf-8", "replace").decode("utf-8"), d) for n, d in members]
    read = list(iter_members(io.BytesIO(_tar(members, fmt))))
    assert read == members


def test_reads_a_webdataset_shard(tmp_path):
    import webdataset as wds

    path = tmp_path / "00000.tar"
    with wds.TarWriter(str(path)) as writer:
        writer.write({"__key__": "000000007", "jpg": b"\xff\xd8\xffdata", "txt": "a cat"})
    with path.open("rb") as handle:
        assert list(iter_members(handle)) == [
            ("000000007.jpg", b"\xff\xd8\xffdata"),
            ("000000007.txt", b"a cat"),
        ]


def test_directories_and_links_are_skipped():
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("folder")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        link = tarfile.TarInfo("link")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
        info = tarfile.TarInfo("folder/a.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    assert list(iter_members(io.BytesIO(buffer.getvalue()))) == [("folder/a.txt", b"hi")]


def test_a_truncated_tar_raises_after_the_complete_members():
    data = _tar([("a.txt", b"x" * 100), ("b.txt", b"y" * 2000)])
    stream = iter_members(io.BytesIO(data[:1500]))
    assert next(stream) == ("a.txt", b"x" * 100)
    with pytest.raises(TarError):
        next(stream)


def test_garbage_is_not_a_tar():
    with pytest.raises(TarError):
        list(iter_members(io.BytesIO(b"this is not a tar file at all" * 40)))


def test_an_empty_tar_has_no_members_and_an_empty_file_is_broken():
    assert list(iter_members(io.BytesIO(_tar([])))) == []
    with pytest.raises(TarError, match="end-of-archive"):
        list(iter_members(io.BytesIO(b"")))  # a shard whose write never got going


def test_a_tar_cut_exactly_between_two_members_is_not_taken_as_complete():
    data = _tar([("a.txt", b"x" * 100), ("b.txt", b"y" * 100)], tarfile.USTAR_FORMAT)
    first_member_end = 512 + 512  # one header block, one data block
    stream = iter_members(io.BytesIO(data[:first_member_end]))
    assert next(stream) == ("a.txt", b"x" * 100)
    with pytest.raises(TarError, match="end-of-archive"):
        next(stream)
