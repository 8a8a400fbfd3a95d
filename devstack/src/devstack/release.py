"""A rendered release run on loopback: the chart's own commands, environment, Secrets and ports.

The objects come from a render (`chart.Render`), or, for a release helm installed on devstack's
cluster, from the API server (`installed.Installed`: the admitted pods and the generated Secrets,
with the Services reached through KWOK's port-forward); what runs is the same either way.

What runs, and what stands in where this machine cannot run the real thing:
- MinIO -> the Versity S3 gateway with the rendered root keys; what the chart's MinIO setup
  container does with `mc` (a bucket, a reader and a writer account with the rendered policies) is
  done through the gateway's own accounts and a bucket policy built from the rendered policy files.
- the packager Job, the servers' `wait` initContainers and the `helm test` pod: their rendered
  argv and environment, run as local processes (the Job's `wait-for-bucket` initContainer runs
  `mc`, MinIO's client, which is not used here: the bucket check is the gateway's).
- Triton: the rendered arguments and environment; only the binary (the nvidia-pytriton wheel's),
  its backend folder, loopback listen addresses and `--model-config-name=python` (this build has
  no onnxruntime backend; the python config runs the same model.onnx) are local.
- OVMS: not run (no build here); devstack.ovms checks its arguments, config.json and environment,
  and compiles the IR its version policy selects at each base_path (the folder its fetch
  initContainer filled) with the rendered plugin_config.
- Prometheus: scrape targets from the rendered ServiceMonitors (Service, port name, path).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from devstack import ovms
from devstack.chart import ChartError, Loopback, Objects, Render, container
from devstack.paths import REPO_ROOT
from devstack.process import ManagedProcess, free_port, http_status
from devstack.prometheus import Prometheus, ScrapeTarget
from devstack.s3 import S3Server
from devstack.triton import command, environment
from emotion_contract.servers import SERVERS

LOCAL_TRITON_CONFIG = "python"
#: Where each server serves its metrics: the path, and the flag that sets the listening port (OVMS:
#: docs/metrics.md, on the REST port; Triton: docs/user_guide/metrics.md, which answers on any path,
#: so only this check catches a wrong one; MinIO: its cluster metrics endpoint, on the API port).
METRICS = {
    **{spec.name: (spec.name, spec.metrics_path, spec.metrics_flag) for spec in SERVERS.values()},
    "minio": ("minio", "/minio/v2/metrics/cluster", "--address"),
}
_KINDS = {"minio": "StatefulSet"}  # workload kinds that are not a Deployment
#: Components whose stand-in here does not serve their metrics: the S3 gateway is not MinIO.
NOT_SCRAPED = {"minio": "the Versity S3 gateway stands in for MinIO and has no MinIO metrics"}
_BIN = REPO_ROOT / ".venv" / "bin"


@dataclass
class Release:
    #: The render, or an installed release's objects (devstack.installed.Installed).
    render: Objects
    root: Path
    s3: S3Server | None = None
    triton: ManagedProcess | None = None
    triton_ports: dict[str, int] = field(default_factory=dict)
    prometheus: Prometheus | None = None
    #: After check_ovms: each OVMS model's downloaded version folder and its rendered plugin_config.
    ovms_models: dict[str, tuple[Path, dict[str, Any]]] = field(default_factory=dict)
    loop: Loopback = field(init=False)
    _owns_s3: bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.loop = Loopback(render=self.render, scratch=self.root / "volumes")

    # -- S3 (MinIO's place) -------------------------------------------------------------------

    def start_s3(self) -> S3Server:
        pod = self.render.pod("StatefulSet", "minio")
        env = self.loop.env(pod, container(pod, "minio"))
        self.s3 = S3Server(
            root=self.root / "s3",
            access_key=env["MINIO_ROOT_USER"],
            secret_key=env["MINIO_ROOT_PASSWORD"],
            iam=True,
        ).start()
        self.loop.expose("minio", pod, {_api_port(pod): self.s3.port})
        self._setup_bucket(pod)
        return self.s3

    @property
    def bucket(self) -> str:
        """The bucket the chart's MinIO setup makes (its setup container's BUCKET)."""
        pod = self.render.pod("StatefulSet", "minio")
        return self.loop.env(pod, container(pod, "setup"))["BUCKET"]

    def share_s3(self, other: Release) -> None:
        """Use the S3 server another release started (and stops), with this render's Services."""
        assert other.s3 is not None
        self.s3, self._owns_s3 = other.s3, False
        pod = self.render.pod("StatefulSet", "minio")
        self.loop.expose("minio", pod, {_api_port(pod): self.s3.port})

    def _setup_bucket(self, pod: dict[str, Any]) -> None:
        """What the rendered setup container does with mc: the bucket, two accounts, their policies."""
        assert self.s3 is not None
        setup = container(pod, "setup")
        env = self.loop.env(pod, setup)
        files = next(
            self.render.configmap(v["configMap"]["name"])
            for v in pod["spec"]["volumes"]
            if "configMap" in v and any(m["name"] == v["name"] for m in setup.get("volumeMounts", []))
        )
        bucket = env["BUCKET"]
        client = self.s3.client()
        if not client.bucket_exists(bucket):
            client.make_bucket(bucket)
        statements = []
        for role in ("reader", "writer"):
            access, secret = env[f"{role.upper()}_ACCESS_KEY_ID"], env[f"{role.upper()}_SECRET_ACCESS_KEY"]
            self.s3.create_user(access, secret)
            policy = json.loads(files[f"emotion-serving-{role}.json"])
            statements += [{**s, "Principal": {"AWS": [access]}} for s in policy["Statement"]]
        client.set_bucket_policy(bucket, json.dumps({"Version": "2012-10-17", "Statement": statements}))

    # -- processes ----------------------------------------------------------------------------

    def run(
        self, kind: str, component: str, name: str, *, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        """A rendered container run to completion (a Job's, an initContainer's, the test pod's)."""
        pod = self.render.pod(kind, component)
        item = container(pod, name)
        argv = self.loop.argv(pod, item)
        return self.run_argv(argv, self.loop.env(pod, item), timeout=timeout)

    def run_argv(
        self, argv: Sequence[str], env: dict[str, str], *, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        local = {"PATH": f"{_BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(self.root / "home"), **env}
        return subprocess.run(
            list(argv), env=local, capture_output=True, text=True, timeout=timeout, check=False
        )

    def helm_test(self, *, timeout: float = 300) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        """The `helm test` pod's command, without the targets that do not run here (OVMS)."""
        return self._client("Pod", "tests", timeout=timeout)

    def load_test(self, *, timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        """The in-cluster load-test Job's command (rendered with `loadtest.run`), without the targets
        and metrics of servers that do not run here (OVMS)."""
        return self._client("Job", "loadtest", timeout=timeout)

    def _client(
        self, kind: str, component: str, *, timeout: float
    ) -> tuple[subprocess.CompletedProcess[str], list[str]]:
        """A client of the servers (its container `loadtest`), run with its --target and --metrics of
        a server that does not run here left out; those are returned, so the caller can name them."""
        pod = self.render.pod(kind, component)
        item = container(pod, "loadtest")
        kept, skipped = [], []
        for arg in [*item.get("command", []), *item.get("args", [])]:
            if arg.startswith(("--target=", "--metrics=")):
                try:
                    self.loop.localize(arg)
                except ChartError:
                    skipped.append(arg.removeprefix("--target="))
                    continue
            kept.append(arg)
        local = {**item, "command": kept, "args": []}
        return self.run_argv(self.loop.argv(pod, local), self.loop.env(pod, item), timeout=timeout), skipped

    def start_triton(self, *, timeout: float = 180) -> ManagedProcess:
        pod = self.render.pod("Deployment", "triton")
        item = container(pod, "triton")
        declared = {p["containerPort"]: p["name"] for p in item.get("ports", [])}
        local = {number: free_port() for number in declared}
        argv = self.loop.argv(pod, item, ports=local)
        if argv[0] != "tritonserver":
            raise ChartError(f"the triton container runs {argv[0]!r}, not tritonserver")
        args = [a for a in argv[1:] if not a.startswith("--model-config-name=")]
        args.append(f"--model-config-name={LOCAL_TRITON_CONFIG}")
        for flag, name in (("--http-port", "http"), ("--grpc-port", "grpc"), ("--metrics-port", "metrics")):
            given = next((a.split("=", 1)[1] for a in args if a.startswith(flag + "=")), None)
            wanted = local[next(n for n, label in declared.items() if label == name)]
            if given != str(wanted):
                raise ChartError(
                    f"tritonserver {flag}={given}, but the container's port {name!r} is not that port"
                )
        self.triton_ports = {declared[n]: port for n, port in local.items()}
        self.triton = ManagedProcess(
            "tritonserver",
            command(args),
            log_path=self.root / "triton.log",
            env=environment(self.loop.env(pod, item)),
        )
        self.triton.start()
        ready = f"http://127.0.0.1:{self.triton_ports['http']}/v2/health/ready"
        self.triton.wait_until(lambda: http_status(ready) == 200, timeout=timeout)
        self.loop.expose("triton", pod, local)
        return self.triton

    def check_ovms(self) -> tuple[list[str], dict[str, Any]]:
        """Problems in OVMS's rendered argv, config.json and env; and its models compiled from the bucket."""
        pod = self.render.pod("Deployment", "ovms")
        item = container(pod, "ovms")
        argv = self.loop.argv(pod, item)
        env = self.loop.env(pod, item)
        config_path = next(a.split("=", 1)[1] for a in argv if a.startswith("--config_path="))
        config = ovms.read_config(Path(config_path))
        problems = ovms.check(argv=argv, config=config, env=env)
        compiled = {}
        if not problems:
            compiled = self._compile_ovms_models(config, self.loop.mounts(pod, item))
        return problems, compiled

    def _compile_ovms_models(self, config: dict[str, Any], mounts: dict[str, Path]) -> dict[str, Any]:
        """Each model's version as OVMS would load it from its base_path: the local repository the
        fetch initContainer filled (run `fetch("ovms")` first), under the rendered version policy."""
        compiled = {}
        for entry in config.get("model_config_list", []):
            model = entry["config"]
            name, base = model["name"], model["base_path"]
            local = Path(self.loop.place(base, mounts))
            if local == Path(base):
                raise ChartError(f"OVMS model {name}: base_path {base} is on no volume of the ovms container")
            version = ovms.served_version(local, model.get("model_version_policy", {"latest": {}}))
            if version is None:
                raise ChartError(f"OVMS would find no version of {name} under {base}")
            folder = local / str(version)
            compiled[name] = ovms.compile_model(next(folder.glob("*.xml")), model.get("plugin_config", {}))
            self.ovms_models[name] = (folder, model.get("plugin_config", {}))
        return compiled

    def fetch(self, component: str, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The server's fetch initContainer, into the pod's volume its server then reads."""
        return self.run("Deployment", component, "fetch-model", timeout=timeout)

    def _scrapes(self) -> list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]]:
        """(ServiceMonitor name, endpoint, selected Service, that Service's port) for every endpoint."""
        found = []
        for monitor in self.render.objects("ServiceMonitor"):
            name = monitor["metadata"]["name"]
            selector = monitor["spec"]["selector"].get("matchLabels", {})
            for service in self.render.objects("Service"):
                labels = service["metadata"].get("labels") or {}
                if any(labels.get(k) != v for k, v in selector.items()) or not service["spec"].get("ports"):
                    continue
                for endpoint in monitor["spec"]["endpoints"]:
                    ports = [p for p in service["spec"]["ports"] if p.get("name") == endpoint["port"]]
                    if not ports:
                        lacking = f"{endpoint['port']!r}, which {service['metadata']['name']} lacks"
                        raise ChartError(f"ServiceMonitor {name} scrapes port {lacking}")
                    found.append((name, endpoint, service, ports[0]))
        return found

    def check_monitors(self) -> list[str]:
        """Each ServiceMonitor scrapes the path and the container port where its server serves metrics."""
        problems = []
        for name, endpoint, service, port in self._scrapes():
            component = service["metadata"]["labels"]["app.kubernetes.io/component"]
            server, path, flag = METRICS[component]
            item = container(self.render.pod(_KINDS.get(component, "Deployment"), component), server)
            listening = next(
                (a.split("=", 1)[1] for a in item.get("args", []) if a.startswith(flag + "=")), "?"
            )
            declared = {p.get("name"): p["containerPort"] for p in item.get("ports", [])}
            target = port.get("targetPort", port["port"])
            scraped = declared.get(target, target)
            if endpoint.get("path", "/metrics") != path:
                problems.append(f"ServiceMonitor {name} scrapes {endpoint.get('path', '/metrics')}, "
                                f"but {component} serves its metrics at {path}")  # fmt: skip
            if str(scraped) != listening.rsplit(":", 1)[-1]:
                problems.append(f"ServiceMonitor {name} scrapes container port {scraped}, "
                                f"but {component} serves metrics on {flag}={listening}")  # fmt: skip
        return problems

    def start_prometheus(self, *, rule_files: Sequence[Path] = ()) -> tuple[Prometheus, list[str]]:
        """Scrape what the rendered ServiceMonitors select, where it runs here; returns what was skipped."""
        problems = self.check_monitors()
        if problems:
            raise ChartError("; ".join(problems))
        targets, skipped = [], []
        for _, endpoint, service, port in self._scrapes():
            component = service["metadata"]["labels"]["app.kubernetes.io/component"]
            path = endpoint.get("path", "/metrics")
            where = f"{service['metadata']['name']}:{endpoint['port']}{path}"
            try:
                address = self.loop.address(service["metadata"]["name"], port["port"])
            except ChartError:
                skipped.append(f"{where} (not running here)")
                continue
            if component in NOT_SCRAPED:
                skipped.append(f"{where} ({NOT_SCRAPED[component]})")
                continue
            # The labels the operator gives a target, then the endpoint's own replace relabelings.
            labels = {"namespace": self.render.namespace, "service": service["metadata"]["name"],
                      "endpoint": endpoint["port"], "pod": f"{component}-local"}  # fmt: skip
            for rule in endpoint.get("relabelings", []):
                if rule.get("action", "replace") == "replace" and not rule.get("sourceLabels"):
                    labels[rule["targetLabel"]] = rule["replacement"]
            targets.append(ScrapeTarget(job=component, address=address, path=path, labels=labels))
        self.prometheus = Prometheus(
            root=self.root / "prometheus", targets=targets, rule_files=rule_files
        ).start()
        return self.prometheus, skipped

    # -- lifetime -----------------------------------------------------------------------------

    def stop(self) -> None:
        for part in (self.prometheus, self.triton, self.s3 if self._owns_s3 else None):
            if part is not None:
                part.stop()

    def __enter__(self) -> Release:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _api_port(minio_pod: dict[str, Any]) -> int:
    return next(p["containerPort"] for p in container(minio_pod, "minio")["ports"] if p["name"] == "api")


def checkpoint_values(folder: Path, checkpoint: Path, *, claim: str | None = None) -> Path:
    """A values file that hands a local checkpoint to the packager Job at /checkpoint: a hostPath
    volume, or PersistentVolumeClaim `claim` (bound to that folder: Pod Security "restricted"
    refuses hostPath volumes; devstack.cluster.Cluster.folder_claim)."""
    path = folder / "checkpoint-values.yaml"
    mount = {"name": "checkpoint", "mountPath": "/checkpoint", "readOnly": True}
    source = {"persistentVolumeClaim": {"claimName": claim, "readOnly": True}} if claim else None
    volume = {"name": "checkpoint", **(source or {"hostPath": {"path": str(checkpoint)}})}
    path.write_text(
        yaml.safe_dump(
            {
                "global": {"model": {"source": "/checkpoint"}},
                "packager": {"extraVolumes": [volume], "extraVolumeMounts": [mount]},
            }
        )
    )
    return path


def rule_files(render: Render, folder: Path) -> list[Path]:
    """The rendered PrometheusRules as Prometheus rule files."""
    files = []
    for rule in render.objects("PrometheusRule"):
        path = folder / f"{rule['metadata']['name']}.rules.yaml"
        path.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        files.append(path)
    return files
