"""``openwit report --audit URL --train URL``: an audit and a training run kept in a bucket
(the real S3 server on 127.0.0.1) appear in a build's report as they do from disk."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from openwit import fs
from openwit.cli import main


def _upload(folder: Path, url: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fs.write_bytes(fs.join(url, path.relative_to(folder).as_posix()), path.read_bytes())


def test_an_audit_and_a_run_in_a_bucket_are_in_the_report(
    demo_build, build_dir, bucket, tmp_path, capsys
):
    _upload(demo_build.audit_dir, f"{bucket}/audit")
    _upload(demo_build.train_run, f"{bucket}/run")
    on_disk, in_bucket = tmp_path / "on-disk", tmp_path / "in-bucket"
    shutil.copytree(build_dir, on_disk)
    shutil.copytree(build_dir, in_bucket)
    local = ["--audit", str(demo_build.audit_dir), "--train", str(demo_build.train_run)]
    assert main(["report", "--build", str(on_disk), *local]) == 0
    remote = ["--audit", f"{bucket}/audit", "--train", f"{bucket}/run"]
    assert main(["report", "--build", str(in_bucket), *remote]) == 0
    assert "note:" not in capsys.readouterr().out

    def facts(build: Path) -> dict:
        return json.loads((build / "report" / "report.json").read_text())

    disk, bucket_facts = facts(on_disk), facts(in_bucket)
    assert bucket_facts["audit"]["dir"] == f"{bucket}/audit"
    assert bucket_facts["training"]["dir"] == f"{bucket}/run"
    assert bucket_facts["audit"]["page"] is None  # a local page cannot link into a bucket
    for key in ("audit", "training"):
        assert {k: v for k, v in bucket_facts[key].items() if k not in ("dir", "page")} == {
            k: v for k, v in disk[key].items() if k not in ("dir", "page")
        }
    assert bucket_facts["training"]["loss_curve"]  # metrics.jsonl was read from the bucket
    page = (in_bucket / "report" / "index.html").read_text()
    assert 'id="training"' in page and "top-1 / chance" in page
