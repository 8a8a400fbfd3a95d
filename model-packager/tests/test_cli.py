"""Every error path: its exit code and its one-line message; the documentation covers every command."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from emotion_contract.errors import ExitCode
from model_packager.source import resolve

README = Path(__file__).resolve().parents[1] / "README.md"


def test_usage_errors_exit_2(packager) -> None:
    result = packager("build", "--output", "x", process=True)  # the real entry point, argparse and all
    assert result.code == 2
    assert "the following arguments are required: --model" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "not a/valid id!"],
         "'not a/valid id!' is neither a local folder nor a HuggingFace hub id (owner/name)"),
        (["--model", "/nonexistent/checkpoint"],
         "/nonexistent/checkpoint is not a folder holding a HuggingFace checkpoint"),
        (["--model", "x/y", "--precision", "fp8"], "precision must be one of fp32, fp16, int8, not 'fp8'"),
        (["--model", "x/y", "--max-length", "1"], "max length must be between 3 and 8192, not 1"),
        (["--model", "x/y", "--name", "Emotion_Model"],
         "model name 'Emotion_Model' must be lowercase letters, digits and dashes"),
        (["--model", "x/y", "--tensorrt", "FP16", "--triton-device", "cpu"],
         "tensorrt needs --triton-device gpu"),
    ],
)  # fmt: skip
def test_bad_build_input_exits_3_naming_the_problem(packager, tmp_path, args, message) -> None:
    result = packager("build", *args, "--output", str(tmp_path / "out"))
    assert result.code == ExitCode.BAD_INPUT
    assert result.error == f"model-packager: {message}"
    assert not (tmp_path / "out").exists()


def test_a_checkpoint_that_is_not_a_sequence_classifier_is_refused(packager, tmp_path) -> None:
    checkpoint = tmp_path / "mlm"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(
        json.dumps({"architectures": ["BertForMaskedLM"], "model_type": "bert"})
    )
    result = packager("build", "--model", str(checkpoint), "--output", str(tmp_path / "out"))
    assert result.code == ExitCode.BAD_INPUT
    assert (
        result.error
        == f"model-packager: {checkpoint} is not a sequence classifier (architectures: BertForMaskedLM)"
    )
    (checkpoint / "config.json").unlink()
    result = packager("build", "--model", str(checkpoint), "--output", str(tmp_path / "out"))
    assert result.error == f"model-packager: {checkpoint} has no config.json: not a HuggingFace checkpoint"


class _Hub(BaseHTTPRequestHandler):
    """Answers like the HuggingFace hub does for a repository that does not exist (HTTP 404 with
    X-Error-Code: RepoNotFound), which huggingface_hub turns into RepositoryNotFoundError."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("X-Error-Message", "Repository not found")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub_without_the_repo() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_unknown_hub_model_exits_3(packager, tmp_path, hub_without_the_repo) -> None:
    env = {"HF_ENDPOINT": hub_without_the_repo, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "0"}
    result = packager("build", "--model", "nobody/no-such-model", "--output", str(tmp_path / "out"), env=env)
    assert result.code == ExitCode.BAD_INPUT
    assert (
        result.error
        == "model-packager: unknown model 'nobody/no-such-model': no such repository on the HuggingFace hub"
    )


