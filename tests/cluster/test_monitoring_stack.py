"""The bundled kube-prometheus-stack (monitoring.kube-prometheus-stack.enabled) installs with the release
into a namespace that enforces Pod Security "restricted": node-exporter, which needs the host's network,
PIDs and folders, is off by default (the monitoring subchart's values).

It runs where the stack is vendored (`make chart-deps`, which needs the prometheus-community chart
repository); elsewhere it is skipped, saying so.
"""

from __future__ import annotations

import pytest

from devstack.cluster import Cluster
from tests.cluster.conftest import CHART, HELMS, Helm, example_values

VENDORED = sorted((CHART / "charts" / "monitoring" / "charts").glob("kube-prometheus-stack-*.tgz"))


@pytest.mark.skipif(not VENDORED, reason="kube-prometheus-stack is not vendored: run `make chart-deps`")
@pytest.mark.parametrize("binary", HELMS)
@pytest.mark.parametrize("example", ["kind-cpu"])
def test_bundled_stack_in_restricted_namespace(
    kube_cluster: Cluster, helm: Helm, example: str, binary: str
) -> None:
    helm.install(
        "--values", example_values(example),
        "--set", "monitoring.enabled=true", "--set", "monitoring.kube-prometheus-stack.enabled=true",
    )  # fmt: skip
    daemonsets = kube_cluster.get("daemonsets", namespace=helm.namespace)
    assert [d["metadata"]["name"] for d in daemonsets if "node-exporter" in d["metadata"]["name"]] == []
