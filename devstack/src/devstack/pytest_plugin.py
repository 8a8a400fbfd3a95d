"""pytest fixtures for the real local servers (registered through the `pytest11` entry point).

- `s3_server`: one S3 gateway for the whole session (tests use their own buckets);
- `fresh_s3`: a server of the test's own, which the test may stop, kill and restart;
- `triton_factory`, `prometheus_factory`: start servers that are stopped after the test;
- `kube_cluster`: one Kubernetes control plane with KWOK for the session (tests use their own
  namespaces and node pools; devstack.cluster).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.cluster import Cluster
from devstack.prometheus import Prometheus
from devstack.s3 import S3Server
from devstack.triton import TritonServer


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with S3Server(root=tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture
def fresh_s3(tmp_path: Path) -> Iterator[S3Server]:
    server = S3Server(root=tmp_path / "s3")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def bucket_name() -> str:
    """A bucket name of the test's own (S3 names: lowercase letters, digits, dashes)."""
    return "t-" + secrets.token_hex(6)


@pytest.fixture
def triton_factory(tmp_path: Path) -> Iterator[Callable[..., TritonServer]]:
    started: list[TritonServer] = []

    def start(repository: str | Path, *, timeout: float = 120.0, **kwargs: Any) -> TritonServer:
        server = TritonServer(root=tmp_path / f"triton-{len(started)}", repository=str(repository), **kwargs)
        started.append(server)
        return server.start(timeout=timeout)

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    started: list[Prometheus] = []

    def start(**kwargs: Any) -> Prometheus:
        server = Prometheus(root=tmp_path / f"prometheus-{len(started)}", **kwargs)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(root=tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
