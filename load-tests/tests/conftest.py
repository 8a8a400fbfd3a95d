"""Fixtures of the load tester's tests: a tiny packaged model and Triton repositories that serve it.

The tiny package has the packager's layout and the model contract (docs/contracts.md): a real ONNX graph
(token embeddings, mean over the attention mask, sigmoid; built with the onnx helper API) and a real
WordPiece tokenizer trained with `tokenizers` on the default corpus. The Triton test models run that same
model.onnx with ONNX Runtime inside the python backend, so the tester's reference (ONNX Runtime on the
package's file) and the server agree unless a test model is told to sleep or to answer wrong labels.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devstack.triton import STUB_PATH_VARIABLE, TritonServer
from loadtest.corpus import load_corpus

LABELS = ["no_emotion", "joy", "sadness", "surprise", "fear", "anger"]
MAX_LENGTH = 64
MODEL_PY = Path(__file__).parent / "models" / "emotion_model.py"
#: The python-backend stub only sees the numpy<2 folder; `tokenizers` (text model) comes from our venv,
#: placed after it so that numpy still resolves to the stub's copy.
VENV_SITE = next(p for p in sys.path if p.endswith("site-packages"))


def build_tiny_onnx(path: Path, vocab_size: int, *, seed: int = 7) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    labels = len(LABELS)
    token_table = rng.normal(0.0, 4.0, size=(vocab_size, labels)).astype(np.float32)
    type_table = rng.normal(0.0, 0.1, size=(2, labels)).astype(np.float32)
    batch_seq = ["batch", "sequence"]
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, batch_seq)
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", labels])
        for n in ("logits", "probabilities")
    ]
    nodes = [
        helper.make_node("Gather", ["token_table", "input_ids"], ["tokens"]),
        helper.make_node("Gather", ["type_table", "token_type_ids"], ["types"]),
        helper.make_node("Add", ["tokens", "types"], ["embedded"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "axis2"], ["mask3"]),
        helper.make_node("Mul", ["embedded", "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),
        helper.make_node("ReduceSum", ["mask", "axis1"], ["count"], keepdims=1),
        helper.make_node("Div", ["summed", "count"], ["logits"]),
        helper.make_node("Sigmoid", ["logits"], ["probabilities"]),
    ]
    initializers = [
        numpy_helper.from_array(token_table, "token_table"),
        numpy_helper.from_array(type_table, "type_table"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array([2], dtype=np.int64), "axis2"),
    ]
    graph = helper.make_graph(nodes, "tiny-emotion", inputs, outputs, initializers)
    # IR 8 (opset 17): what the ONNX Runtime of the servers and of the tester read.
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def build_tiny_tokenizer(path: Path) -> int:
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.train_from_iterator(
        load_corpus().texts,
        trainers.WordPieceTrainer(vocab_size=600, special_tokens=special, show_progress=False),
    )
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")), ("[SEP]", tokenizer.token_to_id("[SEP]"))],
    )
    tokenizer.save(str(path))
    return tokenizer.get_vocab_size()


def build_tiny_package(root: Path, *, name: str = "emotion", version: int = 1) -> Path:
    """The packager's layout (docs/contracts.md) with a tiny model, READY written last."""
    onnx_path = root / "triton" / name / str(version) / "model.onnx"
    tokenizer_path = root / "triton" / name / str(version) / "tokenizer.json"
    for path in (onnx_path, tokenizer_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    vocab_size = build_tiny_tokenizer(tokenizer_path)
    build_tiny_onnx(onnx_path, vocab_size)
    objects = {
        str(p.relative_to(root)): {
            "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "size": p.stat().st_size,
        }
        for p in (onnx_path, tokenizer_path)
    }
    manifest = {
        "name": name,
        "version": version,
        "labels": LABELS,
        "activation": "sigmoid",
        "options": {"max_length": MAX_LENGTH},
        "models": {"tokenizer": {"key": str(tokenizer_path.relative_to(root))}},
        "objects": objects,
    }
    manifest_key = f"manifests/{name}/{version}.json"
    (root / manifest_key).parent.mkdir(parents=True, exist_ok=True)
    raw = json.dumps(manifest, indent=2).encode()
    (root / manifest_key).write_bytes(raw)
    ready = {"version": version, "manifest": manifest_key, "sha256": hashlib.sha256(raw).hexdigest()}
    (root / f"manifests/{name}/READY").write_text(json.dumps(ready))
    return root


def model_config(name: str, *, text: bool, **parameters: str | int) -> str:
    """config.pbtxt of a test model: KServe contract of the token or text model, python backend."""
    # The text model takes BYTES [batch] (the contract): without Triton's batch dimension, dims [-1].
    batch_dims, max_batch = ("-1, ", 0) if text else ("", 16)
    names = ["text"] if text else ["input_ids", "attention_mask", "token_type_ids"]
    kind = "TYPE_STRING" if text else "TYPE_INT64"
    inputs = ", ".join(f'{{ name: "{n}", data_type: {kind}, dims: [ -1 ] }}' for n in names)
    outs = ["probabilities"] if text else ["logits", "probabilities"]
    outputs = ", ".join(
        f'{{ name: "{n}", data_type: TYPE_FP32, dims: [ {batch_dims}{len(LABELS)} ] }}' for n in outs
    )
    if text:
        parameters = {"max_length": MAX_LENGTH, **parameters}
    params = "\n".join(
        f'parameters {{ key: "{k}" value {{ string_value: "{v}" }} }}' for k, v in parameters.items()
    )
    return "\n".join(
        [
            f'name: "{name}"',
            'backend: "python"',
            f"max_batch_size: {max_batch}",
            f"input [ {inputs} ]",
            f"output [ {outputs} ]",
            "instance_group [ { count: 1, kind: KIND_CPU } ]",
            params,
            "",
        ]
    )


def build_repository(root: Path, package: Path, models: dict[str, dict[str, str | int]]) -> Path:
    """A Triton repository: each entry `served name -> parameters` (`text: 1` for a text model)."""
    for name, parameters in models.items():
        params = dict(parameters)
        text = bool(params.pop("text", 0))
        folder = root / name / "1"
        folder.mkdir(parents=True)
        shutil.copy(MODEL_PY, folder / "model.py")
        shutil.copy(package / "triton/emotion/1/model.onnx", folder / "model.onnx")
        if text:
            shutil.copy(package / "triton/emotion/1/tokenizer.json", folder / "tokenizer.json")
        (root / name / "config.pbtxt").write_text(model_config(name, text=text, **params))
    return root


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_package(tmp_path_factory.mktemp("package"))


def triton_env() -> dict[str, str]:
    return {STUB_PATH_VARIABLE: VENV_SITE}


@pytest.fixture
def serve(tmp_path: Path, tiny_package: Path, triton_factory) -> Callable[..., TritonServer]:
    """Start a Triton that serves the given test models (name -> parameters) and wait for it."""

    def start(models: dict[str, dict[str, str | int]], **kwargs) -> TritonServer:
        repository = build_repository(
            tmp_path / f"repo-{len(list(tmp_path.glob('repo-*')))}", tiny_package, models
        )
        return triton_factory(repository, env=triton_env(), **kwargs)

    return start


def _module_triton(
    tmp_path_factory: pytest.TempPathFactory, package: Path, models: dict[str, dict[str, str | int]]
) -> Iterator[TritonServer]:
    root = tmp_path_factory.mktemp("triton")
    repository = build_repository(root / "repo", package, models)
    with TritonServer(root=root, repository=str(repository), env=triton_env()) as server:
        yield server


#: Wrong answers for every sentence whose token ids sum to a multiple of this.
WRONG_EVERY = 3
#: The sleeping model's time per batch.
SLEEP_MS = 20


@pytest.fixture(scope="module")
def emotion_triton(tmp_path_factory: pytest.TempPathFactory, tiny_package: Path) -> Iterator[TritonServer]:
    """The well-behaved `emotion` and `emotion-text` models (one Triton per test module)."""
    yield from _module_triton(tmp_path_factory, tiny_package, {"emotion": {}, "emotion-text": {"text": 1}})


@pytest.fixture(scope="module")
def odd_triton(tmp_path_factory: pytest.TempPathFactory, tiny_package: Path) -> Iterator[TritonServer]:
    """Models that misbehave: `emotion` and `emotion-text` answer wrong labels for some sentences,
    `sleepy` sleeps SLEEP_MS per batch (one instance, no batching: at most 1000 / SLEEP_MS requests/s)."""
    models: dict[str, dict[str, str | int]] = {
        "emotion": {"wrong_every": WRONG_EVERY},
        "emotion-text": {"text": 1, "wrong_every": WRONG_EVERY},
        "sleepy": {"sleep_ms": SLEEP_MS},
    }
    yield from _module_triton(tmp_path_factory, tiny_package, models)


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str
    seconds: float


def loadtest_command(*args: str | Path) -> list[str]:
    """argv of the `loadtest` command line (the package's __main__, with this interpreter), logging text lines
    (a pipe would otherwise get JSON lines, as a Job's log does)."""
    return [sys.executable, "-m", "loadtest", "--log-format", "text", *map(str, args)]


def run_loadtest(*args: str | Path, timeout: float = 120, **popen: Any) -> Outcome:
    """The `loadtest` command line in a process of its own, as a user runs it."""
    started = time.monotonic()
    done = subprocess.run(
        loadtest_command(*args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **popen,
    )
    return Outcome(done.returncode, done.stdout, done.stderr, time.monotonic() - started)


@pytest.fixture
def loadtest() -> Callable[..., Outcome]:
    return run_loadtest


@pytest.fixture
def command() -> Callable[..., list[str]]:
    return loadtest_command


@dataclass(frozen=True)
class TestModels:
    """The test models' facts, for the tests' expectations."""

    labels: tuple[str, ...] = tuple(LABELS)
    max_length: int = MAX_LENGTH
    wrong_every: int = WRONG_EVERY
    sleep_ms: int = SLEEP_MS


@pytest.fixture(scope="session")
def test_models() -> TestModels:
    return TestModels()
