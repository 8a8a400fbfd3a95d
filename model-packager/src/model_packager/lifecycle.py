"""A release's model over time: the record of which version a model request was published as, and
retention (which versions the bucket keeps).

A model request is the chart's hash of the model values (`global.model.source`, `revision`, the build
options, `global.model.name`): `run --request R` records, once, the version it published or found
for R (`manifests/<name>/requests/<R>.json`, a conditional create after READY). A later run of the
same request (a re-created Job, a GitOps sync, a `helm rollback` to it) reads the record and is done:
it neither resolves the revision on the hub nor builds. The servers' `fetch` reads the same record,
so every pod of a release serves that one version, whatever was published since.

Retention keeps the newest `versions` complete versions, the version the run serves, the versions
given to keep (a pin, rollback targets) and READY's; it deletes only complete versions outside that
set (a version without a manifest may be a publish in progress and is never touched). A deleted
version's records go first, so a request that named it is built again instead of fetched in vain;
then its objects, its claim, its manifest last: an interrupted deletion leaves a manifest whose
objects are missing, which the next retention finishes and which no fetch accepts.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from emotion_contract.documents import Record, dump
from emotion_contract.errors import BadInput, Conflict
from emotion_contract.layout import Layout, version_of
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket
from emotion_contract.servers import Server
from model_packager.audit import check_version
from model_packager.manifest import now

_REQUEST = re.compile(r"^[a-z0-9][a-z0-9-]{3,62}$")
_VERSION_FILE = re.compile(r"^(\d+)\.(json|claim)$")


def check_request(request: str) -> None:
    if not _REQUEST.match(request):
        raise BadInput(f"model request {request!r} must be 4-63 lowercase letters, digits and dashes")


def read_record(bucket: Bucket, layout: Layout, request: str) -> Record | None:
    key = layout.request(request)
    document = bucket.read_json(key)
    where = f"{key} in bucket {bucket.name}"
    return None if document is None else Record.parse(document, where=where, error=Conflict)


def recorded(*, bucket: Bucket, layout: Layout, request: str, reporter: Reporter) -> Record | None:
    """The record of `request` when the version it names is complete (sizes and sha256 metadata), else
    None: the request is then built (or found by fingerprint) as if it had never run."""
    with reporter.step("recorded", request=request) as step:
        bucket.ensure()
        record = read_record(bucket, layout, request)
        step["version"] = None if record is None else record.version
        if record is None:
            return None
        audit = check_version(bucket, layout, record.version, depth="metadata")
        step["intact"] = audit.intact
    if not audit.intact:
        reporter.info(f"request {request} names {audit.summary()}; running it again")
        return None
    return record


def record(*, bucket: Bucket, layout: Layout, request: str, version: int, fingerprint: str) -> None:
    """Write the record once. An existing one is kept when it names a complete version (a racing run
    of the same request recorded first); one whose version is gone or damaged is replaced."""
    key = layout.request(request)
    data = dump({"request": request, "version": version, "fingerprint": fingerprint, "recorded": now()})
    if bucket.put(key, data, create_only=True):
        return
    current = bucket.stat(key)
    existing = read_record(bucket, layout, request)
    if existing is None or current is None:
        raise Conflict(f"{key} kept changing while this run recorded version {version}")
    if existing.version == version or check_version(bucket, layout, existing.version).intact:
        return
    if not bucket.put(key, data, if_match=current["etag"]):
        raise Conflict(f"{key} kept changing while this run recorded version {version}")


# -- retention ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Retention:
    """How many of the newest complete versions to keep (0: all), and versions never to delete."""

    versions: int = 0
    keep: tuple[int, ...] = ()

    def validate(self) -> None:
        if self.versions < 0:
            raise BadInput(f"versions to keep must be 0 (all) or more, not {self.versions}")
        bad = [v for v in self.keep if v < 1]
        if bad:
            raise BadInput(f"versions to keep must be positive version numbers, not {bad[0]}")


def complete_versions(bucket: Bucket, layout: Layout) -> list[int]:
    """Versions with a manifest (published whole), oldest first."""
    found = set()
    for key in bucket.keys(layout.manifests_prefix):
        match = _VERSION_FILE.match(key[len(layout.manifests_prefix) :])
        if match and match.group(2) == "json":
            found.add(int(match.group(1)))
    return sorted(found)


def kept_versions(complete: list[int], retention: Retention, *, served: Collection[int]) -> set[int]:
    newest = complete if retention.versions == 0 else complete[-retention.versions :]
    return set(newest) | set(retention.keep) | set(served)


def apply_retention(
    *, bucket: Bucket, layout: Layout, retention: Retention, served: Collection[int], reporter: Reporter
) -> list[int]:
    """Delete the complete versions outside the kept set (module docstring); the versions deleted."""
    if retention.versions == 0:
        return []
    with reporter.step("retention", keep=retention.versions, pinned=sorted(retention.keep)) as step:
        complete = complete_versions(bucket, layout)
        ready = bucket.ready(layout)
        kept = kept_versions(complete, retention, served={*served, *([ready.version] if ready else [])})
        doomed = [v for v in complete if v not in kept]
        if doomed:
            records = _records_by_version(bucket, layout)
            for version in doomed:
                _delete_version(bucket, layout, version, records.get(version, []))
        step.update(kept=sorted(kept & set(complete)), deleted=doomed)
    return doomed


def _records_by_version(bucket: Bucket, layout: Layout) -> dict[int, list[str]]:
    found: dict[int, list[str]] = {}
    for key in bucket.keys(layout.requests_prefix):
        document = bucket.read_json(key)
        if document is not None:
            found.setdefault(Record.parse(document, where=key, error=Conflict).version, []).append(key)
    return found


def _delete_version(bucket: Bucket, layout: Layout, version: int, records: list[str]) -> None:
    manifest = bucket.read_json(layout.manifest(version)) or {}
    keys = {k for k in manifest.get("objects", {}) if version_of(k) == version}
    models = (layout.token_model, layout.text_model, layout.tokenizer_model)
    for server in Server:
        for model in models:
            keys.update(bucket.keys(Layout.version_dir(server, model, version) + "/"))
    for key in records:
        bucket.remove(key)
    for key in sorted(keys):
        bucket.remove(key)
    bucket.remove(layout.claim(version))
    bucket.remove(layout.manifest(version))
