"""publish against the real S3 server: atomic for the servers, idempotent, never overwriting.

The interruption tests kill the packager (SIGKILL) or stop the S3 server at chosen points of a
publish, check that nothing a server could load is half there, and that a rerun completes the
same version. The S3 gateway writes an object's file only once the object is complete, so the
tests watch its data folder to know how far the publish got.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devstack.s3 import S3Server
from emotion_contract.documents import dump
from emotion_contract.layout import version_of
from emotion_contract.s3 import Bucket
from model_packager.manifest import LocalTree


def _objects(s3: S3Server, bucket: str) -> dict[str, dict]:
    client = s3.client()
    found = {}
    for obj in client.list_objects(bucket, recursive=True):
        stat = client.stat_object(bucket, obj.object_name)
        meta = {k.lower(): v for k, v in stat.metadata.items()}
        found[obj.object_name] = {"size": stat.size, "sha256": meta.get("x-amz-meta-sha256")}
    return found


def _expected(tree: LocalTree, version: int) -> dict[str, dict]:
    """The tree's version-folder objects as they are named in the bucket for `version`."""
    expected = {}
    for key, entry in tree.manifest["objects"].items():
        if version_of(key) is not None:
            parts = key.split("/")
            parts[2] = str(version)
            expected["/".join(parts)] = entry
    return expected


def assert_nothing_partial_is_visible(s3: S3Server, bucket: str, tree: LocalTree, version: int) -> None:
    """What each server would load is complete: OVMS needs the .xml and .bin pair, Triton loads the
    version its config.pbtxt pins, clients trust READY."""
    objects = _objects(s3, bucket)
    expected = _expected(tree, version)
    served = set()
    for key in objects:  # OVMS loads a version folder once it holds both files of the IR
        if key.startswith("ovms/") and key.endswith("/model.xml") and key[:-4] + ".bin" in objects:
            served.add(key.rsplit("/", 1)[0])
    for key in objects:
        match = re.match(r"^triton/([^/]+)/config\.pbtxt$", key)
        if match:
            config = s3.client().get_object(bucket, key).read().decode()
            pinned = re.search(r"versions: \[ (\d+) \]", config)
            assert pinned, key
            served.add(f"triton/{match.group(1)}/{pinned.group(1)}")
    for folder in sorted(f for f in served if version_of(f + "/") == version):
        wanted = {k: v for k, v in expected.items() if k.startswith(folder + "/")}
        assert wanted, f"{folder} is served but is not part of the build"
        for key, entry in wanted.items():
            assert objects.get(key) == entry, (
                f"{folder} is visible to a server but {key} is missing or differs"
            )
    if "manifests/emotion/READY" in objects:
        ready = json.loads(s3.client().get_object(bucket, "manifests/emotion/READY").read())
        assert f"manifests/emotion/{ready['version']}.json" in objects
        for key, entry in _expected(tree, ready["version"]).items():
            assert objects.get(key) == entry, (
                f"READY names version {ready['version']} but {key} is not complete"
            )


def test_publish_uploads_every_object_then_ready(
    packager, tree, s3_server, bucket_name, bucket_args, s3_env
) -> None:
    result = packager("publish", str(tree.root), *bucket_args, env=s3_env)
    assert result.code == 0, result.stderr
    assert result.json == {
        "version": 1,
        "already_published": False,
        "uploaded_objects": len(tree.manifest["objects"]),
        "uploaded_bytes": sum(e["size"] for e in tree.manifest["objects"].values()),
        "skipped_objects": 0,
    }
    objects = _objects(s3_server, bucket_name)
    for key, entry in tree.manifest["objects"].items():
        assert objects[key] == entry, key
    manifest = json.loads(s3_server.client().get_object(bucket_name, "manifests/emotion/1.json").read())
    assert manifest["fingerprint"] == tree.manifest["fingerprint"]
    assert manifest["objects"] == tree.manifest["objects"]
    ready = json.loads(s3_server.client().get_object(bucket_name, "manifests/emotion/READY").read())
    assert ready["version"] == 1
    steps = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert {"upload", "pointers"} <= {s.get("step") for s in steps}  # one JSON line per step

    again = packager("publish", str(tree.root), *bucket_args, env=s3_env)
    assert again.code == 0, again.stderr
    assert again.json["already_published"] is True
    assert again.json["uploaded_bytes"] == 0
    assert again.json["version"] == 1


