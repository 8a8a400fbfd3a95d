"""Fixtures: a stand-in checkpoint shaped like the default model, a built tree, the CLI as users run it.

No hub access here: the checkpoint is model_packager.standin's (BERT, 3 layers, hidden 312, 12
heads, intermediate 600, 2048 positions, vocabulary 83,828, 6 labels, multi-label) with a WordPiece
tokenizer trained on the shared Russian corpus. Its head is decisive (every logit at least 3 from
the boundary for any input), so agreement gates pass or fail the same on every CPU; the undecided
variant (margin 0, probabilities near 0.5) is where a reduced precision legitimately fails.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack.s3 import S3Server
from emotion_contract.documents import dump
from emotion_contract.layout import Layout
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket, Endpoint
from model_packager import cli
from model_packager.build import BuildOptions, build
from model_packager.manifest import LocalTree
from model_packager.standin import build_stand_in

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ru-emotions" / "valid.csv"


def corpus_sentences() -> list[str]:
    with CORPUS.open(encoding="utf-8", newline="") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return corpus_sentences()


@pytest.fixture(scope="session")
def sample(corpus: list[str]) -> list[str]:
    """The parity sample the tests build with: 64 sentences spread over the corpus."""
    step = len(corpus) // 64
    return corpus[::step][:64]


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    return build_stand_in(output=tmp_path_factory.mktemp("ckpt") / "stand-in", sentences=corpus)


@pytest.fixture(scope="session")
def undecided_stand_in(tmp_path_factory: pytest.TempPathFactory, corpus: list[str]) -> Path:
    return build_stand_in(output=tmp_path_factory.mktemp("ckpt") / "undecided", sentences=corpus, margin=0)


@pytest.fixture(scope="session")
def tree(tmp_path_factory: pytest.TempPathFactory, stand_in: Path, sample: list[str]) -> LocalTree:
    """The default build (fp32, text models on) of the stand-in, as version 1."""
    from model_packager.source import resolve

    return build(
        source=resolve(model=str(stand_in)),
        options=BuildOptions(),
        output=tmp_path_factory.mktemp("build") / "tree",
        version=1,
        sentences=sample,
        reporter=Reporter(),
    )


def assert_one_version(bucket: Bucket, layout: Layout | None = None) -> int:
    """From the bucket alone: READY's version is complete, every pointer and both trees agree on it."""
    layout = layout or Layout("emotion")
    ready = bucket.read_json(layout.ready)
    assert ready is not None
    version = int(ready["version"])
    manifest = bucket.read_json(layout.manifest(version))
    assert manifest is not None, f"READY names {version} without a manifest"
    for key in bucket.keys("triton/"):
        if re.fullmatch(r"triton/[^/]+/(configs/)?[^/]+\.pbtxt", key):
            pinned = re.findall(r"versions: \[ (\d+) \]", (bucket.read(key) or b"").decode())
            assert set(pinned) == {str(version)}, f"{key} pins {pinned}, READY {version}"
    for key, entry in manifest["objects"].items():  # pointers included: they are version's own
        found = bucket.stat(key)
        assert found is not None, f"{key} of version {version} is missing"
        assert (found["size"], found["sha256"]) == (entry["size"], entry["sha256"]), key
        assert bucket.digest(key) == entry["sha256"], key
    for model in (layout.token_model, layout.text_model):
        keys = set(bucket.keys(f"ovms/{model}/"))
        complete = {
            int(k.split("/")[2]) for k in keys if k.endswith("/model.xml") and k[:-4] + ".bin" in keys
        }
        assert max(complete) == version, f"OVMS would serve {model} {max(complete)}, READY {version}"
    return version


@pytest.fixture
def one_version() -> Callable[..., int]:
    """The invariant after any fault and its rerun, read from the bucket alone (assert_one_version)."""
    return assert_one_version


@pytest.fixture
def other_build(tree: LocalTree, tmp_path: Path) -> Callable[[str], LocalTree]:
    """Another build's tree: the same files under another fingerprint, as a second Job would bring,
    without a second 30-second conversion."""

    def make(tag: str) -> LocalTree:
        copy = Path(shutil.copytree(tree.root, tmp_path / f"build-{tag}"))
        (copy / Layout(tree.name).manifest(tree.version)).write_bytes(
            dump({**tree.manifest, "fingerprint": f"sha256:{tag}"})
        )
        return LocalTree.open(copy, tree.name)

    return make


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict:
        return json.loads(self.stdout.strip().splitlines()[-1])

    @property
    def error(self) -> str:
        """The one-line error the CLI printed (its first stderr line that starts with model-packager:)."""
        lines = [line for line in self.stderr.splitlines() if line.startswith("model-packager: ")]
        return lines[-1] if lines else ""


Packager = Callable[..., Result]


@contextlib.contextmanager
def _environment(env: Mapping[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture
def packager() -> Packager:
    """Run the model-packager CLI as the Job does, with `env` added to the environment: in this
    process (cli.main, the same code path less the interpreter's start-up), or with process=True
    as `python -m model_packager` in a child process, for tests that kill it or need a fresh one."""

    def run(
        *args: str, env: Mapping[str, str] | None = None, timeout: float = 600, process: bool = False
    ) -> Result:
        argv = ["--log-format", "json", *args]
        if process:
            completed = subprocess.run(
                [sys.executable, "-m", "model_packager", *argv],
                env={**os.environ, **(env or {})},
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            return Result(completed.returncode, completed.stdout, completed.stderr)
        stdout, stderr = io.StringIO(), io.StringIO()
        with _environment(env or {}), contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                code = cli.main(argv)
            except SystemExit as exit_:  # argparse's usage errors and --help
                code = exit_.code if isinstance(exit_.code, int) else 2
        return Result(code, stdout.getvalue(), stderr.getvalue())

    return run


@pytest.fixture
def bucket_args(s3_server: S3Server, bucket_name: str) -> list[str]:
    """--endpoint/--bucket for the session's S3 server and the test's own bucket."""
    return ["--endpoint", s3_server.endpoint, "--bucket", bucket_name]


@pytest.fixture
def s3_env(s3_server: S3Server) -> dict[str, str]:
    return s3_server.env()


@pytest.fixture
def endpoint_of(monkeypatch: pytest.MonkeyPatch) -> Callable[[S3Server, str], Endpoint]:
    """A bucket of an S3 server as the library takes it (Bucket(endpoint)), the server's keys set in
    the environment for the test: for tests that call the library rather than the command line."""

    def make(s3: S3Server, bucket: str) -> Endpoint:
        for name, value in s3.env().items():
            monkeypatch.setenv(name, value)
        return Endpoint(url=s3.endpoint, bucket=bucket, budget=30)

    return make


@pytest.fixture
def endpoint(
    endpoint_of: Callable[[S3Server, str], Endpoint], s3_server: S3Server, bucket_name: str
) -> Endpoint:
    """The test's own bucket on the session's S3 server."""
    return endpoint_of(s3_server, bucket_name)
