"""Publish a built tree to the bucket: atomic for the servers, idempotent, never overwriting a version.

The protocol (see layout.py for why each step makes a half-published version invisible):

1. If a complete manifest with this build's fingerprint exists and every object of that version
   reads back as the manifest says, the work is done: only finish the pointers and READY if an
   earlier run was killed before them. Nothing is uploaded. A version damaged at rest is left alone
   and the build is published again as a new version.
2. Otherwise take a version number: resume the one an earlier run of the same build claimed, or
   claim the next free one with a conditional create of manifests/<name>/<N>.claim
   (If-None-Match: *), so two publishers never share a number.
3. Upload every file of the version folders (entry files last), each verified by reading it
   back and comparing its sha256. An existing object whose size, sha256 metadata and content match
   is skipped (content read back: metadata alone does not see bytes changed at rest); one whose
   metadata differs is a Conflict: a version is never overwritten.
4. Rewrite the pointers (Triton's config.pbtxt files and labels.txt) for version N, unless READY
   already names a newer version.
5. Write manifests/<name>/<N>.json (conditional create), then move READY forward to N with a
   conditional write (If-Match on the READY that was read).
6. Settle the pointers on the version READY names (from its manifest), and again while READY moved
   in the meantime: a slower publisher of an older version that wrote its pointers over a newer
   one's puts them back, so racing publishers end with every pointer on READY's version.
"""

from __future__ import annotations

import hashlib
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotion_contract.documents import Ready, dump
from emotion_contract.errors import Conflict, Unavailable
from emotion_contract.layout import Layout, upload_order, version_of
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket
from emotion_contract.servers import Server
from model_packager.audit import check_version
from model_packager.build import pointer_files
from model_packager.manifest import LocalTree, now

_VERSION_FILE = re.compile(r"(\d+)\.(json|claim)")  # directly under manifests/<name>/


@dataclass
class PublishResult:
    version: int
    already_published: bool = False
    uploaded_objects: int = 0
    uploaded_bytes: int = 0
    skipped_objects: int = 0
    fingerprint: str = ""
    deleted: list[int] = field(default_factory=list)  # versions retention removed (job.run_job)

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "already_published": self.already_published,
            "uploaded_objects": self.uploaded_objects,
            "uploaded_bytes": self.uploaded_bytes,
            "skipped_objects": self.skipped_objects,
        }


@dataclass(frozen=True)
class _Object:
    key: str
    sha256: str
    size: int
    path: Path | None = None  # a file of the local tree
    data: bytes | None = None  # or generated content (re-versioned pointers)


def find_published(bucket: Bucket, layout: Layout, fingerprint: str) -> tuple[int, dict[str, Any]] | None:
    """The version whose complete manifest has this fingerprint, and that manifest, if any (newest
    first: a rerun of the last build, the usual case, costs one read)."""
    for version, kind in reversed(_version_files(bucket, layout)):
        if kind == "json":
            manifest = bucket.read_json(layout.manifest(version)) or {}
            if manifest.get("fingerprint") == fingerprint:
                return version, manifest
    return None


def reserve(bucket: Bucket, layout: Layout, fingerprint: str) -> int:
    """Resume the version an unfinished run of this build claimed, or claim the next free one."""
    files = _version_files(bucket, layout)
    complete = {v for v, kind in files if kind == "json"}
    for version, kind in files:
        if kind == "claim" and version not in complete:
            claim = bucket.read_json(layout.claim(version)) or {}
            if claim.get("fingerprint") == fingerprint:
                return version
    candidate = max([v for v, _ in files] + _versions_in_trees(bucket, layout) + [0]) + 1
    claim_bytes = dump({"fingerprint": fingerprint, "claimed": now(), "by": socket.gethostname()})
    for _ in range(100):
        if bucket.put(layout.claim(candidate), claim_bytes, create_only=True):
            return candidate
        candidate += 1
    raise Conflict(f"could not claim a version number for {layout.name} after 100 tries")


