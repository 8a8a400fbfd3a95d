"""`fetch`: one version of one server's models, from the bucket into a local model repository (what the
servers' initContainers run; the servers then read only that folder).

Which version: `--version N` (a pin), `--request R` (the version the release's own packager run
recorded for its model request, lifecycle.py), or without either the version READY names. It waits,
like `wait`, until that version is there and complete (its manifest, every object's size and sha256
metadata), then downloads the server's files of that version only and checks each one's sha256
against the manifest. Triton's config.pbtxt files and labels.txt come from the manifest (the copies
published with the version), not from the bucket's pointers, which follow READY: what a pod serves
never changes with a later publish, and its disk holds one version, not the bucket's history.

The repository is assembled in a sibling folder and moved into place, and a marker names the version
it holds: a restarted pod with the folder still there checks the files and downloads nothing.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotion_contract.documents import file_sha256
from emotion_contract.errors import BadInput, Unavailable
from emotion_contract.layout import Layout, version_of
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket
from emotion_contract.servers import Server
from model_packager.audit import check_version
from model_packager.errors import WaitTimeout
from model_packager.lifecycle import check_request, read_record
from model_packager.wait import check_timing

MARKER = ".fetched.json"


@dataclass(frozen=True)
class Wanted:
    """Which version to fetch: a pinned number, a model request's record, or READY's (neither)."""

    version: int | None = None
    request: str | None = None

    def validate(self) -> None:
        if self.version is not None and self.request is not None:
            raise BadInput("give --version or --request, not both (a pin replaces the request's version)")
        if self.version is not None and self.version < 1:
            raise BadInput(f"version must be a positive whole number, not {self.version}")
        if self.request is not None:
            check_request(self.request)

    def describe(self) -> str:
        if self.version is not None:
            return f"version {self.version}"
        return f"the version of request {self.request}" if self.request else "the version READY names"


def fetch(
    *,
    bucket: Bucket,
    name: str,
    server: Server,
    wanted: Wanted,
    output: Path,
    timeout: float,
    reporter: Reporter,
    poll: float = 5.0,
) -> dict[str, Any]:
    wanted.validate()
    check_timing(timeout=timeout, poll=poll)
    layout = Layout(name)
    version, manifest = _wait_for_version(
        bucket, layout, wanted, timeout=timeout, poll=poll, reporter=reporter
    )
    files = served_files(manifest, server, version)
    result = {"name": name, "server": server.value, "version": version, "objects": len(files)}
    if _holds(output, version, files):
        reporter.info("already fetched", version=version, output=str(output))
        return {**result, "downloaded_bytes": 0}
    partial = output.parent / f".{output.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    downloaded = 0
    with reporter.step("fetch", version=version, server=server.value, objects=len(files)) as step:
        for local, (key, entry, content) in sorted(files.items()):
            path = partial / local
            path.parent.mkdir(parents=True, exist_ok=True)
            if content is not None:
                path.write_bytes(content)
            else:
                _download(bucket, key, path)
                downloaded += entry["size"]
            found = file_sha256(path)
            if found != entry["sha256"]:
                raise Unavailable(f"{key} of version {version} downloaded with sha256 {found[:12]}..., "
                                  f"the manifest says {entry['sha256'][:12]}...")  # fmt: skip
        (partial / MARKER).write_text(json.dumps({"name": name, "server": server.value, "version": version}))
        step["bytes"] = downloaded
    output.mkdir(parents=True, exist_ok=True)
    for child in list(output.iterdir()):  # an emptyDir's mount point stays; its contents are replaced
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    for child in list(partial.iterdir()):
        child.rename(output / child.name)
    partial.rmdir()
    reporter.info("fetched", version=version, server=server.value, output=str(output))
    return {**result, "downloaded_bytes": downloaded}


def served_files(
    manifest: dict[str, Any], server: Server, version: int
) -> dict[str, tuple[str, dict[str, Any], bytes | None]]:
    """Path in the local repository -> (bucket key, manifest entry, content when it is not downloaded).

    The version folders of the server's models, and for Triton the version's configurations and
    labels from the manifest's `served_files` (or, for a manifest published before it had them,
    rebuilt from its options: their sha256 in the manifest still decides)."""
    prefix = f"{server.value}/"
    objects = manifest["objects"]
    files: dict[str, tuple[str, dict[str, Any], bytes | None]] = {
        key.removeprefix(prefix): (key, entry, None)
        for key, entry in objects.items()
        if key.startswith(prefix) and version_of(key) == version
    }
    if server is Server.TRITON:
        embedded = manifest.get("served_files")
        if embedded is None:
            from model_packager.options import pointer_files

            contents = pointer_files(manifest=manifest, version=version)
        else:
            contents = {key: text.encode() for key, text in embedded.items()}
        for key, content in contents.items():
            if key not in objects:
                raise BadInput(f"version {version}'s manifest does not list {key}")
            files[key.removeprefix(prefix)] = (key, objects[key], content)
    return files


def _wait_for_version(
    bucket: Bucket, layout: Layout, wanted: Wanted, *, timeout: float, poll: float, reporter: Reporter
) -> tuple[int, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    last_state = None
    while True:
        with bucket.until(deadline):
            state, found = _look(bucket, layout, wanted)
        if found is not None:
            return found
        if state != last_state:
            reporter.info("waiting", name=layout.name, wanted=wanted.describe(), state=state)
            last_state = state
        left = deadline - time.monotonic()
        if left <= 0:
            raise WaitTimeout(
                f"{wanted.describe()} of {layout.name} was not complete in bucket {bucket.name} "
                f"within {timeout:.0f} s ({state})"
            )
        time.sleep(min(poll, left))


def _look(bucket: Bucket, layout: Layout, wanted: Wanted) -> tuple[str, tuple[int, dict[str, Any]] | None]:
    try:
        if not bucket.exists():
            return "the bucket does not exist yet", None
        version, missing = _version_named(bucket, layout, wanted)
        if version is None:
            return f"{missing} does not exist yet", None
        manifest = bucket.read_json(layout.manifest(version))
        if manifest is None:
            return f"version {version} is not published ({layout.manifest(version)} is missing)", None
        audit = check_version(bucket, layout, version, manifest=manifest)
    except Unavailable as err:
        return f"the S3 server does not answer: {err.message}", None
    if not audit.intact:
        return audit.summary(), None
    return f"version {version} is complete", (version, manifest)


def _version_named(bucket: Bucket, layout: Layout, wanted: Wanted) -> tuple[int | None, str]:
    """The version `wanted` names now, or None and the key that would name it."""
    if wanted.request is not None:
        record = read_record(bucket, layout, wanted.request)
        return (None if record is None else record.version), layout.request(wanted.request)
    if wanted.version is not None:
        return wanted.version, ""
    ready = bucket.ready(layout)
    return (None if ready is None else ready.version), layout.ready


def _holds(output: Path, version: int, files: dict[str, tuple[str, dict[str, Any], bytes | None]]) -> bool:
    """The folder already holds this version, every file of it at its size and sha256."""
    try:
        marker = json.loads((output / MARKER).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("version") != version:
        return False
    for local, (_, entry, _content) in files.items():
        path = output / local
        if not path.is_file() or path.stat().st_size != entry["size"]:
            return False
        if file_sha256(path) != entry["sha256"]:
            return False
    return True


def _download(bucket: Bucket, key: str, path: Path) -> None:
    bucket.call(f"download {key}", lambda: bucket.client.fget_object(bucket.name, key, str(path)))
