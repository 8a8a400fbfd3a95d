"""Manifests: what a version holds (sha256 and size of every object) and where it came from."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from emotion_contract.documents import Manifest, Ready, file_sha256
from emotion_contract.errors import BadInput
from emotion_contract.layout import MANIFESTS, Layout

#: Libraries whose versions change the artifacts: part of the fingerprint.
LIBRARIES = (
    "model-packager",
    "torch",
    "transformers",
    "onnx",
    "onnxscript",
    "openvino",
    "openvino-tokenizers",
    "nncf",
)


def library_versions() -> dict[str, str]:
    found = {}
    for name in LIBRARIES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "absent"
    return found


def fingerprint(*, source: dict[str, Any], options: dict[str, Any], libraries: dict[str, str]) -> str:
    """Identifies a build: the same source, options and libraries give the same artifacts.

    A hub model is its id, commit and content; a local folder is its content alone, wherever it lives.
    """
    hub = source.get("commit") is not None
    identity = {
        "source": {
            "id": source.get("id") if hub else None,
            "commit": source.get("commit"),
            "content_sha256": source.get("content_sha256"),
        },
        "options": options,
        "libraries": libraries,
    }
    return "sha256:" + hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def object_entries(tree: Path) -> dict[str, dict[str, Any]]:
    """sha256 and size of every file of a built tree, keyed by bucket key (manifests excluded)."""
    entries = {}
    for path in sorted(p for p in tree.rglob("*") if p.is_file()):
        key = path.relative_to(tree).as_posix()
        if not key.startswith(f"{MANIFESTS}/"):
            entries[key] = {"sha256": file_sha256(path), "size": path.stat().st_size}
    return entries


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


@dataclass(frozen=True)
class LocalTree:
    """A built tree on disk, in the bucket layout, with its manifest and READY."""

    root: Path
    name: str
    version: int
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: Path, name: str) -> LocalTree:
        layout = Layout(name)
        ready_path = root / layout.ready
        if not ready_path.is_file():
            raise BadInput(f"{root} is not a built model tree: {layout.ready} is missing")
        try:
            ready = Ready.parse(ready_path.read_bytes(), where=f"{root}/{layout.ready}")
            where = f"{root}/{ready.manifest}"
            manifest = Manifest.parse((root / ready.manifest).read_bytes(), where=where).document
        except OSError as err:
            raise BadInput(f"{root}: unreadable manifest ({err})") from err
        return cls(root=root, name=name, version=ready.version, manifest=dict(manifest))

    def verify(self) -> list[str]:
        """Keys whose file is missing or differs from the manifest (empty when intact)."""
        problems = []
        for key, expected in self.manifest["objects"].items():
            path = self.root / key
            if not path.is_file():
                problems.append(f"{key}: missing")
            elif path.stat().st_size != expected["size"] or file_sha256(path) != expected["sha256"]:
                problems.append(f"{key}: content differs from the manifest")
        return problems
