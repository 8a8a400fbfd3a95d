"""A Kubernetes control plane on loopback, with KWOK's fake nodes: what `helm install` talks to.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real servers (built by
`make kube`); KWOK plays the kubelets: it keeps the nodes Ready and moves pods through the Stages
that devstack gives it (kube/stages.yaml, and KWOK's own from its module), so Deployments roll,
Jobs complete or fail, PersistentVolumeClaims bind and `helm test` pods finish, while no container
runs. What it adds to an empty cluster: the prometheus-operator CRDs, a default StorageClass and the
classes the examples name, and namespaces that enforce Pod Security "restricted" (`namespace`).
Node pools come from kube/pools.yaml, whose labels, taints and GPU resource are the chart's own
defaults (the NFD label OVMS selects, the GPU operator's label, taint and resource that Triton
selects, tolerates and requests).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from devstack.errors import StackError
from devstack.paths import REPO_ROOT, tool, tools_dir
from devstack.process import ManagedProcess, free_port, http_status

KUBE_DATA = Path(__file__).with_name("kube")
#: KWOK's PortForward kind: `kubectl port-forward` of a fake pod reaches the address its object names.
PORT_FORWARD_CRD = KUBE_DATA / "portforward-crd.yaml"
CHART = REPO_ROOT / "charts" / "emotion-serving"
EXAMPLES = REPO_ROOT / "examples" / "values"
#: Nodes KWOK manages carry this annotation (and only those: nothing else could run their pods).
FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
#: A pod with this annotation ends, each container exiting with its value: Succeeded for 0, else
#: Failed (kube/stages.yaml).
EXIT_CODE_ANNOTATION = "devstack.local/exit-code"
#: A Job's pod with this annotation stays Running (KWOK's pod-complete leaves it alone) until it gets
#: EXIT_CODE_ANNOTATION: its work runs on this machine meanwhile, and `finish_pod` reports the exit.
HELD_ANNOTATION = "devstack.local/held"
#: Nodes of a pool are labelled with the pool's name, so a test finds its own.
POOL_LABEL = "devstack.local/pool"
GROUP_LABEL = "devstack.local/node-group"
ZONE_LABEL = "topology.kubernetes.io/zone"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
#: The class of a PersistentVolumeClaim that names none; the examples' own are added beside it.
DEFAULT_STORAGE_CLASS = "standard"
_PROVISIONER = "kwok.x-k8s.io/volume"  # what KWOK's volume stages provision for
_ADMIN_USER = "devstack-admin"  # in system:masters, through a static token
_SERVICE_CIDR = "10.96.0.0/16"  # addresses in objects only: nothing here routes or dials them


def _values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


@dataclass(frozen=True)
class NodeKinds:
    """The node labels, taints and GPU resource of the chart's defaults (one place for each)."""

    intel_labels: dict[str, str]
    gpu_labels: dict[str, str]
    gpu_taints: list[dict[str, str]]
    gpu_resource: str

    @classmethod
    def from_chart(cls, chart: Path = CHART) -> NodeKinds:
        ovms = _values(chart / "charts" / "ovms" / "values.yaml")
        gpu = _values(chart / "charts" / "triton" / "values.yaml")["gpu"]
        # The GPU operator taints its nodes with the key Triton tolerates by default, no value.
        taints = [{"key": t["key"], "effect": t["effect"]} for t in gpu["tolerations"]]
        return cls(
            intel_labels=dict(ovms["nodeSelector"]),
            gpu_labels=dict(gpu["nodeSelector"]),
            gpu_taints=taints,
            gpu_resource=gpu["resourceName"],
        )


def pool_groups(pool: str) -> list[dict[str, Any]]:
    """The node groups of kube/pools.yaml's pool `pool` (an examples/values file's stem)."""
    specs = _values(KUBE_DATA / "pools.yaml")
    if pool not in specs:
        raise StackError(f"kube/pools.yaml has no pool {pool!r} (it has {', '.join(specs)})")
    return [{"name": group["kind"], "serves": [], **group} for group in specs[pool]]


