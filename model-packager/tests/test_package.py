"""What Dockerfile.packager installs is complete: the wheels carry their data, the pins cover the imports.

No Docker engine runs here, so the image itself is not built in CI; these checks cover what it is
made of: requirements/runtime.in pinned by requirements/constraints.txt, and the two wheels.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[\[=<>~! ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" in line and not line.startswith("-"):
            pins[_name(line)] = line.split("==", 1)[1].strip()
    return pins


def test_runtime_pins_cover_both_packages_and_agree_with_the_lock() -> None:
    runtime = _pins(ROOT / "requirements/runtime.in")
    lock = _pins(ROOT / "requirements/constraints.txt")
    from_the_tree = {"emotion-contract", "model-packager"}  # Dockerfile.packager installs them from here
    for package in ("contract", "model-packager", "load-tests"):
        declared = tomllib.loads((ROOT / package / "pyproject.toml").read_text())["project"]["dependencies"]
        # numpy and tokenizers come with torch and transformers.
        missing = {_name(d) for d in declared} - set(runtime) - {"numpy", "tokenizers"} - from_the_tree
        assert not missing, f"{package} needs {missing}, which the image would not install"
    assert {name: lock.get(name) for name in runtime} == runtime, "runtime.in and constraints.txt disagree"


@pytest.mark.parametrize(
    ("package", "files"),
    [
        (
            "model-packager",
            {
                "model_packager/triton_models/wordpiece.py",
                "model_packager/triton_models/tokenizer_model.py",
                "model_packager/triton_models/onnx_model.py",
                "model_packager/data/parity_sample.txt",
            },
        ),
        ("load-tests", {"loadtest/data/corpus_ru.csv"}),
    ],
)
def test_the_wheel_carries_its_data_files(package: str, files: set[str], tmp_path: Path) -> None:
    # Built from a copy: setuptools leaves a build/ folder next to the sources it builds.
    source = shutil.copytree(
        ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("tests", "*.egg-info")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
         str(source)],
        check=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert files <= names, files - names