def test_run_skips_the_build_when_the_same_build_is_published(
    packager, tree, stand_in, bucket_args, s3_env, sample, tmp_path
) -> None:
    """The same checkpoint copied to another folder is the same build: nothing is exported again."""
    sample_file = tmp_path / "sample.txt"
    sample_file.write_text("\n".join(sample) + "\n")
    assert packager("publish", str(tree.root), *bucket_args, env=s3_env).code == 0
    moved = shutil.copytree(stand_in, tmp_path / ".cache" / "moved")
    result = packager(
        "run", "--model", str(moved), "--sample-file", str(sample_file), *bucket_args, env=s3_env
    )
    assert result.code == 0, result.stderr
    assert result.json["already_published"] is True
    assert result.json["version"] == 1
    steps = {json.loads(line).get("step") for line in result.stderr.splitlines() if line.startswith("{")}
    assert "resolve" in steps
    assert not steps & {"load", "export-onnx", "convert-ir", "parity"}


def test_a_taken_version_number_is_skipped_and_the_pointers_name_the_new_one(
    packager, tree, s3_server, bucket_name, bucket_args, s3_env
) -> None:
    client = s3_server.client()
    client.make_bucket(bucket_name)
    client.put_object(bucket_name, "ovms/emotion/1/model.xml", io.BytesIO(b"<net/>"), 6)  # someone else's
    result = packager("publish", str(tree.root), *bucket_args, env=s3_env)
    assert result.code == 0, result.stderr
    assert result.json["version"] == 2
    assert client.get_object(bucket_name, "ovms/emotion/1/model.xml").read() == b"<net/>"  # untouched
    config = client.get_object(bucket_name, "triton/emotion/config.pbtxt").read().decode()
    assert "versions: [ 2 ]" in config
    assert_nothing_partial_is_visible(s3_server, bucket_name, tree, 2)
    manifest = json.loads(client.get_object(bucket_name, "manifests/emotion/2.json").read())
    assert manifest["models"]["tokenizer"] == {"key": "triton/emotion/2/tokenizer.json"}  # not the tree's 1


def test_a_version_is_never_overwritten(packager, tree, s3_server, bucket_name, bucket_args, s3_env) -> None:
    client = s3_server.client()
    client.make_bucket(bucket_name)
    claim = dump({"fingerprint": tree.manifest["fingerprint"], "claimed": "earlier", "by": "a killed run"})
    client.put_object(bucket_name, "manifests/emotion/1.claim", io.BytesIO(claim), len(claim))
    client.put_object(bucket_name, "ovms/emotion/1/model.bin", io.BytesIO(b"tampered"), 8)
    result = packager("publish", str(tree.root), *bucket_args, env=s3_env)
    assert result.code == 8
    assert result.error == (
        f"model-packager: ovms/emotion/1/model.bin already exists in bucket {bucket_name} "
        "with other content; versions are never overwritten"
    )
    assert client.get_object(bucket_name, "ovms/emotion/1/model.bin").read() == b"tampered"
    assert "manifests/emotion/READY" not in _objects(s3_server, bucket_name)


