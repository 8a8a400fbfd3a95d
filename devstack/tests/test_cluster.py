"""devstack.cluster: the control plane starts, its node pools model the examples, pods schedule and
end as KWOK's stages say, a volume binds, and a failed start names the component with its log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack.cluster import EXIT_CODE_ANNOTATION, GROUP_LABEL, RESTRICTED, Cluster, NodeKinds, pool_nodes
from devstack.errors import StackError


def _pod(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **spec.pop("metadata", {})},  # type: ignore[dict-item]
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "main",
                    "image": "registry.invalid/none:1",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
            **spec,
        },
    }


def test_onprem_pool_models_the_chart_defaults() -> None:
    kinds = NodeKinds.from_chart()
    nodes = {n["metadata"]["labels"][GROUP_LABEL]: n for n in pool_nodes("onprem-nfd-gpu")}
    intel, gpu, plain = nodes["intel"], nodes["gpu"], nodes["plain"]
    assert kinds.intel_labels.items() <= intel["metadata"]["labels"].items()
    assert kinds.gpu_labels.items() <= gpu["metadata"]["labels"].items()
    assert {t["key"] for t in gpu["spec"]["taints"]} == {t["key"] for t in kinds.gpu_taints}
    assert gpu["status"]["capacity"][kinds.gpu_resource] == "1"
    assert not (kinds.intel_labels.keys() | kinds.gpu_labels.keys()) & plain["metadata"]["labels"].keys()


def test_pool_pods_and_volume(kube_cluster: Cluster) -> None:
    cluster = kube_cluster
    namespace = cluster.namespace("devstack-cluster-test")
    try:
        with cluster.pool("kind-cpu") as nodes:
            node = nodes[0]["metadata"]["name"]
            ns = cluster.get("namespace", namespace)
            assert RESTRICTED.items() <= ns["metadata"]["labels"].items()
            # Pod Security "restricted" is enforced: a privileged pod is refused.
            refused = cluster.kubectl(
                "apply", "-n", namespace, "-f", "-",
                input=json.dumps(_pod("privileged", hostNetwork=True)), check=False,
            )  # fmt: skip
            assert refused.returncode != 0
            assert "restricted" in refused.stderr, refused.stderr
            failing = _pod("failing", metadata={"annotations": {EXIT_CODE_ANNOTATION: "3"}})
            claim = {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }
            for doc in (_pod("running"), failing, claim):
                cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))

            def phase(name: str) -> str | None:
                pod = cluster.get("pod", name, namespace=namespace)
                return pod and pod["status"].get("phase")

            cluster.wait_for("running", lambda: phase("running") == "Running")
            assert cluster.get("pod", "running", namespace=namespace)["spec"]["nodeName"] == node
            cluster.wait_for("failed", lambda: phase("failing") == "Failed")
            status = cluster.get("pod", "failing", namespace=namespace)["status"]["containerStatuses"][0]
            assert status["state"]["terminated"]["exitCode"] == 3
            cluster.wait_for(
                "bound",
                lambda: (
                    (cluster.get("pvc", "data", namespace=namespace) or {})["status"].get("phase") == "Bound"
                ),
            )
    finally:
        cluster.delete_namespace(namespace)


def test_failed_start_names_the_component(tmp_path: Path) -> None:
    # etcd's data folder is a file: etcd exits, and the error says which server and shows its log.
    cluster = Cluster(root=tmp_path)
    (tmp_path / "etcd").write_text("not a folder")
    with pytest.raises(
        StackError, match=r"^etcd: exited with code \d+ before it was ready(.|\n)*last log lines:"
    ):
        cluster.start(timeout=60)
