"""What the chart renders (or what helm installed), made runnable on loopback.

`Render` runs `helm template` and answers questions about the objects (a component's pod spec, a
Secret's values, the Services); devstack.installed.Installed gives the same answers from the API
server for a release helm installed (`Objects` is what both provide). `Loopback` maps the Services
onto 127.0.0.1 ports and gives the argv and environment a container would get: secretKeyRef and
configMapKeyRef resolved from those objects, `<service>.<namespace>.svc:<port>` rewritten to a
loopback port that reaches the process behind that Service port (for a render that process's own
port; for an installed release a `kubectl port-forward` of the Service), and paths under emptyDir
mounts moved to a scratch folder. Everything the chart got wrong (an unknown Service, a port no
container declares, a missing Secret key) raises ChartError naming the object.
"""

from __future__ import annotations

import base64
import re
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from devstack.errors import StackError
from devstack.paths import REPO_ROOT, tool

CHART = REPO_ROOT / "charts" / "emotion-serving"
COMPONENT = "app.kubernetes.io/component"
_SERVICE_HOST = re.compile(
    r"(?P<service>[a-z0-9]([-a-z0-9]*[a-z0-9])?)\.(?P<namespace>[a-z0-9-]+)\.svc(\.cluster\.local)?:(?P<port>\d+)"
)
_PORT_FLAG = re.compile(r"^(?P<flag>--[\w-]*port[\w-]*=)(?P<port>\d+)$")


class ChartError(StackError):
    """The rendered chart cannot run as rendered; the message names the object and the problem."""


class Objects(Protocol):
    """A release's objects: from a render (`Render`) or from the API server (devstack.installed)."""

    release: str
    namespace: str

    def objects(self, kind: str) -> list[dict[str, Any]]: ...
    def pod(self, kind: str, component: str) -> dict[str, Any]: ...
    def secret(self, name: str) -> dict[str, str]: ...
    def configmap(self, name: str) -> dict[str, str]: ...

    def claim_folder(self, name: str) -> Path | None:
        """The folder of this machine behind PersistentVolumeClaim `name`, if it has one."""
        ...

    def serve(self, pod: dict[str, Any], local: dict[int, int]) -> None:
        """The pods like `pod` are served on this machine: containerPort -> local port."""
        ...

    def reach(self, service: str, port: int, local: int) -> int:
        """The loopback port a client uses for Service `service` port `port`, whose pod's process
        listens on `local`."""
        ...


