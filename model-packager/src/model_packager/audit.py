"""Is what the bucket holds what its manifests say? Checked from the bucket alone.

Two depths: `metadata` compares each object's size and the sha256 recorded when it was uploaded
(one HEAD per object: cheap enough for every `wait`); `content` reads every object back and hashes
it, which also finds bytes changed at rest behind the metadata's back (a disk, a restore, a hand).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from emotion_contract.documents import Ready
from emotion_contract.layout import Layout, version_of
from emotion_contract.s3 import Bucket

DEPTHS = ("metadata", "content")


@dataclass(frozen=True)
class Audit:
    """The outcome for one version: its number and what is wrong with it (nothing when intact)."""

    version: int
    problems: tuple[str, ...]

    @property
    def intact(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        more = f" (and {len(self.problems) - 1} more)" if len(self.problems) > 1 else ""
        return f"version {self.version}: {self.problems[0]}{more}" if self.problems else "intact"


def check_version(
    bucket: Bucket,
    layout: Layout,
    version: int,
    *,
    depth: str = "metadata",
    pointers: bool = False,
    manifest: dict[str, Any] | None = None,
) -> Audit:
    """Every object the manifest of `version` lists, as it lists it (`manifest`: that manifest, when
    the caller has read it already). Pointers (config.pbtxt, labels.txt) hold the served version's
    content, so they count only with `pointers`."""
    manifest = manifest if manifest is not None else bucket.read_json(layout.manifest(version))
    if manifest is None:
        return Audit(version, (f"{layout.manifest(version)} is missing",))
    problems = []
    for key, entry in sorted(manifest.get("objects", {}).items()):
        if version_of(key) is None and not pointers:
            continue
        problem = _check_object(bucket, key, entry, depth)
        if problem:
            problems.append(f"{key}: {problem}")
    return Audit(version, tuple(problems))


def check_ready(
    bucket: Bucket, layout: Layout, *, depth: str = "metadata", ready: Ready | None = None
) -> Audit | None:
    """The version READY names (`ready`: the document, when the caller has read it already), with its
    manifest's checksum and the pointers; None without READY."""
    ready = ready if ready is not None else bucket.ready(layout)
    if ready is None:
        return None
    version = ready.version
    manifest_bytes = bucket.read(layout.manifest(version))
    if manifest_bytes is None:
        return Audit(version, (f"READY names it but {layout.manifest(version)} is missing",))
    if hashlib.sha256(manifest_bytes).hexdigest() != ready.sha256:
        return Audit(version, (f"{layout.manifest(version)} differs from the checksum in READY",))
    return check_version(
        bucket, layout, version, depth=depth, pointers=True, manifest=json.loads(manifest_bytes)
    )


def _check_object(bucket: Bucket, key: str, entry: dict[str, Any], depth: str) -> str | None:
    found = bucket.stat(key)
    if found is None:
        return "missing"
    if found["size"] != entry["size"]:
        return f"{found['size']} bytes, the manifest says {entry['size']}"
    if found["sha256"] != entry["sha256"]:
        return "its sha256 metadata differs from the manifest"
    if depth == "content" and bucket.digest(key) != entry["sha256"]:
        return "its content differs from the manifest (changed at rest)"
    return None
