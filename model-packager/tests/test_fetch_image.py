"""The servers' `fetch-model` initContainer runs the small fetch image (Dockerfile.packager, target
`fetch`): emotion-contract with its dependencies and model-packager without its own (no PyTorch,
transformers, OpenVINO, ONNX Runtime). Proven by running a real fetch against the real S3 server in
a child process that can import only the standard library and what that image installs: an import
of anything else on the fetch path fails this test, as it would fail every server pod.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: Run `python -m model_packager ARGS` with imports limited to the standard library and ALLOWED.
GUARD = """
import importlib.abc, json, runpy, sys
allowed = set(json.loads(sys.argv[1]))
class OnlyTheFetchImage(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        top = name.partition(".")[0]
        if top not in sys.stdlib_module_names and top not in allowed:
            raise ImportError(f"{top} is not in the fetch image (Dockerfile.packager, target fetch)")
        return None
sys.meta_path.insert(0, OnlyTheFetchImage())
sys.argv = ["model-packager", *sys.argv[2:]]
runpy.run_module("model_packager", run_name="__main__")
"""


def _distributions(name: str, seen: set[str]) -> set[str]:
    """The distribution and everything it requires, transitively (extras left out)."""
    key = name.lower().replace("_", "-")
    if key not in seen:
        seen.add(key)
        for requirement in importlib.metadata.requires(name) or []:
            if "extra ==" not in requirement:
                _distributions(re.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0], seen)
    return seen


def _fetch_image_modules() -> set[str]:
    """Top-level modules of what the fetch stage installs: emotion-contract with its dependencies,
    model-packager alone (--no-deps)."""
    wanted = _distributions("emotion-contract", set())
    modules = {
        module
        for module, dists in importlib.metadata.packages_distributions().items()
        if any(d.lower().replace("_", "-") in wanted for d in dists)
    }
    return modules | {"model_packager"}


def test_the_fetch_stage_installs_the_contract_with_its_dependencies_and_the_packager_without() -> None:
    dockerfile = (REPO / "Dockerfile.packager").read_text()
    stage = dockerfile.split("AS fetch-build", 1)[1].split("\nFROM ", 1)[0]
    assert "-c requirements/constraints.txt ./contract" in stage
    assert "--no-deps ./model-packager" in stage
    assert "torch" not in stage
    assert "runtime.in" not in stage


def _guarded_fetch(
    server: str, out: Path, *args: str, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    allowed = sorted(_fetch_image_modules())
    assert not {"torch", "openvino", "numpy"} & set(allowed)
    return subprocess.run(
        [sys.executable, "-c", GUARD, json.dumps(allowed), "--log-format", "json", "fetch",
         "--server", server, "--output", str(out), "--timeout", "5", *args],
        env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _put_json(client, bucket: str, key: str, document: dict) -> bytes:
    data = json.dumps(document).encode()
    client.put_object(bucket, key, io.BytesIO(data), len(data))
    return data


def test_fetch_runs_with_only_what_the_fetch_image_installs(
    packager, tree, bucket_args, s3_env, s3_server, bucket_name, tmp_path
) -> None:
    """READY's version; a model request's (what the chart passes by default); and a manifest older
    than `served_files`, whose Triton files are rebuilt from its options."""
    assert packager("publish", str(tree.root), *bucket_args, env=s3_env).code == 0
    client = s3_server.client()
    _put_json(client, bucket_name, "manifests/emotion/requests/00000000000000aa.json",
              {"request": "00000000000000aa", "version": 1, "fingerprint": "sha256:x"})  # fmt: skip
    for server in ("triton", "ovms"):
        for name, wanted in (("ready", []), ("request", ["--request", "00000000000000aa"])):
            out = tmp_path / server / name
            result = _guarded_fetch(server, out, *wanted, *bucket_args, env=s3_env)
            assert result.returncode == 0, result.stderr[-2000:]
            assert json.loads(result.stdout)["version"] == 1
            assert any(out.rglob("model.onnx" if server == "triton" else "model.xml")), (server, name)

    manifest = json.loads(client.get_object(bucket_name, "manifests/emotion/1.json").read())
    served = manifest.pop("served_files")
    raw = _put_json(client, bucket_name, "manifests/emotion/1.json", manifest)
    ready = json.loads(client.get_object(bucket_name, "manifests/emotion/READY").read())
    _put_json(
        client, bucket_name, "manifests/emotion/READY", {**ready, "sha256": hashlib.sha256(raw).hexdigest()}
    )
    legacy = _guarded_fetch("triton", tmp_path / "legacy", *bucket_args, env=s3_env)
    assert legacy.returncode == 0, legacy.stderr[-2000:]
    for key, text in served.items():  # rebuilt byte for byte (the manifest's sha256 decides)
        assert (tmp_path / "legacy" / key.removeprefix("triton/")).read_text() == text, key


def test_the_guard_refuses_what_the_fetch_image_lacks() -> None:
    """The check can fail: the same guard refuses numpy, which the full image has and the small one not."""
    result = subprocess.run(
        [sys.executable, "-c", GUARD.replace('runpy.run_module("model_packager", run_name="__main__")',
                                             "import numpy"), json.dumps(sorted(_fetch_image_modules()))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ImportError: numpy is not in the fetch image (Dockerfile.packager, target fetch)" in result.stderr
