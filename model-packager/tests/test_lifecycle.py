"""The model's lifecycle against the real S3 server (issue #15): a recorded model request runs without
the hub or a build, `fetch` gives a server exactly the version a release names whatever was published
since, and retention deletes only complete versions outside the kept set.
"""

from __future__ import annotations

import json
import re

from emotion_contract.layout import Layout, version_of
from emotion_contract.s3 import Bucket
from model_packager.audit import check_version
from model_packager.lifecycle import record

LAYOUT = Layout("emotion")


def _steps(stderr: str) -> set[str]:
    return {json.loads(line).get("step") for line in stderr.splitlines() if line.startswith("{")}


def _publish_versions(packager, tree, other_build, bucket_args, s3_env, count: int) -> None:
    """Versions 1 (the tree) to `count` (other builds of the same files)."""
    assert packager("publish", str(tree.root), *bucket_args, env=s3_env).code == 0
    for n in range(2, count + 1):
        result = packager("publish", str(other_build(f"v{n}").root), *bucket_args, env=s3_env)
        assert result.code == 0, result.stderr
        assert result.json["version"] == n


def _run_stand_in(packager, stand_in, sample, tmp_path, bucket_args, s3_env, *extra: str):
    sample_file = tmp_path / "sample.txt"
    sample_file.write_text("\n".join(sample) + "\n")
    return packager(
        "run", "--model", str(stand_in), "--sample-file", str(sample_file), *bucket_args, *extra, env=s3_env
    )


