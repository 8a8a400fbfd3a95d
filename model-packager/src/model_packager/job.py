"""What the chart's Job runs (`model-packager run`), as a pipeline of small named steps:

    recorded     with --request: this model request was published already (its record names a
                 complete version): done, without the hub and without building (lifecycle.py)
    resolve      the checkpoint (hub id at a revision, or a local folder) and its commit
    fits         the options against the checkpoint, before the bucket is touched
    fingerprint  source + options + libraries: the build's identity
    skip         a version with this fingerprint is published already: done, nothing built
    build        convert and prove (the parity gate) into scratch space, as version 1
    claim        the next version number, only once the gate has passed (no orphan numbers)
    publish      the tree renumbered to the claimed version, then READY
    record       with --request: the version it was published as (or found), written once
    retention    with --keep-versions: complete versions outside the kept set deleted

The CLI parses and validates its flags into a JobRequest and calls `run_job`; the tests call it too.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emotion_contract.layout import Layout
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket
from model_packager.build import BuildOptions, build
from model_packager.lifecycle import Retention, apply_retention, record, recorded
from model_packager.manifest import fingerprint, library_versions
from model_packager.publish import PublishResult, already_published, publish_version, reserve
from model_packager.source import Source, resolve


@dataclass(frozen=True)
class JobRequest:
    model: str  # a hub id (owner/name) or a local checkpoint folder
    revision: str | None
    options: BuildOptions
    sentences: Sequence[str]  # the parity sample
    work_dir: Path | None = None  # scratch space for the build (default: the system's temp dir)
    request: str | None = None  # the chart's hash of the model values (lifecycle.py)
    retention: Retention = field(default_factory=Retention)


def resolve_source(model: str, revision: str | None, reporter: Reporter) -> Source:
    """The checkpoint, resolved once: a hub revision becomes its commit (recorded in the manifest)."""
    with reporter.step("resolve", model=model) as done:
        source = resolve(model=model, revision=revision, cache_dir=None)
        done.update(commit=source.commit or "local", stand_in=source.stand_in)
    if source.stand_in:
        reporter.info(
            "this is a local STAND-IN with random weights, not the real model: its predictions mean nothing",
            stand_in_for=source.config.get("stand_in_for"),
        )
    return source


def run_job(request: JobRequest, *, bucket: Bucket, reporter: Reporter) -> PublishResult:
    """Skip if recorded or published, else build, claim a version, publish it; record it and apply
    retention (module docstring: the steps)."""
    layout = Layout(request.options.name)
    if request.request is not None:
        found = recorded(bucket=bucket, layout=layout, request=request.request, reporter=reporter)
        if found is not None:
            reporter.info("already recorded", request=request.request, version=found.version)
            result = PublishResult(version=found.version, already_published=True)
        else:
            result = _publish(request, bucket=bucket, reporter=reporter)
            record(bucket=bucket, layout=layout, request=request.request, version=result.version,
                   fingerprint=result.fingerprint)  # fmt: skip
    else:
        result = _publish(request, bucket=bucket, reporter=reporter)
    result.deleted = apply_retention(
        bucket=bucket, layout=layout, retention=request.retention, served=[result.version], reporter=reporter
    )
    return result


def _publish(request: JobRequest, *, bucket: Bucket, reporter: Reporter) -> PublishResult:
    options = request.options
    source = resolve_source(request.model, request.revision, reporter)
    options.check_fits(source)
    layout = Layout(options.name)
    build_id = fingerprint(source=source.describe(), options=options.as_dict(), libraries=library_versions())
    done = already_published(bucket=bucket, layout=layout, fingerprint=build_id, reporter=reporter)
    if done is not None:
        done.fingerprint = build_id
        return done
    work = Path(tempfile.mkdtemp(prefix="model-packager-", dir=request.work_dir))
    try:
        tree = build(
            source=source,
            options=options,
            output=work / "tree",
            version=1,
            sentences=request.sentences,
            reporter=reporter,
        )
        version = reserve(bucket, layout, build_id)
        result = publish_version(tree=tree, bucket=bucket, version=version, reporter=reporter)
        result.fingerprint = build_id
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)
