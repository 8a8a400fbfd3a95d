"""The chart installed by helm 3 and helm 4 on devstack's cluster (devstack.cluster): one control plane
for the session, a namespace enforcing Pod Security "restricted" and the example's node pool per test.

CLUSTER_TEST_TREE names another tree with charts/emotion-serving and examples/values to install (e.g.
`git archive` of an older commit, to show that a test catches a defect that commit still has); the
default is this repository.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devstack.cluster import GROUP_LABEL, Cluster
from devstack.paths import REPO_ROOT, tool

TREE = Path(os.environ.get("CLUSTER_TEST_TREE", REPO_ROOT))
CHART = TREE / "charts" / "emotion-serving"
EXAMPLES = TREE / "examples" / "values"
COMPONENT = "app.kubernetes.io/component"
#: helm 3 and helm 4, as `make setup` installs them.
HELMS = ("helm", "helm4")
#: A bound for what must converge; a converging release takes seconds (KWOK runs no container).
CONVERGE_TIMEOUT = "5m"


def example_values(example: str) -> str:
    return str(EXAMPLES / f"{example}.yaml")


def cluster_examples() -> list[str]:
    """The examples/values files written for a cluster: those whose header has a `helm install` line
    (local.yaml is the loopback release of `make demo`)."""
    return sorted(
        p.stem for p in EXAMPLES.glob("*.yaml") if re.search(r"^#.*\bhelm install\b", p.read_text(), re.M)
    )


def prerequisites(example: str) -> list[list[str]]:
    """The `kubectl` commands in the example's header comment: what a cluster admin runs first."""
    lines = (EXAMPLES / f"{example}.yaml").read_text().splitlines()
    return [shlex.split(m.group(1)) for line in lines if (m := re.match(r"^#\s+kubectl\s+(.*)$", line))]


@dataclass
class Helm:
    """One release, driven by one helm binary, in its own namespace of the cluster."""

    cluster: Cluster
    binary: str
    release: str
    namespace: str

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(tool(self.binary)), *args, "--namespace", self.namespace]
        result = subprocess.run(argv, capture_output=True, text=True, env=self.cluster.env(), check=False)
        if check and result.returncode:
            command = f"{self.binary} {' '.join(args)}"
            raise AssertionError(
                f"{command} exited {result.returncode}:\n{result.stderr}\n{result.stdout[-2000:]}\n"
                f"the namespace's last warnings:\n{self.warnings()}"
            )
        return result

    def install(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("install", self.release, str(CHART), *args, "--wait", "--wait-for-jobs",
                        "--timeout", CONVERGE_TIMEOUT, check=check)  # fmt: skip

    def upgrade(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("upgrade", self.release, str(CHART), "--reuse-values", *args,
                        "--wait", "--wait-for-jobs", "--timeout", CONVERGE_TIMEOUT, check=check)  # fmt: skip

    def warnings(self, count: int = 8) -> str:
        """The namespace's last Warning events (why a pod is not created, not scheduled)."""
        result = self.cluster.kubectl(
            "get", "events", "--namespace", self.namespace, "--field-selector", "type=Warning",
            "--sort-by=.lastTimestamp", "--no-headers",
            "-o", "custom-columns=OBJECT:.involvedObject.name,REASON:.reason,MESSAGE:.message",
            check=False,
        )  # fmt: skip
        return "\n".join(result.stdout.splitlines()[-count:]) or "(none)"

    def pods(self, component: str | None = None) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.release}"
        if component:
            selector += f",{COMPONENT}={component}"
        return self.cluster.get("pods", namespace=self.namespace, selector=selector)

    def job(self) -> dict[str, Any]:
        jobs = self.cluster.get(
            "jobs",
            namespace=self.namespace,
            selector=f"app.kubernetes.io/instance={self.release},{COMPONENT}=packager",
        )
        assert len(jobs) == 1, f"expected one packager Job, found {[j['metadata']['name'] for j in jobs]}"
        return jobs[0]

    def deployment(self, component: str) -> dict[str, Any]:
        found = self.cluster.get(
            "deployments",
            namespace=self.namespace,
            selector=f"app.kubernetes.io/instance={self.release},{COMPONENT}={component}",
        )
        assert len(found) == 1, f"expected one {component} Deployment, found {len(found)}"
        return found[0]

    def rollout_status(self, component: str) -> None:
        """Wait until the component's Deployment has finished rolling out, as `kubectl rollout
        status` does. helm 3's `--wait` returns once `replicas - maxUnavailable` new pods are ready
        (pkg/kube/ready.go), so with `maxUnavailable: 1` one old pod may still be going."""
        name = self.deployment(component)["metadata"]["name"]
        self.cluster.kubectl(
            "rollout", "status", f"deployment/{name}", "--namespace", self.namespace,
            f"--timeout={CONVERGE_TIMEOUT}",
        )  # fmt: skip

    def node_group(self, pod: dict[str, Any]) -> str:
        node = self.cluster.get("node", pod["spec"]["nodeName"])
        return node["metadata"]["labels"][GROUP_LABEL]


def _name(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:50].strip("-")


@pytest.fixture
def pool(kube_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """The node pool named by the test's `example` parameter, for the test alone."""
    example = request.node.callspec.params["example"]
    with kube_cluster.pool(example):
        yield example


@pytest.fixture
def helm(kube_cluster: Cluster, pool: str, request: pytest.FixtureRequest) -> Iterator[Helm]:
    """A release of the test's `helm` parameter in a namespace of the test's own, deleted afterwards."""
    binary = request.node.callspec.params["binary"]
    namespace = kube_cluster.namespace(_name(f"{request.node.originalname}-{pool}-{binary}"))
    for argv in prerequisites(pool):
        result = kube_cluster.kubectl(*argv, check=False)
        assert result.returncode == 0 or "already exists" in result.stderr, result.stderr  # an earlier test
    try:
        yield Helm(cluster=kube_cluster, binary=binary, release="emotion", namespace=namespace)
    finally:
        kube_cluster.delete_namespace(namespace)
