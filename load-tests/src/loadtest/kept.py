"""Reports kept in the model bucket: what an in-cluster run leaves for whoever started it, and for a
GitOps user who never sees the Job's pod (emotion_contract.layout: reports/<name>/<run>/).

A kept report is written once: every file is a conditional create, and a run name that already has a
report is refused before the load starts (exit 8), so no report a user kept is ever overwritten.
"""

from __future__ import annotations

from pathlib import Path

from emotion_contract.errors import BadInput, Conflict
from emotion_contract.layout import Layout
from loadtest.package import S3Store, Store
from loadtest.report import REPORT_JSON

#: What of a report folder is kept: the report and its plots (not the prepared-inputs cache).
KEPT = ("report.json", "report.md", "plots/*.png")


def _s3(store: Store, run: str) -> S3Store:
    if not isinstance(store, S3Store):
        raise BadInput(f"--keep-report {run}: the package must be in a bucket (s3://), not {store.location}")
    if not Layout.valid_run(run):
        raise BadInput(
            f"--keep-report {run!r}: a run name is 1-63 lower-case letters, digits, dots and dashes"
        )
    return store


def check_new(store: Store, *, name: str, run: str) -> None:
    """Refuse, before any load, a run whose report the bucket holds already."""
    prefix = Layout(name).report_prefix(run)
    if _s3(store, run).keys(prefix):
        raise Conflict(f"--keep-report {run}: the bucket holds a report under {prefix}; name another run")


def keep_report(folder: Path, store: Store, *, name: str, run: str) -> list[str]:
    """Upload the report in `folder` under reports/<name>/<run>/; the keys written."""
    bucket = _s3(store, run)
    prefix = Layout(name).report_prefix(run)
    files = sorted({p for pattern in KEPT for p in folder.glob(pattern) if p.is_file()})
    if not (folder / REPORT_JSON).is_file():
        raise BadInput(f"--keep-report {run}: {folder} holds no {REPORT_JSON}")
    # report.json last: a reader that finds it finds the rest.
    files.sort(key=lambda p: p.name == REPORT_JSON)
    written = []
    for path in files:
        key = prefix + path.relative_to(folder).as_posix()
        if not bucket.create(key, path.read_bytes()):
            raise Conflict(
                f"--keep-report {run}: {key} exists in the bucket; a kept report is never replaced"
            )
        written.append(key)
    return written


def fetch_report(store: Store, *, name: str, run: str, folder: Path) -> list[Path]:
    """Download run `run`'s kept report into `folder` (made if missing); the files written."""
    bucket = _s3(store, run)
    prefix = Layout(name).report_prefix(run)
    keys = bucket.keys(prefix)
    if prefix + REPORT_JSON not in keys:
        raise BadInput(f"run {run}: no report under {prefix} in {bucket.location}")
    written = []
    for key in sorted(keys):
        path = folder / key[len(prefix) :]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bucket.read(key))
        written.append(path)
    return written