def already_published(
    *, bucket: Bucket, layout: Layout, fingerprint: str, reporter: Reporter
) -> PublishResult | None:
    """Step 1: the version this build was published as, its pointers and READY finished; else None.

    The version is read back whole first: one whose objects changed at rest is not this build any
    more, and the build is published again as a new version (the damaged one is left as it is).
    """
    with reporter.step("check-bucket", bucket=bucket.name):
        bucket.ensure()
        found = find_published(bucket, layout, fingerprint)
    if found is None:
        return None
    done, manifest = found
    with reporter.step("audit", version=done, depth="content") as step:
        audit = check_version(bucket, layout, done, depth="content", manifest=manifest)
        step["intact"] = audit.intact
    if not audit.intact:
        reporter.info(f"published {audit.summary()}; publishing this build again as a new version")
        return None
    result = PublishResult(version=done, already_published=True)
    _advance(bucket, layout, manifest, done, reporter=reporter, result=result)
    reporter.info("already published", version=done, fingerprint=fingerprint)
    return result


def publish(*, tree: LocalTree, bucket: Bucket, reporter: Reporter) -> PublishResult:
    """Steps 1 to 5: nothing if this build is published, else the next version number for it."""
    layout = Layout(tree.name)
    fingerprint = tree.manifest["fingerprint"]
    done = already_published(bucket=bucket, layout=layout, fingerprint=fingerprint, reporter=reporter)
    if done is not None:
        return done
    return publish_version(
        tree=tree, bucket=bucket, version=reserve(bucket, layout, fingerprint), reporter=reporter
    )


def publish_version(*, tree: LocalTree, bucket: Bucket, version: int, reporter: Reporter) -> PublishResult:
    """Steps 3 to 5 for a version already reserved for this build (what `run` calls after building)."""
    layout = Layout(tree.name)
    result = PublishResult(version=version)
    objects = _plan(tree, version)
    with reporter.step("upload", version=version, objects=len(objects)) as step:
        step["aborted_uploads"] = bucket.abort_unfinished({o.key for o in objects})
        for obj in objects:
            _upload(bucket, obj, result)
        step.update(bytes=result.uploaded_bytes, skipped=result.skipped_objects)

    models = tree.manifest["models"]
    served = pointer_files(manifest=tree.manifest, version=version)
    manifest = {
        **tree.manifest,
        "version": version,
        "published": now(),
        "models": {**models, "tokenizer": {"key": _renumber(models["tokenizer"]["key"], version)}},
        "objects": {
            **{o.key: {"sha256": o.sha256, "size": o.size} for o in objects},
            **{k: {"sha256": _sha(v), "size": len(v)} for k, v in served.items()},
        },
        # The version's own copies of the pointers, for `fetch` (the bucket's follow READY).
        "served_files": {k: v.decode() for k, v in served.items()},
    }
    manifest_bytes = dump(manifest)
    _advance(
        bucket, layout, manifest, version, reporter=reporter, result=result, manifest_bytes=manifest_bytes
    )
    return result


def _advance(
    bucket: Bucket,
    layout: Layout,
    manifest: dict[str, Any],
    version: int,
    *,
    reporter: Reporter,
    result: PublishResult,
    manifest_bytes: bytes | None = None,
) -> None:
    """Steps 4 and 5: pointers, manifest, READY, then the pointers settled on READY; safe to repeat."""
    with reporter.step("pointers", version=version):
        ready = bucket.ready(layout)
        if ready is None or ready.version <= version:
            _write_pointers(bucket, manifest, version, result)
    if manifest_bytes is not None and not bucket.put(
        layout.manifest(version), manifest_bytes, create_only=True
    ):
        existing = bucket.read_json(layout.manifest(version)) or {}
        if existing.get("fingerprint") != manifest["fingerprint"]:
            raise Conflict(f"{layout.manifest(version)} already exists for another build")
    _move_ready(bucket, layout, version, reporter)
    _settle_pointers(bucket, layout, result)


def _move_ready(bucket: Bucket, layout: Layout, version: int, reporter: Reporter) -> None:
    """READY forward to `version` with a conditional write; never backward."""
    manifest_bytes = None  # read once, and only when READY has to move
    for _ in range(10):
        current = bucket.stat(layout.ready)
        ready = bucket.ready(layout) if current else None
        if ready is not None and ready.version >= version:
            return
        if manifest_bytes is None:
            manifest_bytes = bucket.read(layout.manifest(version)) or b""
        document = Ready.of(layout, version, manifest_bytes).dump()
        if current is None:
            written = bucket.put(layout.ready, document, create_only=True)
        else:
            written = bucket.put(layout.ready, document, if_match=current["etag"])
        if written:
            reporter.info("ready", version=version, key=layout.ready)
            return
    raise Conflict(f"{layout.ready} kept changing while this publish tried to move it to version {version}")


