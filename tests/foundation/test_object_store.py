"""A build directory in a bucket: the runner on a real S3-compatible server (moto, 127.0.0.1)
and on the GCS emulator: every test of code that only goes through ``openwit.fs`` runs once
per store (``any_bucket``).

Toy stages keep these tests about the runner's storage: commits without renames, reruns
that rewrite nothing, a resumed attempt, the lease, a bucket that refuses writes. The whole
build in a bucket is tested with the real stages in tests/download/test_object_store_build.py
and tests/download/test_gcs_build.py.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from openwit import fs, s3clients
from openwit.builddir import BuildDir
from openwit.config import load_build_config
from openwit.errors import StorageError, UserError
from openwit.lease import LeaseLost, build_lease
from openwit.runner import BuildRunner
from tests.foundation.test_runner import LINES
from tests.foundation.toy_stages import CrashingFilter, ToyFilter, ToyIngest
from tests.s3server import read_only_credentials, s3_server


def config_in(bucket: str):
    pool = "\n".join(line if isinstance(line, str) else json.dumps(line) for line in LINES)
    fs.write_text(f"{bucket}/inputs/pool.jsonl", pool + "\n")
    return load_build_config(
        None, {"out": f"{bucket}/build", "inputs": [{"path": f"{bucket}/inputs/pool.jsonl"}]}
    )


def test_a_build_in_a_bucket_commits_reruns_nothing_and_reads_back(any_bucket, stored_versions):
    bucket = any_bucket
    config = config_in(bucket)
    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()]).run()
    assert outcome.complete
    assert outcome.funnel.stages["toy_filter"].n_out == 3
    build = BuildDir(f"{bucket}/build")
    assert build.read_table(build.stage_files("toy_filter")).num_rows == 3
    assert build.funnel()["toy_ingest"] == {"in": 7, "out": 5, "rejected": {"malformed_record": 2}}
    before = stored_versions(f"{bucket}/build/")
    assert not [k for k in before if k.endswith(".openwit.lock")]  # the lease is given back

    again = BuildRunner(config, [ToyIngest(), ToyFilter()]).run()

    assert again.ran == []
    assert stored_versions(f"{bucket}/build/") == before  # not one object rewritten


def test_an_interrupted_build_in_a_bucket_resumes_to_the_same_objects(
    any_bucket, stored_keys, tmp_path
):
    bucket = any_bucket
    config = config_in(bucket)
    with pytest.raises(Exception, match="killed"):
        BuildRunner(config, [ToyIngest(), CrashingFilter()]).run()
    outcome = BuildRunner(config, [ToyIngest(), ToyFilter()]).run(resume=True)
    assert outcome.ran == ["toy_filter"]
    resumed = BuildDir(f"{bucket}/build")
    fresh_config = load_build_config(
        None, {"out": str(tmp_path / "local"), "inputs": [{"path": config.inputs[0].path}]}
    )
    BuildRunner(fresh_config, [ToyIngest(), ToyFilter()]).run()
    local = BuildDir(tmp_path / "local")
    for stage in ("toy_ingest", "toy_filter"):
        ours = [fs.read_bytes(u) for u in resumed.stage_files(stage)]
        assert ours == [fs.read_bytes(u) for u in local.stage_files(stage)], stage
    # Only the committed attempt of each stage is left in the bucket.
    keys = stored_keys(f"{bucket}/build/stages/toy_filter/")
    attempts = {k.split("/")[3] for k in keys}
    assert attempts == {outcome.manifest["stages"]["toy_filter"]["attempt"]}


def test_the_lease_keeps_a_second_build_out_of_a_bucket(any_bucket):
    with build_lease(f"{any_bucket}/build"):
        with pytest.raises(UserError, match="another openwit build is running"):
            with build_lease(f"{any_bucket}/build"):
                pass
    with build_lease(f"{any_bucket}/build"):  # given back: taken again
        pass


def test_an_expired_lease_is_taken_over(any_bucket, stored_bytes, store_bytes):
    lock = f"{any_bucket}/build/.openwit.lock"
    stale = {"owner": "crashed-host:1:abc", "expires": 1.0}
    store_bytes(lock, json.dumps(stale).encode())
    with build_lease(f"{any_bucket}/build"):
        held = json.loads(stored_bytes(lock))
        assert held["owner"] != stale["owner"]


def test_of_builds_started_at_once_one_takes_the_lease(any_bucket):
    """The lease is created with a conditional write (S3's ``If-None-Match: *``, GCS's
    ``ifGenerationMatch=0``): of eight builds that try at the same moment, one gets it."""
    import threading

    start, tried = threading.Barrier(8), threading.Barrier(8)
    took, refused = [], []

    def build() -> None:
        fs.configure({})  # as a process would: this thread's own clients
        start.wait()
        try:
            with build_lease(f"{any_bucket}/build"):
                took.append(1)
                tried.wait(timeout=120)  # held until every build has tried
        except UserError:
            refused.append(1)
            tried.wait(timeout=120)

    threads = [threading.Thread(target=build) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert (len(took), len(refused)) == (1, 7)


def test_a_lease_another_build_took_is_lost_and_not_deleted(any_bucket, stored_bytes, store_bytes):
    """Our lease expired unrenewed (a stalled launcher) and another build took it: the next
    renewal is refused (conditional on what we last wrote), the build stops before its next
    commit, and leaving does not delete the other build's lease."""
    lock = f"{any_bucket}/build/.openwit.lock"
    theirs = json.dumps({"owner": "other-host:7:x", "expires": time.time() + 60}).encode()
    with build_lease(f"{any_bucket}/build", seconds=0.6) as lease:
        store_bytes(lock, theirs)  # the other build's takeover
        deadline = time.monotonic() + 10
        while not lease.lost and time.monotonic() < deadline:
            time.sleep(0.05)  # renewals every 0.2 s
        with pytest.raises(LeaseLost, match="taken by another build"):
            lease.check()
    assert stored_bytes(lock) == theirs


