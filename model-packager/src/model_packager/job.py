"""What the chart's Job runs (`model-packager run`), as a pipeline of small named steps:

    resolve      the checkpoint (hub id at a revision, or a local folder) and its commit
    fits         the options against the checkpoint, before the bucket is touched
    fingerprint  source + options + libraries: the build's identity
    skip         a version with this fingerprint is published already: done, nothing built
    build        convert and prove (the parity gate) into scratch space, as version 1
    claim        the next version number, only once the gate has passed (no orphan numbers)
    publish      the tree renumbered to the claimed version, then READY

The CLI parses and validates its flags into a JobRequest and calls `run_job`; the tests call it too.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from emotion_contract.layout import Layout
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket
from model_packager.build import BuildOptions, build
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
    """Skip if published, else build, claim a version, publish it (module docstring: the steps)."""
    options = request.options
    source = resolve_source(request.model, request.revision, reporter)
    options.check_fits(source)
    layout = Layout(options.name)
    build_id = fingerprint(source=source.describe(), options=options.as_dict(), libraries=library_versions())
    done = already_published(bucket=bucket, layout=layout, fingerprint=build_id, reporter=reporter)
    if done is not None:
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
        return publish_version(tree=tree, bucket=bucket, version=version, reporter=reporter)
    finally:
        shutil.rmtree(work, ignore_errors=True)