def test_hub_model_offline_and_not_cached_is_unavailable(packager, tmp_path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = packager(
        "build",
        "--model",
        "seara/rubert-tiny2-cedr-russian-emotion",
        "--output",
        str(tmp_path / "o"),
        env=env,
    )
    assert result.code == ExitCode.UNAVAILABLE
    assert result.error == (
        "model-packager: cannot download seara/rubert-tiny2-cedr-russian-emotion from the HuggingFace hub "
        "(offline, and not in the cache); pass a local checkpoint folder instead"
    )


def test_hub_model_from_the_hub_cache_resolves_to_its_commit(stand_in, tmp_path, monkeypatch) -> None:
    """The real hub code path (huggingface_hub.snapshot_download), served from its own cache layout."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--seara--rubert-tiny2-cedr-russian-emotion"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for file in stand_in.iterdir():
        (snapshot / file.name).symlink_to(file)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = resolve(model="seara/rubert-tiny2-cedr-russian-emotion", cache_dir=tmp_path / "hub")
    assert source.commit == commit
    assert source.describe()["id"] == "seara/rubert-tiny2-cedr-russian-emotion"
    assert source.labels == ["no_emotion", "joy", "sadness", "surprise", "fear", "anger"]


def test_failed_parity_exits_4_and_writes_nothing(packager, undecided_stand_in, tmp_path) -> None:
    """INT8 on the undecided stand-in: its probabilities sit at 0.5, where quantisation noise flips
    decisions on any CPU (measured about 60 %), so the gate (>= 99 % identical decisions) fails."""
    out = tmp_path / "tree"
    result = packager(
        "build", "--model", str(undecided_stand_in), "--precision", "int8", "--text", "off",
        "--output", str(out),
    )  # fmt: skip
    assert result.code == ExitCode.PARITY, result.stderr
    assert re.fullmatch(
        r"model-packager: parity gate failed: openvino-f32 label agreement \d+\.\d% < 99%; "
        r"nothing was published",
        result.error,
    )
    assert not out.exists()
    assert not list(tmp_path.glob(".tree.partial-*"))
    details = json.loads(result.stderr.splitlines()[-1])
    assert details["passed"] is False


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--endpoint", "ftp://x", "--bucket", "models"], 3,
         "endpoint must look like http(s)://host:port, not 'ftp://x'"),
        (["--endpoint", "http://127.0.0.1:9", "--bucket", "Models_"], 3,
         "bucket name 'Models_' must be 3-63 of lowercase letters, digits, dots, dashes"),
        (["--endpoint", "http://127.0.0.1:9", "--bucket", "models", "--retry-budget", "1"], 6,
         "cannot check the bucket at http://127.0.0.1:9 within 1 s: "),
    ],
)  # fmt: skip
def test_bad_or_unreachable_endpoint(packager, tree, s3_env, args, code, message) -> None:
    result = packager("publish", str(tree.root), *args, env=s3_env)
    assert result.code == code
    assert result.error.startswith(f"model-packager: {message}")


def test_refused_credentials_exit_5(packager, tree, bucket_args, s3_env) -> None:
    result = packager(
        "publish", str(tree.root), *bucket_args, env={**s3_env, "AWS_SECRET_ACCESS_KEY": "wrong"}
    )
    assert result.code == ExitCode.CREDENTIALS
    assert re.fullmatch(
        r"model-packager: http://127\.0\.0\.1:\d+ refused the credentials \(\w+\) "
        r"while trying to check the bucket",
        result.error,
    )
    missing = packager("publish", str(tree.root), *bucket_args, env={"AWS_ACCESS_KEY_ID": ""})
    assert missing.code == ExitCode.CREDENTIALS
    assert missing.error == "model-packager: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set"


def test_verify_finds_a_tampered_tree(packager, tmp_path) -> None:
    tree = tmp_path / "tree"
    (tree / "triton/emotion").mkdir(parents=True)
    (tree / "triton/emotion/labels.txt").write_text("joy\n")
    (tree / "manifests/emotion").mkdir(parents=True)
    manifest = {"objects": {"triton/emotion/labels.txt": {"sha256": "0" * 64, "size": 4}}, "parity": {}}
    (tree / "manifests/emotion/1.json").write_text(json.dumps(manifest))
    (tree / "manifests/emotion/READY").write_text(
        json.dumps({"version": 1, "manifest": "manifests/emotion/1.json"})
    )
    result = packager("verify", str(tree))
    assert result.code == ExitCode.BAD_INPUT
    assert result.error == (
        f"model-packager: {tree} does not match its manifest: "
        "triton/emotion/labels.txt: content differs from the manifest (1 problems)"
    )
    assert packager("verify", str(tmp_path)).error == (
        f"model-packager: {tmp_path} is not a built model tree: manifests/emotion/READY is missing"
    )


def test_verify_passes_an_intact_tree(packager, tree) -> None:
    result = packager("verify", str(tree.root))
    assert result.code == 0, result.stderr
    assert result.json["intact"] is True
    assert result.json["parity"]["passed"] is True


def test_readme_documents_every_command() -> None:
    from model_packager.cli import build_parser

    readme = README.read_text()
    commands = build_parser()._subparsers._group_actions[0].choices
    for name in commands:
        assert f"model-packager {name}" in readme, name
