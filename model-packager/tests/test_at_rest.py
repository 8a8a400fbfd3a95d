"""Objects changed at rest on the S3 server's disk (issue #13, item 5): the bucket is checked, not trusted.

The S3 gateway keeps each object as a file under its data folder, with the size and our sha256
metadata beside it; flipping bytes in that file changes what a server would download while every
listing and HEAD still looks right. Only reading the content back finds it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.s3 import S3Server
from emotion_contract.documents import dump
from emotion_contract.layout import Layout
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket, Endpoint
from model_packager.audit import check_ready, check_version
from model_packager.manifest import LocalTree
from model_packager.publish import publish

LAYOUT = Layout("emotion")
DAMAGED = "triton/emotion/1/model.onnx"


@pytest.fixture
def bucket(endpoint: Endpoint) -> Bucket:
    return Bucket(endpoint)


def wait_argv(s3: S3Server, bucket: str, *options: str) -> list[str]:
    return ["wait", "--endpoint", s3.endpoint, "--bucket", bucket, *options]


def flip_a_byte(s3: S3Server, bucket: str, key: str, offset: int = 4096) -> None:
    path: Path = s3.root / "data" / bucket / key
    with path.open("r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0xFF]))


def test_an_intact_version_passes_both_depths(tree: LocalTree, bucket: Bucket) -> None:
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    for depth in ("metadata", "content"):
        audit = check_ready(bucket, LAYOUT, depth=depth)
        assert audit is not None
        assert (audit.version, audit.problems) == (1, ())


def test_bytes_changed_at_rest_are_found_by_content_only(
    tree: LocalTree, bucket: Bucket, s3_server: S3Server, bucket_name: str
) -> None:
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    flip_a_byte(s3_server, bucket_name, DAMAGED)
    assert check_version(bucket, LAYOUT, 1, depth="metadata").intact  # the metadata cannot see it
    audit = check_version(bucket, LAYOUT, 1, depth="content")
    assert audit.problems == (f"{DAMAGED}: its content differs from the manifest (changed at rest)",)
    assert audit.summary() == f"version 1: {DAMAGED}: its content differs from the manifest (changed at rest)"


def test_a_missing_object_and_a_changed_manifest_are_found_from_metadata(
    tree: LocalTree, bucket: Bucket, s3_server: S3Server, bucket_name: str
) -> None:
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    (s3_server.root / "data" / bucket_name / "ovms/emotion/1/model.bin").unlink()
    assert check_version(bucket, LAYOUT, 1).problems == ("ovms/emotion/1/model.bin: missing",)
    flip_a_byte(s3_server, bucket_name, LAYOUT.manifest(1), offset=10)
    audit = check_ready(bucket, LAYOUT)
    assert audit is not None
    assert audit.problems == ("manifests/emotion/1.json differs from the checksum in READY",)


def test_a_rerun_over_a_damaged_version_publishes_the_build_again(
    tree: LocalTree, bucket: Bucket, s3_server: S3Server, bucket_name: str
) -> None:
    """The damaged version is never overwritten; the same build becomes version 2, READY and every
    pointer move to it, and both servers' trees serve it."""
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    flip_a_byte(s3_server, bucket_name, DAMAGED)
    again = publish(tree=tree, bucket=bucket, reporter=Reporter())
    assert (again.version, again.already_published) == (2, False)
    audit = check_ready(bucket, LAYOUT, depth="content")
    assert audit is not None
    assert (audit.version, audit.problems) == (2, ())
    assert not check_version(bucket, LAYOUT, 1, depth="content").intact  # left as it was found
    third = publish(tree=tree, bucket=bucket, reporter=Reporter())
    assert (third.version, third.already_published, third.uploaded_bytes) == (2, True, 0)


