"""A release that helm installed on devstack's cluster, as the objects the API server holds.

KWOK plays the kubelets: it marks the release's pods Running (and the Job's pod Completed) while no
container runs. Where a pod's work must be real, devstack.release.Release runs it on this machine
from these objects instead of a render (`Installed` answers what a `chart.Render` answers, so one
code path runs a container either way): the Pod as admitted (its command, args, env and volumes
after admission), the Secrets helm generated at install, the ConfigMaps and Services as stored.

What is substituted, and why:
- A Service's name in a container's argv or env (`<service>.<namespace>.svc:<port>`) becomes the
  local end of `kubectl port-forward svc/<service> <port>`: there is no pod network and no
  kube-proxy here. kubectl picks a pod behind the Service as it would for a user, and the
  connection goes kubectl -> API server -> KWOK's kubelet server -> the address in that pod's
  PortForward object.
- The server processes (the S3 gateway standing in for MinIO, tritonserver) listen on free loopback
  ports; `serve` writes, for every pod of their component, a PortForward object (KWOK's CRD,
  kube/portforward-crd.yaml) from the pod's container ports to those ports: whichever pod kubectl
  picks, the one local process answers.
- Volumes: emptyDirs are scratch folders (chart.Loopback.mounts); a PersistentVolumeClaim bound to
  a hostPath or local PersistentVolume is that folder of this machine.
- Time: KWOK reports the pods done before anything ran, so `helm install --wait` returns first and
  the work runs afterwards, in the order a kubelet would start it (the bucket, the Job, the
  servers' fetch, the servers).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from devstack.chart import COMPONENT, ChartError
from devstack.cluster import Cluster
from devstack.process import ManagedProcess

INSTANCE = "app.kubernetes.io/instance"
#: The kind of a workload's pods' controller (a bare Pod has none).
_OWNER = {"Deployment": "ReplicaSet", "StatefulSet": "StatefulSet", "Job": "Job", "Pod": None}
_KWOK_API = "kwok.x-k8s.io/v1alpha1"


@dataclass
class Installed:
    """The objects of release `release` in `namespace`, read from the API server when asked."""

    cluster: Cluster
    release: str
    namespace: str
    #: Where the `kubectl port-forward` logs go.
    root: Path
    _forwards: dict[tuple[str, int], tuple[ManagedProcess, int]] = field(default_factory=dict, init=False)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return self.cluster.get(kind, namespace=self.namespace, selector=f"{INSTANCE}={self.release}")

    def pods(self, component: str) -> list[dict[str, Any]]:
        """The component's pods that are not being deleted, by name."""
        found = self.cluster.get(
            "pods", namespace=self.namespace, selector=f"{INSTANCE}={self.release},{COMPONENT}={component}"
        )
        live = [p for p in found if not p["metadata"].get("deletionTimestamp")]
        return sorted(live, key=lambda p: p["metadata"]["name"])

    def pod(self, kind: str, component: str) -> dict[str, Any]:
        """The admitted Pod of the component's `kind` workload (the first by name, if several)."""
        owner = _OWNER[kind]
        pods = [
            p
            for p in self.pods(component)
            if owner == next((o["kind"] for o in p["metadata"].get("ownerReferences", [])), None)
        ]
        if not pods:
            raise ChartError(f"release {self.release}: no pod of a {kind} of component {component}")
        return pods[0]

    def secret(self, name: str) -> dict[str, str]:
        obj = self._named("secret", name)
        return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}

    def configmap(self, name: str) -> dict[str, str]:
        return dict(self._named("configmap", name).get("data") or {})

    def _named(self, kind: str, name: str) -> dict[str, Any]:
        obj = self.cluster.get(kind, name, namespace=self.namespace)
        if obj is None:
            raise ChartError(f"namespace {self.namespace} has no {kind} {name}")
        return obj

    def claim_folder(self, name: str) -> Path | None:
        claim = self.cluster.get("pvc", name, namespace=self.namespace) if name else None
        volume = (claim or {}).get("spec", {}).get("volumeName")
        spec = (self.cluster.get("pv", volume) or {}).get("spec", {}) if volume else {}
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        return Path(path) if path else None

    def serve(self, pod: dict[str, Any], local: dict[int, int]) -> None:
        """A PortForward for every pod of `pod`'s component: each container port to its local port."""
        component = (pod["metadata"].get("labels") or {})[COMPONENT]
        forwards = [
            {"ports": [container_port], "target": {"address": "127.0.0.1", "port": port}}
            for container_port, port in sorted(local.items())
        ]
        self.cluster.apply(
            {
                "apiVersion": _KWOK_API,
                "kind": "PortForward",
                "metadata": {"name": p["metadata"]["name"], "namespace": self.namespace},
                "spec": {"forwards": forwards},
            }
            for p in self.pods(component)
        )

    def reach(self, service: str, port: int, local: int) -> int:
        """The local end of `kubectl port-forward svc/<service> <port>` (started on first use)."""
        if (service, port) not in self._forwards:
            self._forwards[(service, port)] = self.cluster.port_forward(
                self.namespace, f"svc/{service}", port, log_dir=self.root
            )
        return self._forwards[(service, port)][1]

    def close(self) -> None:
        for proc, _ in self._forwards.values():
            proc.stop()
        self._forwards.clear()

    def __enter__(self) -> Installed:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