def _settle_pointers(bucket: Bucket, layout: Layout, result: PublishResult) -> None:
    """Make every pointer name the version READY names, until READY holds still while they are written.

    A publisher that checked READY before a newer one finished may have written its older pointers
    over the newer ones; whoever finishes last puts them back on READY's version, so publishers that
    race (two Jobs overlapping in an upgrade) end on one version, and a rerun repairs a killed one.
    """
    for _ in range(10):
        before = bucket.stat(layout.ready)
        ready = bucket.ready(layout) if before else None
        if ready is None:
            return
        served = ready.version
        manifest = bucket.read_json(layout.manifest(served))
        if manifest is None:
            raise Conflict(f"{layout.ready} names version {served}, whose manifest is missing")
        _write_pointers(bucket, manifest, served, result)
        after = bucket.stat(layout.ready)
        if after is not None and before is not None and after["etag"] == before["etag"]:
            return
    raise Conflict(f"{layout.ready} kept changing while this publish settled the pointers on it")


def _write_pointers(bucket: Bucket, manifest: dict[str, Any], version: int, result: PublishResult) -> None:
    for key, content in pointer_files(manifest=manifest, version=version).items():
        obj = _Object(key=key, sha256=_sha(content), size=len(content), data=content)
        current = bucket.stat(key)
        if current is None or current["sha256"] != obj.sha256:
            bucket.put(key, content)
            _verify(bucket, obj)
            result.uploaded_objects += 1
            result.uploaded_bytes += obj.size


def _plan(tree: LocalTree, version: int) -> list[_Object]:
    """Every object of version `version`, in upload order; pointers come from _advance."""
    objects = []
    for key, entry in tree.manifest["objects"].items():
        found = version_of(key)
        if found is None:
            continue  # a pointer: rewritten for `version` by _advance
        objects.append(
            _Object(
                key=_renumber(key, version), sha256=entry["sha256"], size=entry["size"], path=tree.root / key
            )
        )
    order = {key: i for i, key in enumerate(upload_order([o.key for o in objects]))}
    return sorted(objects, key=lambda o: order[o.key])


def _renumber(key: str, version: int) -> str:
    """A version-folder key of the local tree as it is named for `version` in the bucket."""
    parts = key.split("/")
    parts[2] = str(version)
    return "/".join(parts)


def _upload(bucket: Bucket, obj: _Object, result: PublishResult) -> None:
    current = bucket.stat(obj.key)
    if current is not None:
        if current["size"] != obj.size or current["sha256"] != obj.sha256:
            raise Conflict(
                f"{obj.key} already exists in bucket {bucket.name} with other content; "
                "versions are never overwritten"
            )
        if bucket.digest(obj.key) == obj.sha256:  # what a killed run left, read back before it counts
            result.skipped_objects += 1
            return
        # Our own unpublished version (its claim is this build's), changed at rest: upload it again.
    assert obj.path is not None
    bucket.upload(obj.key, obj.path, obj.sha256)
    _verify(bucket, obj)
    result.uploaded_objects += 1
    result.uploaded_bytes += obj.size


def _verify(bucket: Bucket, obj: _Object) -> None:
    found = bucket.digest(obj.key)
    if found != obj.sha256:
        raise Unavailable(f"{obj.key} read back with sha256 {found[:12]}..., expected {obj.sha256[:12]}...")


def _version_files(bucket: Bucket, layout: Layout) -> list[tuple[int, str]]:
    found = []
    for key in bucket.keys(layout.manifests_prefix):
        match = _VERSION_FILE.fullmatch(key[len(layout.manifests_prefix) :])
        if match:
            found.append((int(match.group(1)), match.group(2)))
    return sorted(found)


def _versions_in_trees(bucket: Bucket, layout: Layout) -> list[int]:
    """Version folders already in the servers' trees (even ones no manifest describes)."""
    versions = []
    for server in Server:
        for key in bucket.keys(Layout.model_dir(server, layout.token_model) + "/"):
            found = version_of(key)
            if found is not None:
                versions.append(found)
    return versions


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
