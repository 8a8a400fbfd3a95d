"""Bad input is refused before any work (issue #13): exit 3, one line naming the problem, nothing written.

Each checkpoint defect is a copy of the stand-in with one file left out or replaced (links to the
rest), and fails in `resolve`, before a model is loaded: no output folder, no partial folder, and
for `run` no bucket. A hung S3 server (accepts, never answers) must not hold `wait` past its timeout
or another command past its --retry-budget, by construction: a request never waits longer than
what is left of its call's time (s3.MIN_REQUEST_WAIT at the least).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from emotion_contract.errors import ExitCode
from emotion_contract.s3 import MIN_REQUEST_WAIT

UNREACHABLE = "http://127.0.0.1:9"  # the discard port: nothing listens there
#: No test reaches the real hub. Not HF_HUB_OFFLINE: huggingface_hub reads that once, at its first
#: import, and would stay offline for the rest of the session (test_cli talks to a stub hub).
NO_HUB = {"HF_ENDPOINT": UNREACHABLE}
KEYS = {"AWS_ACCESS_KEY_ID": "someone", "AWS_SECRET_ACCESS_KEY": "something"}
#: The CLI's own work around the waits on a shared CI machine (argument parsing, logging, hashing).
SLACK = 2.0

Checkpoint = Callable[..., Path]


@pytest.fixture
def checkpoint(stand_in: Path, tmp_path: Path) -> Checkpoint:
    """A copy of the stand-in without the files named in `without`, with `files` written instead."""

    def make(*, without: tuple[str, ...] = (), files: dict[str, bytes] | None = None) -> Path:
        folder = tmp_path / "checkpoint"
        folder.mkdir()
        for file in stand_in.iterdir():
            if file.name not in without and file.name not in (files or {}):
                (folder / file.name).symlink_to(file)
        for name, content in (files or {}).items():
            (folder / name).write_bytes(content)
        return folder

    return make


def _config(stand_in: Path, **changes: object) -> bytes:
    config = json.loads((stand_in / "config.json").read_text())
    config.update(changes)
    return json.dumps({k: v for k, v in config.items() if v is not None}).encode()


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}.partial-*"))


def build(packager, model: Path | str, out: Path, *args: str, env: dict[str, str] | None = None):
    return packager(
        "build", "--model", str(model), "--output", str(out), *args, env={**NO_HUB, **(env or {})}
    )


def refused(packager, model: Path | str, out: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """`build` refused as bad input (exit 3) with nothing written: its one-line message."""
    result = build(packager, model, out, *args, env=env)
    assert result.code == ExitCode.BAD_INPUT, result.stderr
    assert_nothing_written(out)
    return result.error


# -- checkpoints ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "without",
    [("tokenizer.json", "tokenizer_config.json"), ("tokenizer.json",)],
    ids=["no-tokenizer-files", "tokenizer-config-only"],
)
def test_a_checkpoint_without_a_vocabulary_is_refused(packager, checkpoint, tmp_path, without) -> None:
    """transformers would fall back to a 5-token vocabulary (every word [UNK]) and pass the gate."""
    model = checkpoint(without=without)
    error = refused(packager, model, tmp_path / "out")
    assert error == (
        f"model-packager: {model} has no tokenizer: it needs tokenizer.json, vocab.txt, vocab.json "
        "or a SentencePiece *.model next to config.json"
    )


def test_a_tokenizer_with_ids_beyond_the_embedding_is_refused(packager, stand_in, tmp_path) -> None:
    """The stand-in's 83,828-token tokenizer on a model with 1,000 embeddings: ids out of range."""
    from transformers import BertConfig, BertForSequenceClassification

    model = tmp_path / "small"
    config = BertConfig(
        vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
        max_position_embeddings=64, id2label={0: "a", 1: "b"}, label2id={"a": 0, "b": 1},
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(model)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (model / name).symlink_to(stand_in / name)
    error = refused(packager, model, tmp_path / "out")
    assert error == (
        f"model-packager: the tokenizer of {model} has token ids up to 83827, beyond the model's 1000 "
        "embeddings (vocab_size in config.json): it is not this model's tokenizer"
    )


@pytest.mark.parametrize("cut", ["half", "header"])
def test_truncated_safetensors_are_refused(packager, checkpoint, stand_in, tmp_path, cut) -> None:
    weights = (stand_in / "model.safetensors").read_bytes()
    header = 8 + int.from_bytes(weights[:8], "little")
    kept = weights[: len(weights) // 2] if cut == "half" else weights[:100]
    model = checkpoint(files={"model.safetensors": kept})
    error = refused(packager, model, tmp_path / "out")
    if cut == "half":
        assert error == (
            f"model-packager: {model / 'model.safetensors'} is truncated: it holds {len(kept) - header} "
            f"bytes of tensors, its header describes {len(weights) - header}"
        )
    else:
        assert error == (
            f"model-packager: {model / 'model.safetensors'} is not a whole safetensors file: "
            "its header is cut short or missing"
        )


THREE = {str(i): label for i, label in enumerate(("joy", "sadness", "anger"))}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id2label": THREE, "label2id": {v: int(k) for k, v in THREE.items()}},
         "the labels of {model} do not match its weights: config.json names 3, classifier.weight has "
         "6 rows (shape [6, 312])"),
        ({"num_labels": 3},
         "{model}/config.json says num_labels 3 but its id2label names 6 labels"),
        ({"id2label": {"0": "joy", "2": "anger"}, "label2id": None},
         "id2label in {model}/config.json must number its labels 0 to 1, not 0, 2"),
        ({"num_labels": "6"},
         "num_labels in {model}/config.json must be a positive integer, not '6'"),
    ],
    ids=["id2label-vs-weights", "num_labels-vs-id2label", "id2label-gap", "num_labels-string"],
)  # fmt: skip
def test_labels_that_disagree_with_the_weights_are_refused(
    packager, checkpoint, stand_in, tmp_path, changes, message
) -> None:
    model = checkpoint(files={"config.json": _config(stand_in, **changes)})
    error = refused(packager, model, tmp_path / "out")
    assert error == "model-packager: " + message.format(model=model)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"[]", "must hold a JSON object, not an array"),
        (b'"BertForSequenceClassification"', "must hold a JSON object, not a string"),
        (b"null", "must hold a JSON object, not null"),
        (b"42", "must hold a JSON object, not a number"),
        (b"\xff\xfe{}", "is not UTF-8 text: 'utf-8' codec can't decode byte 0xff in position 0: "
                        "invalid start byte"),
    ],
    ids=["array", "string", "null", "number", "not-utf8"],
)  # fmt: skip
def test_a_config_that_is_not_an_object_is_refused(packager, checkpoint, tmp_path, content, problem) -> None:
    model = checkpoint(files={"config.json": content})
    error = refused(packager, model, tmp_path / "out")
    assert error == f"model-packager: {model / 'config.json'} {problem}"