def test_leaving_after_another_build_took_the_lease_leaves_its_lease(
    any_bucket, stored_bytes, store_bytes
):
    """Our lease was taken over (we stalled past its expiry) and the build ends before its
    next renewal: giving the lease back is conditional on the version we wrote, so the
    other build's lease stays."""
    lock = f"{any_bucket}/build/.openwit.lock"
    theirs = json.dumps({"owner": "other-host:7:x", "expires": time.time() + 60}).encode()
    with build_lease(f"{any_bucket}/build"):  # renewed every 20 s: not in this test
        store_bytes(lock, theirs)
    assert stored_bytes(lock) == theirs


def test_a_lease_that_names_this_build_is_its_own(any_bucket, store_bytes, monkeypatch):
    """A create whose answer was lost is retried and finds the object there: the owner in
    it (host, pid, a random part) is this build's, so the build holds the lease instead of
    reporting itself as another build."""
    from openwit import lease as leases

    monkeypatch.setattr(leases, "_owner", lambda: "this-host:1:retried")
    mine = {"owner": "this-host:1:retried", "expires": time.time() + 60}
    store_bytes(f"{any_bucket}/build/.openwit.lock", json.dumps(mine).encode())
    with build_lease(f"{any_bucket}/build") as lease:
        lease.check()


def test_a_lease_object_that_is_not_a_lease_counts_as_expired(any_bucket, store_bytes):
    lock = f"{any_bucket}/build/.openwit.lock"
    for junk in (b"[]", b"not json", b'{"owner": "x:1:y", "expires": "soon"}'):
        store_bytes(lock, junk)
        with build_lease(f"{any_bucket}/build"):
            pass


def test_the_busy_line_names_the_holder_or_says_it_just_came():
    from openwit.lease import _busy

    held = {"owner": "host:42:abc", "expires": time.time() + 60}
    assert "lease held by host:42:abc until" in str(_busy("s3://b/build", held))
    assert str(_busy("s3://b/build", {})) == (
        "another openwit build is running in s3://b/build (it took the lease just now)"
    )


def test_a_bucket_that_refuses_writes_is_one_clear_error_and_nothing_is_complete(monkeypatch):
    with s3_server(unauthenticated_actions=4) as server:
        keys = read_only_credentials(server, "refusing")
        for key, value in {**server.environment(), **keys}.items():
            monkeypatch.setenv(key, value)
        fs.configure({})
        config = load_build_config(
            None, {"out": "s3://refusing/build", "inputs": [{"path": "s3://refusing/pool.jsonl"}]}
        )
        with pytest.raises(StorageError) as caught:
            BuildRunner(config, [ToyIngest(), ToyFilter()]).run()
        message = str(caught.value)
        assert "\n" not in message
        assert message.startswith("cannot write to s3://refusing/build")
        assert "AccessDenied" in message
        reader = server.client(
            aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"],
        )
        with pytest.raises(reader.exceptions.NoSuchKey):  # nothing marked complete
            reader.get_object(Bucket="refusing", Key="build/manifest.json")
    fs.configure({})


def test_a_lease_of_a_dead_process_on_this_machine_is_taken_at_once(any_bucket, store_bytes):
    import socket
    import sys

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True)  # fmt: skip
    dead = {
        "owner": f"{socket.gethostname()}:{finished.stdout.strip()}:x",
        "expires": time.time() + 60,
    }
    alive = {"owner": f"{socket.gethostname()}:1:x", "expires": time.time() + 60}  # init lives
    lock = f"{any_bucket}/build/.openwit.lock"
    store_bytes(lock, json.dumps(alive).encode())
    with pytest.raises(UserError, match="another openwit build"):
        with build_lease(f"{any_bucket}/build"):
            pass
    store_bytes(lock, json.dumps(dead).encode())
    with build_lease(f"{any_bucket}/build"):
        pass


