"""Each example that targets a cluster, installed with helm 3 and with helm 4 on the node pool it
documents (devstack/src/devstack/kube/pools.yaml): install, placement, `helm test`, upgrades,
rollback and uninstall, as a user runs them. KWOK plays the kubelets (no container runs), so what is
tested is what the API server, the scheduler and the controllers do with the chart's objects.
"""

from __future__ import annotations

import re

import pytest

from devstack.cluster import EXIT_CODE_ANNOTATION, Cluster, pool_groups
from tests.cluster.conftest import HELMS, Helm, cluster_examples, example_values

SERVERS = ("ovms", "triton")
#: An annotation on the servers' pod templates: a change of it rolls their pods, nothing else.
REVISION = "devstack.local/revision"
#: Objects every namespace has, which no release made.
NAMESPACE_DEFAULTS = {"serviceaccount/default", "configmap/kube-root-ca.crt"}


def _assert_placement(helm: Helm, example: str) -> None:
    """Every server pod is scheduled, Ready and on a node of a group that serves it."""
    serves = {group["name"]: set(group["serves"]) for group in pool_groups(example)}
    for server in SERVERS:
        pods = [p for p in helm.pods(server) if not p["metadata"].get("deletionTimestamp")]
        assert pods, f"no {server} pod"
        for pod in pods:
            name = pod["metadata"]["name"]
            assert pod["spec"].get("nodeName"), f"{name} is not scheduled: {pod['status'].get('conditions')}"
            group = helm.node_group(pod)
            assert server in serves[group], (
                f"{name} runs on a node of group {group}, which serves {serves[group]}"
            )


def _assert_rolled_out(helm: Helm, *, revision: str | None) -> None:
    """Each server Deployment finishes its rollout with all replicas updated and available, with the
    pod annotation."""
    for server in SERVERS:
        helm.rollout_status(server)
        deployment = helm.deployment(server)
        status, wanted = deployment["status"], deployment["spec"]["replicas"]
        assert status.get("observedGeneration") == deployment["metadata"]["generation"], server
        assert status.get("updatedReplicas") == wanted, (server, status)
        assert status.get("availableReplicas") == wanted, (server, status)
        annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
        assert annotations.get(REVISION) == revision, (server, annotations.get(REVISION))


def _namespace_objects(cluster: Cluster, namespace: str) -> set[str]:
    """Every object in the namespace (kind/name), but events and what every namespace has."""
    kinds = cluster.kubectl("api-resources", "--namespaced", "--verbs=list", "-o", "name").stdout.split()
    kinds = [k for k in kinds if k not in ("events", "events.events.k8s.io")]
    names = cluster.kubectl("get", ",".join(kinds), "--namespace", namespace, "-o", "name").stdout.split()
    # kind.group/name -> kind/name for the core and well-known kinds
    short = {re.sub(r"^([a-z]+)\.[a-z0-9.]+/", r"\1/", n) for n in names}
    return short - NAMESPACE_DEFAULTS


def _notes_cleanup(notes: str, namespace: str) -> list[list[str]]:
    """The `kubectl ... delete ...` commands NOTES.txt gives for what stays after `helm uninstall`."""
    commands = []
    for text in notes.splitlines():
        line = text.strip()
        if line.startswith("kubectl ") and " delete " in line:
            argv = line.split()[1:]
            assert "-n" in argv, line
            assert argv[argv.index("-n") + 1] == namespace, line
            commands.append(argv)
    return commands


@pytest.mark.parametrize("binary", HELMS)
@pytest.mark.parametrize("example", cluster_examples())
def test_lifecycle(kube_cluster: Cluster, helm: Helm, example: str, binary: str) -> None:
    # Install: every object accepted, every pod admitted under "restricted", everything converges.
    helm.install("--values", example_values(example))
    _assert_placement(helm, example)
    _assert_rolled_out(helm, revision=None)
    job = helm.job()
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"].get("conditions", []))

    helm.run("test", helm.release, "--timeout", "5m")

    # An upgrade that changes nothing the Job runs leaves it alone: the same Job, not a new run.
    helm.upgrade("--set-string", "ovms.service.annotations.devstack\\.local/unrelated=1")
    assert helm.job()["metadata"]["uid"] == job["metadata"]["uid"]

    # An upgrade that changes the server pods rolls them, on a pool with no node to spare.
    helm.upgrade(
        *[a for s in SERVERS for a in ("--set-string", f"{s}.podAnnotations.devstack\\.local/revision=2")]
    )
    _assert_rolled_out(helm, revision="2")
    _assert_placement(helm, example)
    assert helm.job()["metadata"]["uid"] == job["metadata"]["uid"]

    # Back to the first revision: the old pods again.
    helm.run("rollback", helm.release, "1", "--wait", "--timeout", "5m")
    _assert_rolled_out(helm, revision=None)
    _assert_placement(helm, example)

    # Uninstall leaves exactly what NOTES.txt says stays, and its commands remove that.
    notes = helm.run("get", "notes", helm.release).stdout
    helm.run("uninstall", helm.release, "--wait", "--timeout", "5m")
    cleanup = _notes_cleanup(notes, helm.namespace)
    noted: set[str] = set()
    for argv in cleanup:
        listed = kube_cluster.kubectl(*argv, "--dry-run=server", "-o", "name").stdout.split()
        noted |= {re.sub(r"^([a-z]+)\.[a-z0-9.]+/", r"\1/", n) for n in listed}
    left = _namespace_objects(kube_cluster, helm.namespace)
    assert left == noted, (
        f"left after uninstall but not in NOTES: {left - noted}; in NOTES, not left: {noted - left}"
    )
    for argv in cleanup:
        kube_cluster.kubectl(*argv, "--wait")
    assert _namespace_objects(kube_cluster, helm.namespace) == set()


@pytest.mark.parametrize("binary", HELMS)
@pytest.mark.parametrize("example", ["kind-cpu"])
def test_packager_permanent_failure_fails_install(
    kube_cluster: Cluster, helm: Helm, example: str, binary: str
) -> None:
    """A packager pod that exits with a permanent code (3: bad input) fails the Job at once
    (podFailurePolicy FailJob), and `helm install --wait-for-jobs` says so instead of waiting out
    its --timeout: helm 4 reads the Job's Failed condition, helm 3 compares status.failed with
    backoffLimit."""
    result = helm.install(
        "--values", example_values(example),
        "--set-string", f"packager.podAnnotations.{EXIT_CODE_ANNOTATION.replace('.', chr(92) + '.')}=3",
        check=False,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    job = helm.job()
    failed = [
        c for c in job["status"].get("conditions", []) if c["type"] == "Failed" and c["status"] == "True"
    ]
    assert failed, job["status"]
    assert failed[0]["reason"] == "PodFailurePolicy", job["status"]
    # The error is the Job's failure, not the deadline: helm noticed.
    error, why = result.stderr.lower(), f"{result.stderr}\nthe namespace's last warnings:\n{helm.warnings()}"
    assert "deadline" not in error, why
    assert "timed out" not in error, why
    assert "failed" in error, why
    assert [p["status"]["phase"] for p in helm.pods("packager")] == ["Failed"]
