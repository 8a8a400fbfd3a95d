"""The servers' `fetch-model` initContainer runs the small fetch image (Dockerfile.packager, target
`fetch`): emotion-contract with its dependencies and model-packager without its own (no PyTorch,
transformers, OpenVINO, ONNX Runtime). Proven by running a real fetch against the real S3 server in
a child process that can import only the standard library and what that image installs: an import
of anything else on the fetch path fails this test, as it would fail every server pod.
"""

from __future__ import annotations

import importlib.metadata
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


def test_fetch_runs_with_only_what_the_fetch_image_installs(
    packager, tree, bucket_args, s3_env, tmp_path
) -> None:
    assert packager("publish", str(tree.root), *bucket_args, env=s3_env).code == 0
    allowed = sorted(_fetch_image_modules())
    assert not {"torch", "openvino", "numpy"} & set(allowed)
    for server in ("triton", "ovms"):
        out = tmp_path / server
        result = subprocess.run(
            [sys.executable, "-c", GUARD, json.dumps(allowed), "--log-format", "json", "fetch",
             "--server", server, "--output", str(out), "--timeout", "5", *bucket_args],
            env={**os.environ, **s3_env}, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert json.loads(result.stdout)["version"] == 1
        assert any(out.rglob("model.onnx" if server == "triton" else "model.xml")), server


def test_the_guard_refuses_what_the_fetch_image_lacks() -> None:
    """The check can fail: the same guard refuses numpy, which the full image has and the small one not."""
    result = subprocess.run(
        [sys.executable, "-c", GUARD.replace('runpy.run_module("model_packager", run_name="__main__")',
                                             "import numpy"), json.dumps(sorted(_fetch_image_modules()))],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ImportError: numpy is not in the fetch image (Dockerfile.packager, target fetch)" in result.stderr