def test_max_length_above_the_positions_is_refused(packager, stand_in, tmp_path) -> None:
    """The ONNX graph would fail on any text longer than the model's 2048 position embeddings."""
    error = refused(packager, stand_in, tmp_path / "out", "--max-length", "4096")
    assert error == (
        f"model-packager: max length 4096 is more than the 2048 positions of {stand_in} "
        "(max_position_embeddings in config.json)"
    )


def _truncated(checkpoint: Checkpoint, stand_in: Path) -> Path:
    return checkpoint(files={"model.safetensors": (stand_in / "model.safetensors").read_bytes()[:1000]})


@pytest.mark.parametrize(
    ("defect", "problem"),
    [
        ("max-length", "max length 4096 is more than the 2048 positions of "),
        ("truncated-weights", "model.safetensors is not a whole safetensors file"),
        ("no-tokenizer", "has no tokenizer: it needs tokenizer.json"),
    ],
)
def test_run_refuses_bad_input_before_it_touches_the_bucket(
    packager, checkpoint, stand_in, tmp_path, s3_server, bucket_args, bucket_name, s3_env, defect, problem
) -> None:
    """`run` claims a version before it builds: bad input must fail before that, leaving no bucket."""
    if defect == "max-length":
        args = [str(stand_in), "--max-length", "4096"]
    elif defect == "truncated-weights":
        args = [str(_truncated(checkpoint, stand_in))]
    else:
        args = [str(checkpoint(without=("tokenizer.json",)))]
    work = tmp_path / "work"
    work.mkdir()
    result = packager(
        "run", "--model", *args, *bucket_args, "--work-dir", str(work), env={**s3_env, **NO_HUB}
    )
    assert result.code == ExitCode.BAD_INPUT, result.stderr
    assert problem in result.error
    assert not list(work.iterdir())
    assert not s3_server.client().bucket_exists(bucket_name)


