"""Fixtures of the repository-level suites (tests/e2e, tests/cluster)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack.paths import REPO_ROOT

CORPUS = REPO_ROOT.parent / "shared" / "data" / "ru-emotions" / "valid.csv"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in checkpoint (the default model's shape), made by the packager's own command."""
    out = tmp_path_factory.mktemp("checkpoint") / "stand-in"
    subprocess.run(
        [sys.executable, "-m", "model_packager", "stand-in", "--output", str(out), "--corpus", str(CORPUS)],
        check=True,
        capture_output=True,
    )
    return out
