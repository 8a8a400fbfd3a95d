"""`loadtest release` (what `make loadtest` runs): load-test a deployed release through kubectl port-forward.

The release's Services are found by the chart's labels (docs/contracts.md):
app.kubernetes.io/name=emotion-serving, app.kubernetes.io/instance=<release>, and
app.kubernetes.io/component one of ovms, triton, minio; their ports by name (ovms grpc/http, triton
http/grpc/metrics, minio api). Each Service gets one `kubectl port-forward` to free local ports; the
targets, their /metrics and (unless --package is given) the bucket behind the MinIO Service are handed to
`loadtest run`. The port-forwards end with the run, whatever happens.

kubectl port-forward tunnels every request through the API server: good for checking a release and
comparing the servers at modest rates, not for absolute figures (docs/loadtest.md shows the in-cluster Job).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from emotion_contract.errors import BadInput, Unavailable
from emotion_contract.servers import SERVERS as SPECS
from loadtest.lifetime import die_with_parent

PART_OF = "emotion-serving"
SERVERS = tuple(spec.name for spec in SPECS.values())
#: Which Service port each server is driven through, per protocol (named like the protocol on both).
TARGET_PORT = {"grpc": "grpc", "http": "http"}
_FORWARD = re.compile(r"Forwarding from 127\.0\.0\.1:(\d+) -> (\d+)")


@dataclass(frozen=True)
class Service:
    name: str
    component: str
    ports: dict[str, int]  # port name -> port


def discover(services_json: str, *, release: str) -> dict[str, Service]:
    """The release's Services by component, from `kubectl get services -o json`."""
    try:
        items = json.loads(services_json)["items"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise BadInput("kubectl get services did not answer a JSON list") from None
    found: dict[str, Service] = {}
    for item in items:
        labels = item.get("metadata", {}).get("labels", {})
        if labels.get("app.kubernetes.io/instance") != release:
            continue
        component = labels.get("app.kubernetes.io/component", "")
        ports = {p["name"]: int(p["port"]) for p in item.get("spec", {}).get("ports", []) if p.get("name")}
        if ports:  # a StatefulSet's headless governing Service carries the labels but no port
            found[component] = Service(item["metadata"]["name"], component, ports)
    if not any(server in found for server in SERVERS):
        raise BadInput(f"release {release}: no ovms or triton Service with the chart's labels")
    return found


#: Extended resources that are GPUs (a whole GPU or a MIG slice each): NVIDIA's device plugin, AMD's, Intel's.
_GPU_RESOURCE = re.compile(r"^(nvidia\.com/(gpu|mig-.+)|amd\.com/gpu|gpu\.intel\.com/.+)$")


def _cores(quantity: str) -> float:
    """A CPU quantity in cores: "2", "1.5", "500m" (BadInput otherwise)."""
    text = str(quantity)
    try:
        return float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    except ValueError:
        raise BadInput(f"CPU quantity {text!r} is not cores or millicores") from None


def pod_resources(
    deployments_json: str, *, release: str, replicas: bool = False
) -> dict[str, dict[str, float]]:
    """What each server reserves, from `kubectl get deployments -o json`: the server container's CPU
    request (what the scheduler sets aside; its limit when no request) and its GPUs (extended
    resources, given as limits), as `loadtest run --resources` takes them. One pod's (a port-forward
    to a Service reaches one of its pods), or with `replicas` times the ready replicas (the
    Deployment's status; its spec's count when none is ready yet): what a client inside the
    cluster reaches through the Service."""
    try:
        items = json.loads(deployments_json)["items"]
    except (json.JSONDecodeError, KeyError, TypeError):
        raise BadInput("kubectl get deployments did not answer a JSON list") from None
    found: dict[str, dict[str, float]] = {}
    for item in items:
        labels = item.get("metadata", {}).get("labels", {})
        server = labels.get("app.kubernetes.io/component", "")
        if labels.get("app.kubernetes.io/instance") != release or server not in SERVERS:
            continue
        containers = item.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        main = next((c for c in containers if c.get("name") == server), None)
        if main is None:
            continue
        resources = main.get("resources", {})
        requests, limits = resources.get("requests", {}), resources.get("limits", {})
        reserved: dict[str, float] = {}
        cpu = requests.get("cpu", limits.get("cpu"))
        if cpu is not None and _cores(cpu) > 0:
            reserved["cpu"] = _cores(cpu)
        gpus = sum(float(n) for name, n in limits.items() if _GPU_RESOURCE.match(name))
        if gpus:
            reserved["gpu"] = gpus
        if reserved and replicas:
            spec, status = item.get("spec", {}), item.get("status", {})
            count = status.get("readyReplicas") or spec.get("replicas") or 1
            reserved = {kind: amount * count for kind, amount in reserved.items()}
        if reserved:
            found[server] = reserved
    return found


def resources_arguments(reserved: dict[str, dict[str, float]]) -> list[str]:
    """`--resources NAME=cpu:N[,gpu:N]` for each server."""
    argv: list[str] = []
    for server, amounts in reserved.items():
        argv += ["--resources", f"{server}=" + ",".join(f"{k}:{v:g}" for k, v in amounts.items())]
    return argv


def forwarded(line: str) -> tuple[int, int] | None:
    """(remote port, local port) from one line of kubectl port-forward's output."""
    match = _FORWARD.search(line)
    return (int(match.group(2)), int(match.group(1))) if match else None


def _own_session_dying_with_us() -> None:  # runs in the child between fork and exec
    os.setsid()
    die_with_parent(signal.SIGTERM)


@contextlib.contextmanager
def port_forwards(
    services: list[Service], *, kubectl: str, namespace: str, timeout: float = 30.0
) -> Iterator[dict[str, dict[str, int]]]:
    """Forward every port of `services`; yields component -> port name -> local port."""
    procs: list[subprocess.Popen[str]] = []
    local: dict[str, dict[str, int]] = {}
    try:
        for service in services:
            argv = [kubectl, "port-forward", "-n", namespace, "--address", "127.0.0.1", f"svc/{service.name}"]
            argv += [f":{port}" for port in service.ports.values()]
            try:
                proc = subprocess.Popen(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    text=True,
                    preexec_fn=_own_session_dying_with_us,  # noqa: PLW1509 (no threads are running yet)
                )
            except OSError as err:
                raise BadInput(f"cannot run {kubectl}: {err.strerror}") from None
            procs.append(proc)
            mapping = _read_mapping(proc, set(service.ports.values()), timeout)
            missing = set(service.ports.values()) - mapping.keys()
            if missing:
                raise Unavailable(
                    f"kubectl port-forward svc/{service.name}: no local port for {sorted(missing)}"
                )
            local[service.component] = {name: mapping[port] for name, port in service.ports.items()}
        yield local
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _read_mapping(proc: subprocess.Popen[str], wanted: set[int], timeout: float) -> dict[int, int]:
    """remote port -> local port. A thread reads kubectl's output for as long as it runs (so that it never
    blocks on a full pipe); we wait for the ports at most `timeout`."""
    mapping: dict[int, int] = {}
    seen: list[str] = []
    complete = threading.Event()

    def pump() -> None:
        for line in proc.stdout:  # type: ignore[union-attr]
            seen.append(line.strip())
            pair = forwarded(line)
            if pair:
                mapping[pair[0]] = pair[1]
            if wanted <= mapping.keys():
                complete.set()
        complete.set()  # kubectl exited

    threading.Thread(target=pump, daemon=True).start()
    complete.wait(timeout)
    if not wanted <= mapping.keys():
        code = proc.poll()
        state = (
            f"exited with code {code}" if code is not None else f"forwarded nothing within {timeout:.0f} s"
        )
        raise Unavailable(f"kubectl port-forward {state}: {seen[-1] if seen else 'no output'}")
    return dict(mapping)


def run_arguments(
    local: dict[str, dict[str, int]], *, protocol: str, bucket: str, with_package: bool
) -> list[str]:
    """`loadtest run` options for the forwarded ports: a target per server found, its metrics, the bucket."""
    argv: list[str] = ["--protocol", protocol]
    for spec in SPECS.values():
        server, ports = spec.name, local.get(spec.name)
        if not ports:
            continue
        if TARGET_PORT[protocol] not in ports:
            raise BadInput(f"the {server} Service has no port named {TARGET_PORT[protocol]}")
        argv += ["--target", f"{server}=127.0.0.1:{ports[TARGET_PORT[protocol]]}"]
        if spec.metrics_port in ports:
            argv += ["--metrics", f"{server}=http://127.0.0.1:{ports[spec.metrics_port]}{spec.metrics_path}"]
    if not with_package:
        if "api" not in local.get("minio", {}):
            raise BadInput(
                "no MinIO Service in the release: give --package DIR or s3://BUCKET with --endpoint"
            )
        argv += ["--package", f"s3://{bucket}", "--endpoint", f"http://127.0.0.1:{local['minio']['api']}"]
    return argv


def list_objects(kind: str, *, kubectl: str, namespace: str, release: str, timeout: float = 30.0) -> str:
    """`kubectl get KIND -o json` of the release's objects of that kind (the chart's labels)."""
    selector = f"app.kubernetes.io/name={PART_OF},app.kubernetes.io/instance={release}"
    argv = [kubectl, "get", kind, "-n", namespace, "-l", selector, "-o", "json"]
    return run_tool(argv, what=f"kubectl get {kind}", timeout=timeout)


def run_tool(
    argv: list[str], *, what: str, timeout: float = 30.0, input: str | None = None, conflict: bool = False
) -> str | None:
    """Run kubectl or helm; its stdout. Not runnable: exit 3; no answer in time or a failure: exit 6,
    naming `what` and the tool's last line. With `conflict`, None when the tool said AlreadyExists."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input, check=False)
    except OSError as err:
        raise BadInput(f"cannot run {argv[0]}: {err.strerror}") from None
    except subprocess.TimeoutExpired:
        raise Unavailable(f"{what}: no answer within {timeout:.0f} s") from None
    if done.returncode != 0:
        message = (done.stderr.strip().splitlines() or ["no message"])[-1]
        if conflict and "AlreadyExists" in done.stderr:
            return None
        raise Unavailable(f"{what}: {message}")
    return done.stdout