def test_threads_read_and_write_a_bucket_at_once_without_mixing_streams(any_bucket, caplog):
    """Each thread reads through its own stream: interleaved reads of different objects, in
    ranges, must each get their own object's bytes, with no connection dropped for want of
    room in the client's pool. On S3 the threads share the process's client (making one per
    thread cost most of a small build's CPU); on GCS each thread has its own."""
    bucket = any_bucket
    import logging
    import threading
    from concurrent.futures import ThreadPoolExecutor

    payloads = {f"{bucket}/threads/{i:02d}.bin": bytes([i]) * (40_000 + i) for i in range(24)}

    def write_then_read(item: tuple[str, bytes]) -> bool:
        url, payload = item
        fs.write_bytes(url, payload)
        same = True
        for _ in range(10):
            with fs.open_input(url) as stream:
                head = stream.read(1000)
                stream.seek(30_000)
                tail = stream.read()
            same &= head == payload[:1000] and tail == payload[30_000:]
        return same

    with caplog.at_level(logging.WARNING), ThreadPoolExecutor(24) as pool:
        assert all(pool.map(write_then_read, payloads.items()))
        if bucket.startswith("s3://"):
            # Beam's wrapper keeps a thread's open download stream: one a thread, one boto3
            # client under them all.
            barrier = threading.Barrier(4)
            s3io = s3clients.s3io
            wrappers = list(pool.map(lambda _: (barrier.wait(), s3io().client)[1], range(4)))
            assert len({id(w) for w in wrappers}) > 1
            assert len({id(w.client) for w in wrappers}) == 1
    assert "Connection pool is full" not in caplog.text


def test_a_process_nobody_configured_makes_one_s3_client(s3, bucket):
    """A fresh process (a worker, a script) that reaches a bucket without calling
    ``fs.configure`` gets the environment's options on its first call, and keeps the
    client it made then: the configuring must not make its second call build another."""

    script = (
        "from openwit import fs, s3clients\n"
        f"fs.write_bytes('{bucket}/once', b'x')\n"
        "first = s3clients._shared[1]\n"
        f"assert fs.read_bytes('{bucket}/once') == b'x'\n"
        "print(s3clients._shared[1] is first)\n"
    )
    result = _run_script(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"


def test_a_forked_process_makes_its_own_s3_client(s3, bucket):
    """A worker forked from a process that had a client (openwit's local pool forks its
    workers) must not share that client's pooled connections with its siblings."""

    script = (
        "import os\n"
        "from openwit import fs, s3clients\n"
        f"fs.write_bytes('{bucket}/forked', b'x')\n"
        "first = s3clients._shared[1]\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        f"    ok = fs.read_bytes('{bucket}/forked') == b'x' and s3clients._shared[1] is not first\n"
        "    os._exit(0 if ok else 3)\n"
        "print(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), s3clients._shared[1] is first)\n"
    )
    result = _run_script(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["0", "True"]


def _run_script(script: str) -> subprocess.CompletedProcess[str]:
    """``script`` in a fresh interpreter, from the repository, with this environment."""
    import os
    import sys

    from tests.conftest import REPO

    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env={**os.environ}, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_an_eval_set_in_a_bucket_is_copied_whole_to_the_launcher(any_bucket):
    """The launcher hashes eval sets once, from a local copy; a set in a bucket (class
    folders of images) arrives file for file, read many at a time."""
    bucket = any_bucket

    from openwit.evalsets import EvalSet
    from openwit.staging import local_copy

    files = {
        f"class-{c}/img-{i:03d}.jpg": bytes([c, i]) * (i + 1) for c in range(3) for i in range(30)
    }
    for name, data in files.items():
        fs.write_bytes(f"{bucket}/evals/tiny/{name}", data)
    folder = local_copy(f"{bucket}/evals/tiny")
    copied = {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert copied == files
    assert local_copy(f"{bucket}/evals/tiny/") == folder  # once a process
    assert local_copy(f"{bucket}/evals/none") is None
    opened = EvalSet.open("tiny", f"{bucket}/evals/tiny")
    assert (opened.root, opened.location) == (folder, f"{bucket}/evals/tiny")
    assert len(opened.samples) == 90 and opened.classes == ["class-0", "class-1", "class-2"]


def test_an_input_folder_in_a_bucket_is_its_data_files(any_bucket):
    bucket = any_bucket
    from openwit.inputs import expand_input_paths

    for name in ("part-0.jsonl", "sub/part-1.jsonl", "_SUCCESS", "_temporary/part-2.jsonl"):
        fs.write_text(f"{bucket}/pool/{name}", '{"url": "https://a.example/x.jpg"}\n')
    config = load_build_config(
        None, {"out": f"{bucket}/build", "inputs": [{"path": f"{bucket}/pool"}]}
    )
    assert expand_input_paths(config) == [
        [f"{bucket}/pool/part-0.jsonl", f"{bucket}/pool/sub/part-1.jsonl"]
    ]
