"""`wait`: block until a version is published (what the servers' initContainers run)."""

from __future__ import annotations

import time

from model_packager.errors import Unavailable, WaitTimeout
from model_packager.layout import Layout
from model_packager.progress import Reporter
from model_packager.s3 import Bucket


def wait_for(
    *,
    bucket: Bucket,
    name: str,
    version: int | None,
    timeout: float,
    reporter: Reporter,
    poll: float = 5.0,
) -> int:
    """Return the published version once READY names `version` (or any version) or newer.

    An unreachable server or a missing bucket count as "not yet": the packager Job may still be
    starting them. Refused credentials do not: they fail at once.
    """
    layout = Layout(name)
    deadline = time.monotonic() + timeout
    last_state = None
    while True:
        state, ready = _state(bucket, layout)
        if ready is not None and (version is None or ready >= version):
            if version is None or _complete(bucket, layout, version):
                reporter.info("published", name=name, version=ready)
                return ready
            state = f"READY names {ready} but manifest {version} is missing"
        if state != last_state:
            reporter.info("waiting", name=name, wanted=version or "any", state=state)
            last_state = state
        if time.monotonic() + poll > deadline:
            wanted = f"version {version} of {name}" if version else f"a version of {name}"
            raise WaitTimeout(
                f"{wanted} was not published in bucket {bucket.name} within {timeout:.0f} s ({state})"
            )
        time.sleep(poll)


def _state(bucket: Bucket, layout: Layout) -> tuple[str, int | None]:
    try:
        if not bucket.exists():
            return "the bucket does not exist yet", None
        ready = bucket.read_json(layout.ready)
    except Unavailable as err:
        return f"the S3 server does not answer: {err.message}", None
    if ready is None:
        return f"{layout.ready} does not exist yet", None
    return f"READY names version {ready['version']}", int(ready["version"])


def _complete(bucket: Bucket, layout: Layout, version: int) -> bool:
    return bucket.stat(layout.manifest(version)) is not None