def pool_nodes(pool: str, *, kinds: NodeKinds | None = None) -> list[dict[str, Any]]:
    """The Node objects of a pool: <pool>-<group>-<i>, labelled with the pool and the group."""
    kinds = kinds or NodeKinds.from_chart()
    nodes = []
    for group in pool_groups(pool):
        kind = group["kind"]
        labels = {"intel": kinds.intel_labels, "gpu": {**kinds.intel_labels, **kinds.gpu_labels}}.get(
            kind, {}
        )
        taints = [*(kinds.gpu_taints if kind == "gpu" else []), *group.get("taints", [])]
        capacity = {
            "cpu": str(group.get("cpu", "16")),
            "memory": group.get("memory", "64Gi"),
            "ephemeral-storage": group.get("ephemeralStorage", "200Gi"),
            "pods": "110",
        }
        if group.get("gpus"):
            capacity[kinds.gpu_resource] = str(group["gpus"])
        zones = group.get("zones") or [None]
        for index in range(group["count"]):
            name = f"{pool}-{group['name']}-{index}"
            node_labels = {
                **labels,
                **group.get("labels", {}),
                POOL_LABEL: pool,
                GROUP_LABEL: group["name"],
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "type": "kwok",
            }
            if zones[index % len(zones)]:
                node_labels[ZONE_LABEL] = zones[index % len(zones)]
            node: dict[str, Any] = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": node_labels,
                    "annotations": {FAKE_NODE_ANNOTATION: "fake"},
                },
                "spec": {"taints": taints} if taints else {},
                "status": {"capacity": capacity, "allocatable": capacity},
            }
            nodes.append(node)
    return nodes