def test_a_recorded_request_runs_without_the_hub_or_a_build(
    packager, tree, stand_in, sample, tmp_path, bucket_args, s3_env
) -> None:
    """The first run of a request records the version; a second run of it (a re-created Job) never
    resolves its model: here a hub id that does not exist, offline, which resolving would refuse."""
    assert packager("publish", str(tree.root), *bucket_args, env=s3_env).code == 0
    first = _run_stand_in(packager, stand_in, sample, tmp_path, bucket_args, s3_env, "--request", "abcd1234")
    assert first.code == 0, first.stderr
    assert (first.json["version"], first.json["request"]) == (1, "abcd1234")

    again = packager(
        "run", "--model", "no-such-owner/no-such-model", "--revision", "main", "--request", "abcd1234",
        *bucket_args, env={**s3_env, "HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert again.code == 0, again.stderr
    assert again.json["version"] == 1
    assert again.json["already_published"] is True
    steps = _steps(again.stderr)
    assert "recorded" in steps
    assert not steps & {"resolve", "check-bucket", "load", "export-onnx", "parity", "upload"}


def test_fetch_gives_each_server_the_named_version_after_a_newer_one(
    packager, tree, other_build, bucket_args, s3_env, tmp_path, endpoint
) -> None:
    """Version 2 is published after 1: READY and the bucket's pointers name 2, but a pin of 1 (or the
    request recorded as 1) fetches 1, with Triton's configurations naming 1, and nothing of 2."""
    _publish_versions(packager, tree, other_build, bucket_args, s3_env, 2)
    bucket = Bucket(endpoint)
    record(bucket=bucket, layout=LAYOUT, request="release-a", version=1, fingerprint="sha256:x")

    for wanted in (["--version", "1"], ["--request", "release-a"]):
        out = tmp_path / "triton" / wanted[1]
        result = packager(
            "fetch", "--server", "triton", "--output", str(out), *wanted, "--timeout", "5", *bucket_args,
            env=s3_env,
        )  # fmt: skip
        assert result.code == 0, result.stderr
        assert result.json["version"] == 1
        for model in ("emotion", "emotion-tokenizer", "emotion-text"):
            assert sorted(p.name for p in (out / model).iterdir() if p.name.isdigit()) == ["1"], model
            assert re.findall(r"versions: \[ (\d+) \]", (out / model / "config.pbtxt").read_text()) == ["1"]
        assert (out / "emotion" / "1" / "model.onnx").stat().st_size > 0
        assert (out / "emotion" / "labels.txt").read_text().splitlines() == tree.manifest["labels"]

    ovms = tmp_path / "ovms"
    result = packager(
        "fetch", "--server", "ovms", "--output", str(ovms), "--version", "1", "--timeout", "5", *bucket_args,
        env=s3_env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert sorted(str(p.relative_to(ovms)) for p in ovms.rglob("*.xml")) == [
        "emotion-text/1/model.xml",
        "emotion/1/model.xml",
    ]
    again = packager(
        "fetch", "--server", "ovms", "--output", str(ovms), "--version", "1", "--timeout", "5", *bucket_args,
        env=s3_env,
    )  # fmt: skip
    assert (again.code, again.json["downloaded_bytes"]) == (0, 0)  # a restarted pod downloads nothing


def test_fetch_refuses_a_pin_and_a_request_together(packager, bucket_args, s3_env, tmp_path) -> None:
    result = packager(
        "fetch", "--server", "ovms", "--output", str(tmp_path), "--version", "1", "--request", "abcd",
        *bucket_args, env=s3_env,
    )  # fmt: skip
    assert result.code == 3
    assert result.error == (
        "model-packager: give --version or --request, not both (a pin replaces the request's version)"
    )


def test_fetch_of_a_version_never_published_times_out_naming_it(
    packager, tree, bucket_args, s3_env, tmp_path
) -> None:
    assert packager("publish", str(tree.root), *bucket_args, env=s3_env).code == 0
    result = packager(
        "fetch", "--server", "ovms", "--output", str(tmp_path / "o"), "--version", "7", "--timeout", "0",
        *bucket_args, env=s3_env,
    )  # fmt: skip
    assert result.code == 7
    assert "version 7 is not published (manifests/emotion/7.json is missing)" in result.error
    assert not (tmp_path / "o").exists()


def test_retention_keeps_the_newest_the_served_and_the_pinned_versions_only(
    packager, tree, other_build, stand_in, sample, tmp_path, bucket_args, s3_env, endpoint
) -> None:
    """Five versions; the run serves 1 (its request's record) and keeps the newest 2 and version 2
    (a rollback target): 3 goes, with its record, claim and manifest; the others stay whole."""
    _publish_versions(packager, tree, other_build, bucket_args, s3_env, 5)
    bucket = Bucket(endpoint)
    record(bucket=bucket, layout=LAYOUT, request="older-release", version=3, fingerprint="sha256:v3")

    result = _run_stand_in(
        packager, stand_in, sample, tmp_path, bucket_args, s3_env,
        "--request", "this-release", "--keep-versions", "2", "--keep", "2",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert (result.json["version"], result.json["deleted_versions"]) == (1, [3])

    left = {version_of(k) for k in bucket.keys("ovms/") + bucket.keys("triton/")} - {None}
    assert left == {1, 2, 4, 5}
    assert not [k for k in bucket.keys("manifests/") if re.search(r"/3\.(json|claim)$", k)]
    assert bucket.read_json(LAYOUT.request("older-release")) is None
    assert bucket.read_json(LAYOUT.request("this-release"))["version"] == 1
    for version in (1, 2, 4, 5):
        assert check_version(bucket, LAYOUT, version, depth="content").intact, version
    assert bucket.ready(LAYOUT).version == 5


def test_without_keep_versions_nothing_is_deleted(
    packager, tree, other_build, stand_in, sample, tmp_path, bucket_args, s3_env
) -> None:
    _publish_versions(packager, tree, other_build, bucket_args, s3_env, 3)
    result = _run_stand_in(packager, stand_in, sample, tmp_path, bucket_args, s3_env)
    assert result.code == 0, result.stderr
    assert result.json["deleted_versions"] == []
    assert "retention" not in _steps(result.stderr)


def test_bad_retention_values_are_refused_before_the_bucket(packager, bucket_args, s3_env) -> None:
    for extra, message in (
        (["--keep-versions", "-1"], "versions to keep must be 0 (all) or more, not -1"),
        (["--keep", "0"], "versions to keep must be positive version numbers, not 0"),
        (["--request", "A!"], "model request 'A!' must be 4-63 lowercase letters, digits and dashes"),
    ):
        result = packager("run", "--model", "x/y", *extra, *bucket_args, env=s3_env)
        assert (result.code, result.error) == (3, f"model-packager: {message}")
