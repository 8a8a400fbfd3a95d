"""Where the harness finds the servers that `make setup` installed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from devstack.errors import StackError

#: The repository root: this package lives in <root>/devstack/src/devstack.
REPO_ROOT = Path(__file__).resolve().parents[3]


def tools_dir() -> Path:
    """The folder `make setup` fills (override with EMOTION_TOOLS)."""
    return Path(os.environ.get("EMOTION_TOOLS", REPO_ROOT / ".tools"))


def tool(name: str) -> Path:
    """The path of an installed executable: .tools/bin first, then PATH."""
    candidate = tools_dir() / "bin" / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise StackError(f"{name} is not installed (looked in {candidate.parent} and PATH); run `make setup`")


def triton_home() -> Path:
    """The unpacked nvidia-pytriton wheel that carries tritonserver and its python backend."""
    home = tools_dir() / "triton" / "pytriton" / "tritonserver"
    if not (home / "bin" / "tritonserver").is_file():
        raise StackError(f"tritonserver is not installed under {home}; run `make setup`")
    return home


def triton_stub_site() -> Path:
    """The small numpy<2 environment that the python-backend stub imports from."""
    site = tools_dir() / "triton-stub"
    if not site.is_dir():
        raise StackError(f"the Triton stub environment {site} is missing; run `make setup`")
    return site