def _publish_in_background(tree: LocalTree, s3: S3Server, bucket: str, budget: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "model_packager", "--log-format", "json", "publish", str(tree.root),
         "--endpoint", s3.endpoint, "--bucket", bucket, "--retry-budget", str(budget)],
        env={**os.environ, **s3.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _wait_for_file(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, f"publish ended before {path.name} appeared: {proc.stderr.read()}"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.005)


@pytest.mark.parametrize(
    "trigger",
    [
        "manifests/emotion/1.claim",  # claimed, nothing uploaded
        "ovms/emotion/1/model.bin",  # the IR's weights without its .xml
        "triton/emotion-tokenizer/1/char_table.json",  # the tokenizer step's table, not its model.py
        "triton/emotion/1/tokenizer.json",  # the client tokenizer, before the ONNX file
        "triton/emotion/1/model.onnx",  # Triton's file, before the pointer names version 1
        "ovms/emotion-text/1/model.xml",  # OVMS's text model complete, its token model not
        "ovms/emotion/1/model.xml",  # every object of the version, no pointer yet
        "triton/emotion/config.pbtxt",  # the first pointer written, the others not
        "triton/emotion-text/config.pbtxt",  # the last pointer written, manifest and READY not yet
        "manifests/emotion/1.json",  # the manifest, READY not yet
        "manifests/emotion/READY",  # READY moved, the pointers not yet settled
    ],
)
def test_killed_publish_leaves_nothing_partial_and_a_rerun_completes(
    trigger, packager, tree, fresh_s3, bucket_name, s3_env, one_version, endpoint_of
) -> None:
    """SIGKILL once `trigger` is complete in the bucket (the gateway writes an object's file at the
    end of its upload). Nothing a server would load is partial; the rerun resumes version 1 and ends
    with the bucket on one version (audit and pointers)."""
    fresh_s3.client().make_bucket(bucket_name)
    proc = _publish_in_background(tree, fresh_s3, bucket_name, budget=30)
    try:
        _wait_for_file(fresh_s3.root / "data" / bucket_name / trigger, proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert_nothing_partial_is_visible(fresh_s3, bucket_name, tree, 1)

    rerun = packager("publish", str(tree.root), "--endpoint", fresh_s3.endpoint, "--bucket", bucket_name,
                     env=fresh_s3.env())  # fmt: skip
    assert rerun.code == 0, rerun.stderr
    assert rerun.json["version"] == 1  # the claimed number is resumed, not a new one
    assert_nothing_partial_is_visible(fresh_s3, bucket_name, tree, 1)
    objects = _objects(fresh_s3, bucket_name)
    assert set(_expected(tree, 1)) <= set(objects)
    assert "manifests/emotion/READY" in objects
    bucket = Bucket(endpoint_of(fresh_s3, bucket_name))
    assert one_version(bucket) == 1
    assert bucket.client._list_multipart_uploads(bucket_name).uploads == []


def test_a_frozen_s3_server_fails_the_publish_within_its_budget_and_a_rerun_completes(
    packager, tree, fresh_s3, bucket_name, one_version, endpoint_of
) -> None:
    """The gateway SIGSTOPped mid-publish: it accepts connections and answers nothing. The publish
    gives up within its retry budget (exit 6) instead of waiting on the SDK's 60 s read timeout;
    once the server runs again, the rerun resumes the same version."""
    fresh_s3.client().make_bucket(bucket_name)
    proc = _publish_in_background(tree, fresh_s3, bucket_name, budget=3)
    _wait_for_file(fresh_s3.root / "data" / bucket_name / "ovms/emotion/1/model.bin", proc)
    with fresh_s3.frozen():
        frozen = time.monotonic()
        _, stderr = proc.communicate(timeout=60)
        seconds = time.monotonic() - frozen
    assert proc.returncode == 6, stderr
    assert seconds < 3 + 1 + 5  # the budget, the one-second margin of a request, and start-up slack
    error = [line for line in stderr.splitlines() if line.startswith("model-packager: ")][-1]
    assert re.match(rf"model-packager: cannot .+ at {re.escape(fresh_s3.endpoint)} within 3 s: ", error), (
        error
    )
    assert_nothing_partial_is_visible(fresh_s3, bucket_name, tree, 1)
    rerun = packager("publish", str(tree.root), "--endpoint", fresh_s3.endpoint, "--bucket", bucket_name,
                     env=fresh_s3.env())  # fmt: skip
    assert rerun.code == 0, rerun.stderr
    assert rerun.json["version"] == 1
    assert one_version(Bucket(endpoint_of(fresh_s3, bucket_name))) == 1


def test_s3_server_gone_mid_publish_fails_within_the_budget_and_a_rerun_completes(
    packager, tree, fresh_s3, bucket_name
) -> None:
    fresh_s3.client().make_bucket(bucket_name)
    proc = _publish_in_background(tree, fresh_s3, bucket_name, budget=3)
    _wait_for_file(fresh_s3.root / "data" / bucket_name / "ovms/emotion/1/model.bin", proc)
    fresh_s3.stop()
    stopped = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 6, stderr
    assert time.monotonic() - stopped < 30
    error = [line for line in stderr.splitlines() if line.startswith("model-packager: ")][-1]
    assert re.match(rf"model-packager: cannot .+ at {re.escape(fresh_s3.endpoint)} within 3 s: ", error), (
        error
    )

    fresh_s3.start()
    assert_nothing_partial_is_visible(fresh_s3, bucket_name, tree, 1)
    rerun = packager("publish", str(tree.root), "--endpoint", fresh_s3.endpoint, "--bucket", bucket_name,
                     env=fresh_s3.env())  # fmt: skip
    assert rerun.code == 0, rerun.stderr
    assert rerun.json["version"] == 1
    assert rerun.json["skipped_objects"] >= 1  # what was already there and verified is not sent again
    assert_nothing_partial_is_visible(fresh_s3, bucket_name, tree, 1)


def test_wait_returns_once_ready_names_the_version(packager, tree, bucket_args, s3_env) -> None:
    early = packager("wait", *bucket_args, "--timeout", "2", "--poll", "0.5", env=s3_env)
    assert early.code == 7
    assert early.error.startswith("model-packager: a version of emotion was not published in bucket ")
    assert early.error.endswith("within 2 s (the bucket does not exist yet)")
    assert packager("publish", str(tree.root), *bucket_args, env=s3_env).code == 0
    done = packager("wait", *bucket_args, "--version", "1", "--timeout", "10", env=s3_env)
    assert done.code == 0, done.stderr
    assert done.json == {"name": "emotion", "version": 1}
    newer = packager("wait", *bucket_args, "--version", "2", "--timeout", "1", "--poll", "0.5", env=s3_env)
    assert newer.code == 7
    assert newer.error.endswith("within 1 s (READY names version 1)")


def test_a_publish_aborts_the_unfinished_uploads_a_killed_run_left(
    packager, tree, s3_server, bucket_name, bucket_args, s3_env
) -> None:
    """A run killed in the middle of a multipart upload leaves its parts in the bucket (storage, no
    object). The next publish of that version aborts them; files up to 512 MiB go in one PUT, which a
    kill leaves nothing of."""
    client = s3_server.client()
    client.make_bucket(bucket_name)
    left = client._create_multipart_upload(bucket_name, "triton/emotion/1/model.onnx", {})
    client._upload_part(bucket_name, "triton/emotion/1/model.onnx", b"x" * (5 << 20), None, left, 1)
    assert len(client._list_multipart_uploads(bucket_name, prefix="triton/").uploads) == 1
    result = packager("publish", str(tree.root), *bucket_args, env=s3_env)
    assert result.code == 0, result.stderr
    steps = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (upload,) = [s for s in steps if s.get("step") == "upload" and s.get("status") == "done"]
    assert upload["aborted_uploads"] == 1
    assert client._list_multipart_uploads(bucket_name).uploads == []
    assert_nothing_partial_is_visible(s3_server, bucket_name, tree, 1)