@dataclass
class Render:
    docs: list[dict[str, Any]]
    release: str
    namespace: str

    @classmethod
    def template(
        cls,
        *,
        release: str = "demo",
        namespace: str = "default",
        values: Sequence[Path] = (),
        set_values: Sequence[str] = (),
        api_versions: Sequence[str] = ("monitoring.coreos.com/v1",),
        kube_version: str | None = None,
        chart: Path = CHART,
    ) -> Render:
        """`helm template` with values files, `--set` items, API versions and a Kubernetes version."""
        argv = [str(tool("helm")), "template", release, str(chart), "--namespace", namespace]
        for path in values:
            argv += ["--values", str(path)]
        for item in set_values:
            argv += ["--set", item]
        for api in api_versions:
            argv += ["--api-versions", api]
        if kube_version:
            argv += ["--kube-version", kube_version]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode:
            raise ChartError(f"helm template failed: {result.stderr.strip()}")
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        return cls(docs=docs, release=release, namespace=namespace)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        return [d for d in self.docs if d["kind"] == kind]

    def one(self, kind: str, component: str) -> dict[str, Any]:
        found = [d for d in self.objects(kind) if _labels(d).get(COMPONENT) == component]
        if len(found) != 1:
            raise ChartError(f"expected one {kind} of component {component}, the render has {len(found)}")
        return found[0]

    def pod(self, kind: str, component: str) -> dict[str, Any]:
        """The pod template (metadata and spec) of a workload, or a bare Pod's own."""
        obj = self.one(kind, component)
        return (
            {"metadata": obj["metadata"], "spec": obj["spec"]} if kind == "Pod" else obj["spec"]["template"]
        )

    def named(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.objects(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise ChartError(f"the render has no {kind} named {name}")

    def secret(self, name: str) -> dict[str, str]:
        obj = self.named("Secret", name)
        values = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        values.update(obj.get("stringData") or {})
        return values

    def configmap(self, name: str) -> dict[str, str]:
        return dict(self.named("ConfigMap", name).get("data") or {})

    def claim_folder(self, name: str) -> Path | None:
        return None  # a render binds no claim: its volumes are the pod's scratch folders

    def serve(self, pod: dict[str, Any], local: dict[int, int]) -> None:
        pass  # nothing stands between a Service and the local process: `reach` is that process's port

    def reach(self, service: str, port: int, local: int) -> int:
        return local

    def patch(self, change: Callable[[list[dict[str, Any]]], None]) -> Render:
        """A copy of the render with `change` applied (the end-to-end test's mutations)."""
        docs = yaml.safe_load(yaml.safe_dump(self.docs))
        change(docs)
        return Render(docs=docs, release=self.release, namespace=self.namespace)


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod.get("spec", pod)
    for item in spec.get("initContainers", []) + spec["containers"]:
        if item["name"] == name:
            return item
    raise ChartError(f"the pod has no container {name}")


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    spec = obj.get("spec", {})
    template = spec.get("template", {}).get("metadata") if isinstance(spec, dict) else None
    return (template or obj["metadata"]).get("labels") or {}


@dataclass
class Loopback:
    """The release's Services on 127.0.0.1: each (Service, port) reaches a local process's port."""

    #: The render, or the installed release's objects (the name is the render's, from before those).
    render: Objects
    scratch: Path
    _ports: dict[tuple[str, int], int] = field(default_factory=dict)

    def expose(self, component: str, pod: dict[str, Any], local: dict[int, int]) -> None:
        """A process of `component` listens on local[containerPort]: route its Services to it."""
        self.render.serve(pod, local)
        labels = pod.get("metadata", {}).get("labels") or {}
        declared = {}
        for item in pod["spec"]["containers"]:
            for port in item.get("ports", []):
                declared[port["containerPort"]] = port
                if port.get("name"):
                    declared[port["name"]] = port
        for service in self.render.objects("Service"):
            selector = service["spec"].get("selector") or {}
            if not selector or any(labels.get(k) != v for k, v in selector.items()):
                continue
            name = service["metadata"]["name"]
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port["port"])
                if target not in declared:
                    raise ChartError(
                        f"Service {name} port {port['port']} targets {target!r}, "
                        f"which no container of {component} declares"
                    )
                number = declared[target]["containerPort"]
                if number not in local:
                    raise ChartError(f"{component} does not listen on its container port {number} here")
                self._ports[(name, port["port"])] = local[number]

    def address(self, service: str, port: int) -> str:
        if (service, port) not in self._ports:
            known = ", ".join(f"{s}:{p}" for s, p in sorted(self._ports)) or "none"
            raise ChartError(f"nothing serves Service {service} port {port} (running here: {known})")
        return f"127.0.0.1:{self.render.reach(service, port, self._ports[(service, port)])}"

    def localize(self, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group("namespace") != self.render.namespace:
                raise ChartError(f"{match.group(0)} is in namespace {match.group('namespace')}")
            return self.address(match.group("service"), int(match.group("port")))

        return _SERVICE_HOST.sub(replace, text)

    def mounts(self, pod: dict[str, Any], item: dict[str, Any]) -> dict[str, Path]:
        """mountPath -> a local folder: a hostPath volume is that folder of this machine, and so is a
        claim bound to one (`claim_folder`); ConfigMap and Secret volumes are written out; any other
        volume (emptyDir, a StatefulSet's volumeClaimTemplates) is a folder of the pod's, shared by
        its containers as in Kubernetes (what an initContainer writes there, the main container reads)."""
        volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
        owner = (pod.get("metadata", {}).get("labels") or {}).get(COMPONENT, "pod")
        found = {}
        for mount in item.get("volumeMounts", []):
            volume = volumes.get(mount["name"], {})
            if "hostPath" in volume:
                found[mount["mountPath"]] = Path(volume["hostPath"]["path"])
                continue
            claimed = self.render.claim_folder(volume.get("persistentVolumeClaim", {}).get("claimName", ""))
            if claimed is not None:
                found[mount["mountPath"]] = claimed
                continue
            files = "configMap" in volume or "secret" in volume
            local = self.scratch / (item["name"] if files else f"pod-{owner}") / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            if "configMap" in volume:
                for key, value in self.render.configmap(volume["configMap"]["name"]).items():
                    (local / key).write_text(value)
            elif "secret" in volume:
                for key, value in self.render.secret(volume["secret"]["secretName"]).items():
                    (local / key).write_text(value)
            found[mount["mountPath"]] = local
        return found

    def place(self, text: str, mounts: dict[str, Path]) -> str:
        """A path (or --flag=path) under a mount, as the local folder behind it."""
        for path, local in sorted(mounts.items(), key=lambda m: -len(m[0])):
            if text == path or text.startswith(path.rstrip("/") + "/"):
                return str(local) + text[len(path.rstrip("/")) :]
            if "=" in text and text.split("=", 1)[1].startswith(path):
                flag, value = text.split("=", 1)
                return f"{flag}={self.place(value, mounts)}"
        return text

    def env(self, pod: dict[str, Any], item: dict[str, Any]) -> dict[str, str]:
        mounts = self.mounts(pod, item)
        values: dict[str, str] = {}
        for source in item.get("envFrom", []):
            if "secretRef" in source:
                values.update(self.render.secret(source["secretRef"]["name"]))
            elif "configMapRef" in source:
                values.update(self.render.configmap(source["configMapRef"]["name"]))
        for entry in item.get("env", []):
            if "value" in entry:
                values[entry["name"]] = self.place(self.localize(str(entry["value"])), mounts)
            elif "secretKeyRef" in entry.get("valueFrom", {}):
                ref = entry["valueFrom"]["secretKeyRef"]
                secret = self.render.secret(ref["name"])
                if ref["key"] not in secret:
                    raise ChartError(f"Secret {ref['name']} has no key {ref['key']} (env {entry['name']})")
                values[entry["name"]] = secret[ref["key"]]
            elif "configMapKeyRef" in entry.get("valueFrom", {}):
                ref = entry["valueFrom"]["configMapKeyRef"]
                values[entry["name"]] = self.render.configmap(ref["name"])[ref["key"]]
            else:
                raise ChartError(
                    f"env {entry['name']}: {entry.get('valueFrom')} cannot be resolved outside a cluster"
                )
        return values

    def argv(
        self, pod: dict[str, Any], item: dict[str, Any], *, ports: dict[int, int] | None = None
    ) -> list[str]:
        """command + args as rendered, with Services, mounted paths and listening ports made local."""
        mounts = self.mounts(pod, item)
        argv = []
        for arg in [*item.get("command", []), *item.get("args", [])]:
            text = self.place(self.localize(str(arg)), mounts)
            match = _PORT_FLAG.match(text)
            if ports is not None and match and int(match.group("port")) in ports:
                text = f"{match.group('flag')}{ports[int(match.group('port'))]}"
            argv.append(text)
        if not argv:
            raise ChartError(f"container {item['name']} has no command: it would run the image's entrypoint")
        return argv
