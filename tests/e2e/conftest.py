"""A release rendered from the chart and run on loopback, once for the module (devstack.release)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.chart import Render
from devstack.release import Release, checkpoint_values

ROOT = Path(__file__).resolve().parents[2]
LOCAL_VALUES = ROOT / "examples" / "values" / "local.yaml"
LOAD_TEST_RUN = "e2e-run"


@pytest.fixture(scope="module")
def render(tmp_path_factory: pytest.TempPathFactory, checkpoint: Path) -> Render:
    folder = tmp_path_factory.mktemp("values")
    return Render.template(
        release="e2e",
        namespace="serving",
        values=[LOCAL_VALUES, checkpoint_values(folder, checkpoint)],
        # The in-cluster load-test Job as `make loadtest` renders it, with short levels. This checks
        # the wiring, not speed: on a busy 2-core machine the client's loop may lag.
        set_values=(
            f"loadtest.run={LOAD_TEST_RUN}",
            "loadtest.args={--concurrency=2,--duration=4s,--warmup=1s,--workers=1,--max-lag=500ms}",
        ),
    )


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, render: Render) -> Iterator[Release]:
    """The S3 gateway set up as the chart's MinIO, and the packager Job run to completion."""
    with Release(render=render, root=tmp_path_factory.mktemp("release")) as release:
        release.start_s3()
        job = release.run("Job", "packager", "packager")
        assert job.returncode == 0, job.stderr[-3000:]
        yield release