def _https_ok(url: str) -> bool:
    """A component's own /healthz over its self-signed certificate (loopback, nothing to verify)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=2.0, context=context) as response:  # noqa: S310 (loopback)
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode:
        raise StackError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _make_pki(pki: Path) -> None:
    """A CA, a serving certificate for 127.0.0.1 (the API server and KWOK's kubelet server) and the
    service-account signing key."""
    pki.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=devstack-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=pki)  # fmt: skip
    (pki / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=pki)  # fmt: skip
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=pki)  # fmt: skip
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


#: How long a node may go without a heartbeat before the node controller calls it NotReady: several of
#: KWOK's longest heartbeat intervals (20 s + 25 s jitter, node/heartbeat/node-heartbeat.yaml).
_NODE_GRACE = "3m"


def _kwok_stage_files() -> list[Path]:
    data = tools_dir() / "kube-data" / "kwok-stage"
    if not data.is_dir():
        raise StackError(f"KWOK's stages are not under {data}; run `make setup`")
    # Nodes become Ready at once and keep a heartbeat; pods move without delays; volumes bind.
    return [
        data / "node" / "fast" / "node-initialize.yaml",
        data / "node" / "heartbeat" / "node-heartbeat.yaml",
        *sorted((data / "pod" / "fast").glob("pod-*.yaml")),
        *sorted(p for p in (data / "volume" / "fast").glob("*.yaml") if p.name != "storage-class.yaml"),
    ]


def _stages() -> list[dict[str, Any]]:
    stages = []
    for path in _kwok_stage_files():
        for stage in yaml.safe_load_all(path.read_text()):
            if not stage or stage.get("kind") != "Stage":  # kustomization.yaml
                continue
            name = stage["metadata"]["name"]
            expressions = stage["spec"]["selector"]["matchExpressions"]
            if name == "pod-complete":  # pods with a chosen exit code, or held, are kube/stages.yaml's
                for annotation in (EXIT_CODE_ANNOTATION, HELD_ANNOTATION):
                    expressions.append(
                        {"key": f'.metadata.annotations["{annotation}"]', "operator": "DoesNotExist"}
                    )
            if name == "pvc-provision":
                # KWOK provisions for its own class name; here for every class whose provisioner is
                # KWOK's, which the PV controller writes on the claim when it wants one provisioned.
                expressions[:] = [
                    e for e in expressions if "storageClassName" not in e.get("cel", {}).get("expression", "")
                ]
                expressions.append(
                    {
                        "cel": {
                            "expression": "has(self.metadata.annotations) && self.metadata.annotations["
                            f"'volume.kubernetes.io/storage-provisioner'] == '{_PROVISIONER}'"
                        }
                    }
                )
            stages.append(stage)
    stages += list(yaml.safe_load_all((KUBE_DATA / "stages.yaml").read_text()))
    return stages


def example_storage_classes() -> list[str]:
    """The StorageClasses the examples name for MinIO's volume."""
    names = set()
    for path in EXAMPLES.glob("*.yaml"):
        cls = ((_values(path).get("minio") or {}).get("persistence") or {}).get("storageClass")
        if cls:
            names.add(cls)
    return sorted(names)


@dataclass
class Cluster:
    """The control plane and KWOK, with their data and logs under `root`."""

    root: Path
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)
    controller_manager_port: int = field(default_factory=free_port)
    scheduler_port: int = field(default_factory=free_port)
    kwok_port: int = field(default_factory=free_port)
    token: str = field(default_factory=lambda: os.urandom(16).hex())
    started_in: float | None = field(default=None, init=False)
    _procs: list[ManagedProcess] = field(default_factory=list, init=False, repr=False)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def kubeconfig(self) -> Path:
        """The kubeconfig file kubectl, helm and the controllers use (`--kubeconfig`, KUBECONFIG)."""
        return self.root / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    def env(self) -> dict[str, str]:
        """The environment of a client process: KUBECONFIG, and helm's folders inside `root`."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CONFIG_HOME": str(self.root / "helm" / "config"),
            "HELM_CACHE_HOME": str(self.root / "helm" / "cache"),
            "HELM_DATA_HOME": str(self.root / "helm" / "data"),
        }

    # -- start and stop -------------------------------------------------------------------------

    def start(self, *, timeout: float = 120.0) -> Cluster:
        began = time.monotonic()
        self.root.mkdir(parents=True, exist_ok=True)
        _make_pki(self.pki)
        (self.pki / "tokens.csv").write_text(f"{self.token},{_ADMIN_USER},uid-admin,system:masters\n")
        self._write_kubeconfig()
        try:
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            # The controllers and KWOK start while the CRDs are applied; then each must be ready.
            waits = [*self._start_controllers(), self._start_kwok()]
            self._bootstrap(timeout)
            for wait in waits:
                wait(timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in = time.monotonic() - began
        return self

    def stop(self) -> None:
        for proc in reversed(self._procs):
            proc.stop()
        self._procs.clear()

    def __enter__(self) -> Cluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _spawn(self, name: str, argv: Sequence[str | os.PathLike[str]]) -> ManagedProcess:
        proc = ManagedProcess(name, argv, log_path=self.root / "logs" / f"{name}.log", env=self.env())
        self._procs.append(proc)
        proc.start()
        return proc

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "devstack",
                    "cluster": {"server": self.server, "certificate-authority": str(self.pki / "ca.crt")},
                }
            ],
            "users": [{"name": _ADMIN_USER, "user": {"token": self.token}}],
            "contexts": [{"name": "devstack", "context": {"cluster": "devstack", "user": _ADMIN_USER}}],
            "current-context": "devstack",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def _start_etcd(self, timeout: float) -> None:
        client, peer = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{self.etcd_peer_port}"
        etcd = self._spawn(
            "etcd",
            [
                tool("etcd"), "--name=devstack", f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=devstack={peer}", "--unsafe-no-fsync", "--log-level=warn",
            ],
        )  # fmt: skip
        etcd.wait_until(lambda: http_status(client + "/health") == 200, timeout=timeout)

    def _start_apiserver(self, timeout: float) -> None:
        pki = self.pki
        apiserver = self._spawn(
            "kube-apiserver",
            [
                tool("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={self.apiserver_port}",
                f"--tls-cert-file={pki / 'server.crt'}", f"--tls-private-key-file={pki / 'server.key'}",
                f"--client-ca-file={pki / 'ca.crt'}", f"--token-auth-file={pki / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                # A single loopback API server: no Endpoints for the `kubernetes` Service to keep.
                "--endpoint-reconciler-type=none",
                # KWOK's kubelet server (port-forward) has the devstack CA's certificate.
                f"--kubelet-certificate-authority={pki / 'ca.crt'}",
                "--kubelet-preferred-address-types=InternalIP",
                "--profiling=false", "--v=0",
            ],
        )  # fmt: skip
        ca = str(pki / "ca.crt")
        apiserver.wait_until(lambda: http_status(self.server + "/readyz", ca_file=ca) == 200, timeout=timeout)

    def _bootstrap(self, timeout: float) -> None:
        """What the cluster has before any release: CRDs, StorageClasses."""
        crds = tools_dir() / "kube-data" / "prometheus-operator-crd"
        if not crds.is_dir():
            raise StackError(f"the prometheus-operator CRDs are not under {crds}; run `make setup`")
        self.kubectl("apply", "--server-side", "-f", str(crds))
        classes = [DEFAULT_STORAGE_CLASS, *example_storage_classes()]
        self.apply(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": name,
                    "annotations": {
                        "storageclass.kubernetes.io/is-default-class": str(
                            name == DEFAULT_STORAGE_CLASS
                        ).lower()
                    },
                },
                "provisioner": _PROVISIONER,
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "Immediate",
            }
            for name in classes
        )
        self.kubectl("wait", "--for=condition=Established", "--timeout", f"{timeout:.0f}s", "crd", "--all")

    def _start_controllers(self) -> list[Callable[[float], None]]:
        pki = self.pki
        common = [f"--kubeconfig={self.kubeconfig}", "--bind-address=127.0.0.1", "--leader-elect=false"]
        manager = self._spawn(
            "kube-controller-manager",
            [
                tool("kube-controller-manager"), *common, f"--secure-port={self.controller_manager_port}",
                f"--cert-dir={self.root / 'controller-manager'}",
                f"--service-account-private-key-file={pki / 'sa.key'}", f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                # No pod network to hand out node CIDRs from (KWOK gives the pods their addresses).
                "--controllers=*,-node-ipam-controller",
                f"--service-cluster-ip-range={_SERVICE_CIDR}",
                # KWOK's node-heartbeat stage renews a node's status every 20 s plus up to 25 s of jitter;
                # the default grace (50 s) left a 5 s margin, and a busy machine's late heartbeat marked
                # the node NotReady mid-test (its pods unready, helm 3 waiting out --timeout).
                f"--node-monitor-grace-period={_NODE_GRACE}",
            ],
        )  # fmt: skip
        scheduler = self._spawn(
            "kube-scheduler",
            [
                tool("kube-scheduler"), *common, f"--secure-port={self.scheduler_port}",
                f"--cert-dir={self.root / 'scheduler'}",
            ],
        )  # fmt: skip
        return [
            lambda timeout: manager.wait_until(
                lambda: _https_ok(f"https://127.0.0.1:{self.controller_manager_port}/healthz"),
                timeout=timeout,
            ),
            lambda timeout: scheduler.wait_until(
                lambda: _https_ok(f"https://127.0.0.1:{self.scheduler_port}/healthz"), timeout=timeout
            ),
            # The service-account controller works: namespaces get their `default` account.
            lambda timeout: manager.wait_until(
                lambda: self.get("serviceaccount", "default", namespace="default") is not None,
                timeout=timeout,
                what="making service accounts",
            ),
        ]

    def _start_kwok(self) -> Callable[[float], None]:
        # KWOK watches the PortForward objects from its start: their kind must be served by then.
        self.kubectl("apply", "--server-side", "-f", str(PORT_FORWARD_CRD))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/portforwards.kwok.x-k8s.io")
        config = self.root / "kwok.yaml"
        config.write_text(yaml.safe_dump_all(_stages()))  # KWOK's own defaults otherwise
        pki = self.pki
        kwok = self._spawn(
            "kwok",
            [
                tool("kwok"), f"--kubeconfig={self.kubeconfig}", f"--config={config}",
                f"--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake",
                # The fake kubelets' address is this machine: port-forward reaches KWOK's server.
                "--node-ip=127.0.0.1", f"--node-port={self.kwok_port}",
                f"--server-address=127.0.0.1:{self.kwok_port}",
                f"--tls-cert-file={pki / 'server.crt'}", f"--tls-private-key-file={pki / 'server.key'}",
                # Where a port-forward to a pod goes: the PortForward object named like the pod.
                "--enable-crds=PortForward",
            ],
        )  # fmt: skip
        return lambda timeout: kwok.wait_until(
            lambda: _https_ok(f"https://127.0.0.1:{self.kwok_port}/healthz"), timeout=timeout
        )

    # -- clients --------------------------------------------------------------------------------

    def logs(self) -> dict[str, Path]:
        return {proc.name: proc.log_path for proc in self._procs}

    def check_running(self) -> None:
        """Raise, with its log, for a component that exited."""
        for proc in self._procs:
            if not proc.running():
                raise proc.fail("exited")

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(tool("kubectl")), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode:
            raise StackError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        return result

    def apply(self, docs: Any) -> None:
        self.kubectl(
            "apply", "--server-side", "--force-conflicts", "-f", "-", input=yaml.safe_dump_all(list(docs))
        )

    def get(
        self, kind: str, name: str | None = None, *, namespace: str | None = None, selector: str | None = None
    ) -> Any:
        """The object (None when it does not exist), or the items of a list when no name is given."""
        args = ["get", kind, *([name] if name else []), "-o", "json"]
        if namespace:
            args += ["--namespace", namespace]
        if selector:
            args += ["--selector", selector]
        result = self.kubectl(*args, check=False)
        if result.returncode:
            if "NotFound" in result.stderr:
                return None
            raise StackError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
        data = json.loads(result.stdout)
        return data if name else data["items"]

    def wait_for(self, what: str, ready: Callable[[], Any], *, timeout: float = 120.0) -> Any:
        """Poll `ready` until it returns something true; fail with the components' errors."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_running()
            value = ready()
            if value:
                return value
            time.sleep(0.5)
        raise StackError(f"cluster: not {what} after {timeout:.0f} s")

    # -- what a test needs ----------------------------------------------------------------------

    def namespace(self, name: str, *, labels: dict[str, str] | None = None) -> str:
        """A namespace that enforces Pod Security "restricted", with its `default` ServiceAccount."""
        self.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": {**RESTRICTED, **(labels or {})}},
                }
            ]
        )
        self.wait_for(
            f"serving namespace {name}", lambda: self.get("serviceaccount", "default", namespace=name)
        )
        return name

    def delete_namespace(self, name: str, *, timeout: float = 120.0) -> None:
        self.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
        self.wait_for(
            f"rid of namespace {name}", lambda: self.get("namespace", name) is None, timeout=timeout
        )

    @contextlib.contextmanager
    def pool(self, name: str) -> Iterator[list[dict[str, Any]]]:
        """The nodes of kube/pools.yaml's pool `name`, Ready for the block, then deleted."""
        nodes = pool_nodes(name)
        names = [n["metadata"]["name"] for n in nodes]
        self.apply(nodes)
        try:
            self.wait_for(f"{len(nodes)} nodes Ready", lambda: all(self._node_ready(n) for n in names))
            yield nodes
        finally:
            self.kubectl("delete", "node", *names, "--ignore-not-found")

    def _node_ready(self, name: str) -> bool:
        node = self.get("node", name)
        conditions = (node or {}).get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    @contextlib.contextmanager
    def folder_claim(self, namespace: str, name: str, folder: Path) -> Iterator[str]:
        """A PersistentVolumeClaim `name` bound to a hostPath PersistentVolume of `folder`, for the block:
        how a pod under Pod Security "restricted" (which refuses hostPath volumes) reads a folder of
        this machine. The PersistentVolume is cluster-wide: deleted afterwards."""
        volume = f"{namespace}-{name}"
        self.apply(
            [
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolume",
                    "metadata": {"name": volume},
                    "spec": {
                        "capacity": {"storage": "1Gi"},
                        "accessModes": ["ReadOnlyMany"],
                        "persistentVolumeReclaimPolicy": "Retain",
                        "storageClassName": "",
                        "hostPath": {"path": str(folder), "type": "Directory"},
                        "claimRef": {"namespace": namespace, "name": name},
                    },
                },
                {
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": name, "namespace": namespace},
                    "spec": {
                        "accessModes": ["ReadOnlyMany"],
                        "storageClassName": "",
                        "volumeName": volume,
                        "resources": {"requests": {"storage": "1Gi"}},
                    },
                },
            ]
        )
        try:

            def bound() -> bool:
                claim = self.get("pvc", name, namespace=namespace) or {}
                return claim.get("status", {}).get("phase") == "Bound"

            self.wait_for(f"claim {name} bound", bound)
            yield name
        finally:
            # The namespace's deletion takes the claim too; the volume is the cluster's.
            self.kubectl(
                "delete", "pvc", name, "--namespace", namespace, "--ignore-not-found", "--wait=false"
            )
            self.kubectl("delete", "pv", volume, "--ignore-not-found", "--wait=false")

    def port_forward(
        self, namespace: str, target: str, port: int, *, log_dir: Path, timeout: float = 30.0
    ) -> tuple[ManagedProcess, int]:
        """`kubectl port-forward <target> LOCAL:<port>` (target: svc/NAME or pod/NAME) to a free loopback
        port, running once that port accepts connections; the caller stops the process."""
        local = free_port()
        name = f"port-forward-{target.replace('/', '-')}-{port}"
        proc = ManagedProcess(
            name,
            [tool("kubectl"), f"--kubeconfig={self.kubeconfig}", "port-forward", "--namespace", namespace,
             "--address=127.0.0.1", target, f"{local}:{port}"],
            log_path=log_dir / f"{name}.log",
        )  # fmt: skip
        proc.start()
        try:
            proc.wait_until(lambda: _accepts(local), timeout=timeout, what=f"forwarding {local}")
        except BaseException:
            proc.stop()
            raise
        return proc, local

    def finish_pod(self, namespace: str, name: str, exit_code: int) -> None:
        """End a held pod (HELD_ANNOTATION) with the exit code of the work that ran for it here."""
        self.kubectl("annotate", "pod", name, "--namespace", namespace, f"{EXIT_CODE_ANNOTATION}={exit_code}")


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False