def test_a_resumed_publish_uploads_again_what_changed_at_rest(
    tree: LocalTree, bucket: Bucket, s3_server: S3Server, bucket_name: str
) -> None:
    """A killed publish left version 1 unfinished (its claim, its files, no manifest); one of its
    files changed at rest before the rerun. The rerun reads what it would skip and uploads that again."""
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    for key in (LAYOUT.ready, LAYOUT.manifest(1)):  # as if the run had been killed before them
        (s3_server.root / "data" / bucket_name / key).unlink()
    flip_a_byte(s3_server, bucket_name, DAMAGED)
    resumed = publish(tree=tree, bucket=bucket, reporter=Reporter())
    assert resumed.version == 1
    assert resumed.uploaded_objects >= 1
    assert resumed.skipped_objects == len([k for k in tree.manifest["objects"] if "/1/" in k]) - 1
    audit = check_ready(bucket, LAYOUT, depth="content")
    assert audit is not None
    assert (audit.version, audit.problems) == (1, ())


def test_verify_checks_the_published_version_in_the_bucket(
    packager, tree: LocalTree, bucket: Bucket, s3_server: S3Server, bucket_name: str, s3_env
) -> None:
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    where = ["--endpoint", s3_server.endpoint]
    intact = packager("verify", f"s3://{bucket_name}", *where, env=s3_env)
    assert intact.code == 0, intact.stderr
    assert intact.json == {
        "bucket": bucket_name,
        "name": "emotion",
        "version": 1,
        "intact": True,
        "depth": "content",
    }
    flip_a_byte(s3_server, bucket_name, DAMAGED)
    assert packager("verify", f"s3://{bucket_name}", *where, "--depth", "metadata", env=s3_env).code == 0
    damaged = packager("verify", f"s3://{bucket_name}", *where, env=s3_env)
    assert damaged.code == 3
    assert damaged.error == (
        f"model-packager: s3://{bucket_name} does not match its manifest: "
        f"version 1: {DAMAGED}: its content differs from the manifest (changed at rest)"
    )
    assert packager("verify", f"s3://{bucket_name}", env=s3_env).error == (
        f"model-packager: verify s3://{bucket_name} needs --endpoint, the S3 server that holds the bucket"
    )


def test_wait_does_not_report_a_damaged_version_ready(
    packager, tree: LocalTree, bucket: Bucket, s3_server: S3Server, bucket_name: str, s3_env
) -> None:
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    (s3_server.root / "data" / bucket_name / "ovms/emotion/1/model.bin").unlink()
    result = packager(*wait_argv(s3_server, bucket_name, "--timeout", "1", "--poll", "0.2"), env=s3_env)
    assert result.code == 7
    assert result.error == (
        f"model-packager: a version of emotion was not published in bucket {bucket_name} within 1 s "
        "(READY names 1, but version 1: ovms/emotion/1/model.bin: missing)"
    )


def test_wait_passes_a_number_that_was_claimed_and_never_published(
    packager, tree: LocalTree, bucket: Bucket, s3_server: S3Server, bucket_name: str, s3_env, other_build
) -> None:
    """Version 2 was claimed by a run killed for good (another build took over): READY names 3, and
    `wait --version 2` (this version or newer) returns 3 instead of waiting for 2 forever."""
    publish(tree=tree, bucket=bucket, reporter=Reporter())
    assert bucket.put(LAYOUT.claim(2), dump({"fingerprint": "sha256:abandoned"}), create_only=True)
    assert publish(tree=other_build("other"), bucket=bucket, reporter=Reporter()).version == 3
    result = packager(*wait_argv(s3_server, bucket_name, "--version", "2", "--timeout", "5"), env=s3_env)
    assert result.code == 0, result.stderr
    assert result.json == {"name": "emotion", "version": 3}


def test_a_build_that_fails_its_gate_claims_no_version(
    packager, undecided_stand_in: Path, s3_server: S3Server, bucket_name: str, s3_env, tmp_path: Path
) -> None:
    """`run` claims a number only after the build passed: a failed one leaves no orphan claim."""
    result = packager(
        "run", "--model", str(undecided_stand_in), "--precision", "int8", "--text", "off",
        "--endpoint", s3_server.endpoint, "--bucket", bucket_name, "--work-dir", str(tmp_path),
        env=s3_env,
    )  # fmt: skip
    assert result.code == 4, result.stderr
    assert s3_server.client().bucket_exists(bucket_name)  # the run did look at the bucket first
    assert list(s3_server.client().list_objects(bucket_name, recursive=True)) == []
    assert list(tmp_path.iterdir()) == []