# -- local folders --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "detail"),
    [
        ("./nope", ""),
        ("nope/", ""),
        ("models/nope", ": models/ has no nope (nor did the hub give a model of that name)"),
    ],
)
def test_a_missing_relative_folder_is_bad_input_not_unavailable(
    packager, tmp_path, monkeypatch, model, detail
) -> None:
    """`models/nope` is a hub id too; when the hub cannot give it and models/ is a folder here, it was
    a missing folder (retrying cannot fix it), not a hub outage (exit 6, retried)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    error = refused(packager, model, tmp_path / "out", env={"HF_HOME": str(tmp_path / "hf")})
    assert error == f"model-packager: {model} is not a folder holding a HuggingFace checkpoint{detail}"


# -- endpoints, region, timing options --------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("http://127.0.0.1:99999", "endpoint port must be between 1 and 65535, not 99999"),
        ("http://127.0.0.1:0", "endpoint port must be between 1 and 65535, not 0"),
        ("http://[::1", "endpoint must look like http(s)://host:port, not 'http://[::1' (Invalid IPv6 URL)"),
        ("http://127.0.0.1:x9", "endpoint must look like http(s)://host:port, not 'http://127.0.0.1:x9' "
                                "(Port could not be cast to integer value as 'x9')"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["wait", "run"])
def test_a_bad_endpoint_is_refused(packager, tmp_path, command, endpoint, message) -> None:
    extra = ["--timeout", "1"] if command == "wait" else ["--model", "x/y", "--work-dir", str(tmp_path)]
    result = packager(command, "--endpoint", endpoint, "--bucket", "models", *extra, env={**KEYS, **NO_HUB})
    assert result.code == ExitCode.BAD_INPUT, result.stderr
    assert result.error == f"model-packager: {message}"
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("env", "variable", "value"),
    [
        ({"AWS_REGION": "us east 1"}, "AWS_REGION", "us east 1"),
        ({"AWS_REGION": "", "AWS_DEFAULT_REGION": "-eu-west-1"}, "AWS_DEFAULT_REGION", "-eu-west-1"),
    ],
)
def test_a_malformed_region_is_refused(packager, env, variable, value) -> None:
    """The minio SDK raises ValueError on a region it cannot sign for: refused before any request."""
    result = packager("wait", "--endpoint", UNREACHABLE, "--bucket", "models", env={**KEYS, **env})
    assert result.code == ExitCode.BAD_INPUT, result.stderr
    assert result.error == (
        f"model-packager: {variable} {value!r} is not a region name: 1-63 letters, digits, dashes and "
        "underscores, not starting or ending with a dash or underscore"
    )


@pytest.mark.parametrize("command", ["wait", "run"])
def test_a_region_the_server_does_not_serve_is_refused(
    packager, stand_in, tmp_path, s3_server, bucket_args, bucket_name, s3_env, command
) -> None:
    """A well-formed region is passed through to the server, which refuses to authorise it
    (AuthorizationHeaderMalformed; to HEAD a bodiless 400): permanent, so bad input, not retried."""
    extra = (
        ["--timeout", "30"] if command == "wait" else ["--model", str(stand_in), "--work-dir", str(tmp_path)]
    )
    started = time.monotonic()
    result = packager(command, *bucket_args, *extra, env={**s3_env, **NO_HUB, "AWS_REGION": "eu-west-3"})
    assert result.code == ExitCode.BAD_INPUT, result.stderr
    assert result.error == (
        f"model-packager: {s3_server.endpoint} does not serve region 'eu-west-3' (AWS_REGION): The "
        'authorization header is malformed; the region "eu-west-3" is wrong; expecting "us-east-1"'
    )
    assert time.monotonic() - started < 10  # at once: not retried until the timeout
    assert not list(tmp_path.iterdir())
    assert not s3_server.client().bucket_exists(bucket_name)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["wait", "--poll", "-1"], "poll interval must be a positive number of seconds, not -1"),
        (["wait", "--poll", "0", "--timeout", "2"],
         "poll interval must be a positive number of seconds, not 0"),
        (["wait", "--timeout", "-1"], "timeout must be a number of seconds, 0 or more, not -1"),
        (["wait", "--timeout", "nan"], "timeout must be a number of seconds, 0 or more, not nan"),
        (["run", "--model", "x/y", "--retry-budget", "-1"],
         "retry budget must be a positive number of seconds, not -1"),
        (["run", "--model", "x/y", "--retry-budget", "0"],
         "retry budget must be a positive number of seconds, not 0"),
    ],
)  # fmt: skip
def test_bad_timing_options_are_refused(packager, args, message) -> None:
    result = packager(*args, "--endpoint", UNREACHABLE, "--bucket", "models", env={**KEYS, **NO_HUB})
    assert result.code == ExitCode.BAD_INPUT, result.stderr
    assert result.error == f"model-packager: {message}"


# -- a server that accepts connections and never answers ---------------------------------------------


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An S3 endpoint on 127.0.0.1 that accepts every connection and never sends a byte."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    listener.close()


def test_wait_ends_within_its_timeout_against_a_server_that_never_answers(packager, silent_server) -> None:
    """Issue #13 item 6: `wait --timeout 10` took 61 s (the client's 60 s read timeout)."""
    timeout = 3.0
    started = time.monotonic()
    result = packager(
        "wait", "--endpoint", silent_server, "--bucket", "models", "--timeout", f"{timeout:g}",
        "--poll", "0.5", env=KEYS,
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.code == ExitCode.TIMEOUT, result.stderr
    assert re.fullmatch(
        rf"model-packager: a version of emotion was not published in bucket models within 3 s \(the S3 "
        rf"server does not answer: cannot check the bucket at {re.escape(silent_server)} within 3 s: .+\)",
        result.error,
    ), result.error
    assert timeout <= elapsed < timeout + MIN_REQUEST_WAIT + SLACK


def test_run_honours_its_retry_budget_against_a_server_that_never_answers(
    packager, stand_in, silent_server, tmp_path
) -> None:
    budget = 2.0
    started = time.monotonic()
    result = packager(
        "run", "--model", str(stand_in), "--endpoint", silent_server, "--bucket", "models",
        "--retry-budget", f"{budget:g}", "--work-dir", str(tmp_path), env={**KEYS, **NO_HUB},
    )  # fmt: skip
    elapsed = time.monotonic() - started
    assert result.code == ExitCode.UNAVAILABLE, result.stderr
    assert re.fullmatch(
        rf"model-packager: cannot check the bucket at {re.escape(silent_server)} within 2 s: .*timed out.*",
        result.error,
    ), result.error
    assert elapsed < budget + MIN_REQUEST_WAIT + SLACK
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("secret", "error"),
    [
        ("minio-root", "--secret 'minio-root': expected NAME=KEY:LENGTH[,KEY:LENGTH...]"),
        ("Minio=rootUser:16", "--secret 'Minio=rootUser:16': 'Minio' is not a Secret name (a DNS subdomain)"),
        (
            "root=rootUser:4",
            "--secret 'root=rootUser:4': 'rootUser:4' is not KEY:LENGTH with a length of 8 to 256",
        ),
        ("root=rootUser", "--secret 'root=rootUser': 'rootUser' is not KEY:LENGTH with a length of 8 to 256"),
        ("root=a b:16", "--secret 'root=a b:16': 'a b:16' is not KEY:LENGTH with a length of 8 to 256"),
    ],
)
def test_credentials_refuses_a_malformed_secret_before_the_api_server(
    packager, secret: str, error: str
) -> None:
    result = packager(
        "credentials", "--secret", secret, env={"KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": ""}
    )
    assert (result.code, result.error) == (ExitCode.BAD_INPUT, f"model-packager: {error}")


def test_credentials_outside_a_pod_says_so(packager, tmp_path: Path) -> None:
    result = packager(
        "credentials",
        "--secret",
        "root=rootUser:16",
        env={"KUBERNETES_SERVICE_HOST": "", "KUBERNETES_SERVICE_PORT": ""},
    )
    assert result.code == ExitCode.BAD_INPUT
    assert (
        result.error
        == "model-packager: not in a pod: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT are not set"
    )
    missing = packager(
        "credentials", "--secret", "root=rootUser:16", "--service-account", str(tmp_path),
        env={"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"},
    )  # fmt: skip
    assert missing.code == ExitCode.BAD_INPUT
    assert (
        missing.error == f"model-packager: no service account token in {tmp_path}: No such file or directory"
    )
