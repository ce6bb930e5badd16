"""A real S3-compatible server on 127.0.0.1 for the object-store tests (moto's server mode).

The server runs as its own process (``python -m moto.server``); tests reach it the way a user
reaches any S3 endpoint: ``AWS_ENDPOINT_URL`` (boto3 and Beam's S3 client read it) and
credentials in the environment, which the fixture sets for the test and every process it
starts. Buckets are created by the test through boto3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from tests.loopback import free_port, stop, wait_for_port

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "openwit-test",
    "AWS_SECRET_ACCESS_KEY": "openwit-test",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass
class S3Server:
    endpoint: str
    process: subprocess.Popen

    def client(self, **credentials: str) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **{**_session(), **credentials})

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def environment(self) -> dict[str, str]:
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint}

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}

    def versions(self, bucket: str, prefix: str = "") -> dict[str, tuple]:
        """Each object's size, ETag and modification time (a rewrite changes the time)."""
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return {
            o["Key"]: (o["Size"], o["ETag"], o["LastModified"])
            for page in pages
            for o in page.get("Contents", [])
        }

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def write(self, bucket: str, key: str, data: bytes) -> None:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)


def _session() -> dict[str, str]:
    return {
        "region_name": CREDENTIALS["AWS_DEFAULT_REGION"],
        "aws_access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    }


@contextmanager
def s3_server(unauthenticated_actions: int | None = None) -> Iterator[S3Server]:
    """Start moto's S3 server; with ``unauthenticated_actions``, requests after that many
    are checked against IAM policies (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``)."""
    port = free_port()
    env = {**os.environ, **CREDENTIALS}
    if unauthenticated_actions is not None:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(unauthenticated_actions)
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_for_port(port, process, "moto's S3 server")
        yield S3Server(endpoint, process)
    finally:
        stop(process)


def read_only_credentials(server: S3Server, bucket: str) -> dict[str, str]:
    """An access key that may read ``bucket`` but not write it (a server started with
    ``unauthenticated_actions=4``: these four calls are the ones not checked)."""
    import boto3

    server.client().create_bucket(Bucket=bucket)
    iam = boto3.client("iam", endpoint_url=server.endpoint, **_session())
    iam.create_user(UserName="reader")
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": ["s3:Get*", "s3:List*"], "Resource": "*"}],
    }
    iam.put_user_policy(UserName="reader", PolicyName="read", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="reader")["AccessKey"]
    return {
        "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
    }
