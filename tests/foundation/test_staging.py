"""openwit.staging against the real S3 server on 127.0.0.1: a command's output folder given
as a URL is written locally and uploaded when the command succeeds; files of a bucket are
read through local copies."""

from __future__ import annotations

import pytest

from openwit import fs
from openwit.report.runs import relative_link
from openwit.staging import local_file, output_folder, upload_folder


def _write(folder, files):
    for name, text in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def test_a_local_output_folder_is_the_folder_itself(tmp_path):
    target = tmp_path / "a" / "b"
    with output_folder(str(target)) as folder:
        assert folder == target and folder.is_dir()
        (folder / "x.txt").write_text("x")
    assert (target / "x.txt").read_text() == "x"


def test_a_bucket_output_folder_is_uploaded_when_the_block_succeeds(bucket, s3):
    url = f"{bucket}/reports/one"
    with output_folder(url, owned=("thumbs",), last=("index.html",)) as folder:
        _write(
            folder, {"index.html": "page", "a.json": "{}", "thumbs/1.png": "1", "thumbs/2.png": "2"}
        )
        assert not s3.keys(bucket.removeprefix("s3://"))  # nothing before the end
    keys = s3.keys(bucket.removeprefix("s3://"))
    assert sorted(keys) == ["reports/one/a.json", "reports/one/index.html",
                            "reports/one/thumbs/1.png", "reports/one/thumbs/2.png"]  # fmt: skip


def test_a_failed_block_uploads_nothing(bucket, s3):
    with pytest.raises(RuntimeError), output_folder(f"{bucket}/r") as folder:
        (folder / "index.html").write_text("half a page")
        raise RuntimeError("the command failed")
    assert s3.keys(bucket.removeprefix("s3://")) == {}


def test_a_rerun_rewrites_changed_files_and_removes_its_own_stale_ones_only(bucket, s3, tmp_path):
    url = f"{bucket}/r"
    fs.write_text(f"{url}/notes-of-the-user.txt", "mine")
    first, second = tmp_path / "first", tmp_path / "second"
    _write(first, {"index.html": "v1", "same.json": "{}", "thumbs/1.png": "1", "thumbs/2.png": "2"})
    assert len(upload_folder(first, url, owned=("thumbs",), last=("index.html",))) == 4
    _write(second, {"index.html": "v2", "same.json": "{}", "thumbs/1.png": "1"})
    written = upload_folder(second, url, owned=("thumbs",), last=("index.html",))
    assert written == [f"{url}/index.html"]  # unchanged bytes are not sent again
    keys = s3.keys(bucket.removeprefix("s3://"))
    assert sorted(keys) == [
        "r/index.html",
        "r/notes-of-the-user.txt",
        "r/same.json",
        "r/thumbs/1.png",
    ]
    assert fs.read_text(f"{url}/index.html") == "v2"


def test_the_page_goes_up_after_what_it_links(bucket, tmp_path, monkeypatch):
    order = []
    write = fs.write_bytes

    def recorded(url, data, **options):
        order.append(url.rsplit("/", 1)[-1])
        return write(url, data, **options)

    monkeypatch.setattr(fs, "write_bytes", recorded)
    _write(tmp_path, {name: name for name in ("a.png", "index.html", "z.json", "t/1.png")})
    upload_folder(tmp_path, f"{bucket}/r", last=("index.html",))
    assert order[-1] == "index.html" and sorted(order) == ["1.png", "a.png", "index.html", "z.json"]


def test_a_missing_object_is_file_not_found_as_a_missing_file_is(any_bucket, tmp_path):
    for call in (
        lambda: fs.modified(f"{any_bucket}/none"),
        lambda: fs.copy(f"{any_bucket}/none", f"{any_bucket}/x"),
        lambda: fs.read_bytes(f"{any_bucket}/none"),
    ):
        with pytest.raises(FileNotFoundError):
            call()
    with pytest.raises(FileNotFoundError):
        fs.modified(tmp_path / "none")


def test_a_file_in_a_bucket_is_read_through_one_local_copy(bucket):
    fs.write_bytes(f"{bucket}/ck/model.pt", b"weights")
    copy = local_file(f"{bucket}/ck/model.pt")
    assert copy.read_bytes() == b"weights" and copy.name == "model.pt"
    assert local_file(f"{bucket}/ck/model.pt") == copy
    with pytest.raises(FileNotFoundError):
        local_file(f"{bucket}/ck/missing.pt")


@pytest.mark.parametrize(
    ("page", "report", "link"),
    [
        (
            "s3://b/runs/audit/index.html",
            "s3://b/builds/x/report",
            "../../../runs/audit/index.html",
        ),
        ("s3://b/x/audit/index.html", "s3://b/x/report/", "../audit/index.html"),
        ("s3://other/audit/index.html", "s3://b/x/report", None),
        ("s3://b/audit/index.html", "/data/x/report", None),
        ("/data/audit/index.html", "/data/x/report", "../../audit/index.html"),
    ],
)
def test_a_report_links_to_an_audit_page_only_where_a_browser_can_follow(page, report, link):
    assert relative_link(page, report) == link
