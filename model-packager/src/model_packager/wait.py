"""`wait`: block until a version is published (what the servers' initContainers run).

It ends within `timeout` plus s3.MIN_REQUEST_WAIT (one second): every look at the bucket runs under
Bucket.until(deadline), so a server that accepts connections and never answers cannot hold it longer.
"""

from __future__ import annotations

import math
import time

from emotion_contract.documents import Ready
from emotion_contract.errors import BadInput, Unavailable
from emotion_contract.layout import Layout
from emotion_contract.logs import Reporter
from emotion_contract.s3 import Bucket
from model_packager.audit import check_ready
from model_packager.errors import WaitTimeout


def wait_for(
    *,
    bucket: Bucket,
    name: str,
    version: int | None,
    timeout: float,
    reporter: Reporter,
    poll: float = 5.0,
    depth: str = "metadata",
) -> int:
    """Return the published version once READY names `version` (or any version) or newer, and that
    version checks out against its manifest (audit.check_ready at `depth`).

    An unreachable server or a missing bucket count as "not yet": the packager Job may still be
    starting them. So does a damaged version: a rerun of the Job publishes the build again. Refused
    credentials do not: they fail at once. A number that was claimed and never published (a run
    killed and never resumed) is passed by the next published one: READY names N+1 >= N.
    """
    check_timing(timeout=timeout, poll=poll)
    layout = Layout(name)
    deadline = time.monotonic() + timeout
    last_state = None
    while True:
        with bucket.until(deadline):
            state, ready = _state(bucket, layout)
            named = None if ready is None else ready.version
            if named is not None and (version is None or named >= version):
                problem = _damage(bucket, layout, ready, depth)
                if problem is None:
                    reporter.info("published", name=name, version=named, depth=depth)
                    return named
                state = f"READY names {named}, but {problem}"
        if state != last_state:
            reporter.info("waiting", name=name, wanted=version or "any", state=state)
            last_state = state
        left = deadline - time.monotonic()
        if left <= 0:
            wanted = f"version {version} of {name}" if version else f"a version of {name}"
            raise WaitTimeout(
                f"{wanted} was not published in bucket {bucket.name} within {timeout:.0f} s ({state})"
            )
        time.sleep(min(poll, left))  # the last look is at the deadline, not a poll before it


def check_timing(*, timeout: float, poll: float) -> None:
    """`wait`'s own options (its endpoint and bucket are the Bucket's to check)."""
    if not math.isfinite(timeout) or timeout < 0:
        raise BadInput(f"timeout must be a number of seconds, 0 or more, not {timeout:g}")
    if not math.isfinite(poll) or poll <= 0:
        raise BadInput(f"poll interval must be a positive number of seconds, not {poll:g}")


def _state(bucket: Bucket, layout: Layout) -> tuple[str, Ready | None]:
    try:
        if not bucket.exists():
            return "the bucket does not exist yet", None
        ready = bucket.ready(layout)
    except Unavailable as err:
        return f"the S3 server does not answer: {err.message}", None
    if ready is None:
        return f"{layout.ready} does not exist yet", None
    return f"READY names version {ready.version}", ready


def _damage(bucket: Bucket, layout: Layout, ready: Ready, depth: str) -> str | None:
    """What is wrong with the version READY names, or None when it is whole."""
    try:
        audit = check_ready(bucket, layout, depth=depth, ready=ready)
    except Unavailable as err:
        return f"the S3 server does not answer: {err.message}"
    assert audit is not None  # READY was given
    return None if audit.intact else audit.summary()
