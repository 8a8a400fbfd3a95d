"""`loadtest release` in the cluster (what `make loadtest` runs by default): the chart's load-test Job.

1. `helm get values` of the release, and `helm template --show-only templates/loadtest.yaml` of the
   chart with them and `loadtest.run=<run>`: the Job the chart defines, not one written here. The
   release holds its ServiceAccount and NetworkPolicy (loadtest.enabled).
2. `kubectl apply` of that Job alone; then its status, until it completes, fails or the wait ends.
3. The report the Job kept in the bucket (reports/<name>/<run>/, loadtest.kept) downloaded into the
   user's folder, through a port-forward to the bundled MinIO (or straight to an external endpoint),
   with the keys of the Secret the Job's own environment names.

The exit code is the Job's: its container's (a breached threshold is 9, an invalid run 10, as
`loadtest run`). A Job that ended without one (image not pulled), whose container ended with a code
that is not the load tester's (137: killed, out of memory or at the deadline), or that completed
without a kept report, is exit 6 with the reason. A run name that has a Job already is exit 8.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from emotion_contract.errors import BadInput, Conflict, ExitCode, Unavailable
from emotion_contract.layout import Layout
from emotion_contract.logs import log
from loadtest.release import (
    Service,
    list_objects,
    pod_resources,
    port_forwards,
    resources_arguments,
    run_tool,
)

#: `loadtest run` options the chart's Job sets itself.
JOB_OWNS = (
    "--target", "--metrics", "--protocol", "--output", "--path", "--keep-report", "--package",
    "--endpoint", "--name", "--version", "--request", "--ca-bundle",
)  # fmt: skip
TEMPLATE = "templates/loadtest.yaml"
#: How often the Job's status is read while it runs.
POLL_S = 2.0
#: Time allowed past the Job's own activeDeadlineSeconds (scheduling, image pull, the report's upload).
GRACE_S = 120.0


@dataclass(frozen=True)
class Cluster:
    kubectl: str
    helm: str
    namespace: str
    release: str

    def kubectl_run(self, *args: str, what: str, input: str | None = None, timeout: float = 60.0) -> str:
        return run_tool([self.kubectl, *args, "-n", self.namespace], what=what, input=input, timeout=timeout)


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    exit_code: int | None  # the load tester's, when its container ended
    reason: str


def run_name(release: str, now: float | None = None) -> str:
    """`<release>-<UTC yyyymmdd-hhmmss>`: a run name (emotion_contract.layout) that sorts by time."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    name = f"{release.lower()[: 63 - len(stamp) - 1].rstrip('-.')}-{stamp}"
    if not Layout.valid_run(name):
        raise BadInput(f"--release {release}: no run name can be made from it; give --run")
    return name


def check_run_args(run_args: list[str]) -> None:
    """Refuse what the Job sets itself, and anything `loadtest run` would refuse, before a Job exists
    (argparse's own message and exit 2, as `loadtest run` gives)."""
    owned = [a for a in run_args if a.split("=")[0] in JOB_OWNS]
    if owned:
        raise BadInput(f"{owned[0].split('=')[0]}: the chart's load-test Job sets it from the release")
    if run_args:
        from loadtest.cli import build_parser

        placeholders = ["--target", "t=127.0.0.1:1", "--package", "s3://b", "--output", "/nonexistent"]
        build_parser().parse_args(["run", *placeholders, *run_args])


def render_job(
    cluster: Cluster, *, chart: Path, run: str, protocol: str, run_args: list[str], derived: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The chart's load-test Job for this release and run, and the objects that go with it (its
    NetworkPolicy): `run_args` replace the release's loadtest.args when given; `derived` (what
    `release` reads from the cluster) go to extraArgs."""
    if not (chart / "Chart.yaml").is_file():
        raise BadInput(f"--chart {chart}: not a chart folder (the repository's charts/emotion-serving)")
    values = cluster_values(cluster)
    with tempfile.NamedTemporaryFile("w", suffix=".json") as file:
        json.dump(values, file)
        file.flush()
        argv = [
            cluster.helm, "template", cluster.release, str(chart), "-n", cluster.namespace, "-f", file.name,
            "--set-string", f"loadtest.run={run}", "--set-string", f"loadtest.protocol={protocol}",
            "--show-only", TEMPLATE,
        ]  # fmt: skip
        if run_args:
            argv += ["--set-json", f"loadtest.args={json.dumps(run_args)}"]
        if derived:
            argv += ["--set-json", f"loadtest.extraArgs={json.dumps(derived)}"]
        rendered = run_tool(argv, what="helm template (the load-test Job)")
    documents = _documents(rendered)
    jobs = [d for d in documents if d.get("kind") == "Job"]
    if len(jobs) != 1:
        raise BadInput(f"helm template {TEMPLATE}: expected one Job, got {len(jobs)}")
    # The release holds the ServiceAccount; the rest is the run's.
    return jobs[0], [d for d in documents if d.get("kind") not in ("Job", "ServiceAccount")]


def release_run_args(cluster: Cluster) -> list[str]:
    """The release's `loadtest.args` (its values with the chart's defaults): the run options when a
    port-forward run is given none."""
    values = cluster_values(cluster, every=True)
    found = (values.get("loadtest") or {}).get("args")
    if not found:
        raise BadInput(f"release {cluster.release} has no loadtest.args: give the run options after --")
    return [str(a) for a in found]


def cluster_values(cluster: Cluster, *, every: bool = False) -> dict[str, Any]:
    """The release's values as given (`helm get values`), or with `every` also its chart's defaults."""
    text = run_tool(
        [cluster.helm, "get", "values", cluster.release, "-n", cluster.namespace, "-o", "json",
         *(["--all"] if every else [])],
        what=f"helm get values {cluster.release}",
    )  # fmt: skip
    try:
        values = json.loads(text)
    except json.JSONDecodeError:
        raise BadInput(f"helm get values {cluster.release}: not JSON") from None
    return values or {}


def _documents(text: str) -> list[dict[str, Any]]:
    import yaml

    return [d for d in yaml.safe_load_all(text) if d]


def wait(
    cluster: Cluster, name: str, *, timeout: float, sleep: Callable[[float], None] = time.sleep
) -> Outcome:
    """Poll the Job until it completes or fails; the load tester's exit code from its pod."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = json.loads(
            cluster.kubectl_run("get", "job", name, "-o", "json", what=f"kubectl get job {name}")
        )
        for condition in job.get("status", {}).get("conditions", []):
            if condition.get("status") != "True" or condition.get("type") not in ("Complete", "Failed"):
                continue
            code = _exit_code(cluster, name)
            reason = condition.get("message") or condition.get("reason") or condition["type"]
            return Outcome(condition["type"] == "Complete", code, reason)
        sleep(POLL_S)
    raise Unavailable(
        f"the load-test Job {name} did not finish within {timeout:.0f} s (kubectl -n {cluster.namespace} "
        f"logs job/{name})"
    )


def _exit_code(cluster: Cluster, job: str) -> int | None:
    pods = json.loads(
        cluster.kubectl_run("get", "pods", "-l", f"job-name={job}", "-o", "json", what="kubectl get pods")
    )["items"]
    for pod in pods:
        for status in pod.get("status", {}).get("containerStatuses", []):
            terminated = status.get("state", {}).get("terminated")
            if status.get("name") == "loadtest" and terminated:
                return int(terminated["exitCode"])
    return None


def _secret_keys(cluster: Cluster, container: dict[str, Any]) -> dict[str, str]:
    """The AWS_* variables of the Job's container, read from the Secrets it names."""
    found: dict[str, str] = {}
    secrets: dict[str, dict[str, str]] = {}  # one read per Secret, however many keys come from it
    for entry in container.get("env", []):
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if entry["name"].startswith("AWS_") and ref:
            if ref["name"] not in secrets:
                secrets[ref["name"]] = json.loads(
                    cluster.kubectl_run(
                        "get", "secret", ref["name"], "-o", "json", what=f"kubectl get secret {ref['name']}"
                    )
                )["data"]
            found[entry["name"]] = base64.b64decode(secrets[ref["name"]][ref["key"]]).decode()
        elif entry["name"].startswith("AWS_") and "value" in entry:
            found[entry["name"]] = entry["value"]
    return found


def _argument(container: dict[str, Any], flag: str) -> str:
    for arg in container.get("args", []):
        if arg.startswith(f"{flag}="):
            return arg.split("=", 1)[1]
    raise BadInput(f"the chart's load-test Job has no {flag}")


def fetch(cluster: Cluster, job: dict[str, Any], *, output: Path) -> list[Path]:
    """Download the report the Job kept, from the bucket it names: an external endpoint directly
    (with the CA bundle of the Job's `s3-ca` ConfigMap), a Service of the cluster through a
    port-forward in that Service's namespace."""
    from loadtest.kept import fetch_report
    from loadtest.package import open_store

    container = job["spec"]["template"]["spec"]["containers"][0]
    endpoint, package = _argument(container, "--endpoint"), _argument(container, "--package")
    name, run = _argument(container, "--name"), _argument(container, "--keep-report")
    os.environ.update(_secret_keys(cluster, container))
    url = urlsplit(endpoint)
    host = url.hostname or ""
    with tempfile.TemporaryDirectory() as scratch:
        ca = _ca_bundle(cluster, job, Path(scratch))
        if not host.endswith((".svc", ".svc.cluster.local")):  # an external S3 endpoint: reached directly
            store = open_store(package, s3_endpoint=endpoint, ca_bundle=ca)
            return fetch_report(store, name=name, run=run, folder=output)
        if url.scheme == "https":
            raise Unavailable(
                f"the report is kept in the bucket under {Layout(name).report_prefix(run)}, but {endpoint} "
                "is an HTTPS Service whose certificate a port-forward from here cannot verify: read it with "
                "an S3 client that reaches the endpoint"
            )
        labels = host.split(".")
        namespace = labels[1] if len(labels) > 2 else cluster.namespace
        service = Service(labels[0], "minio", {"api": url.port or 80})
        with port_forwards([service], kubectl=cluster.kubectl, namespace=namespace) as local:
            store = open_store(package, s3_endpoint=f"http://127.0.0.1:{local['minio']['api']}")
            return fetch_report(store, name=name, run=run, folder=output)


def _ca_bundle(cluster: Cluster, job: dict[str, Any], folder: Path) -> Path | None:
    """The CA bundle the Job's pod mounts (volume s3-ca, from a ConfigMap), as a file in `folder`."""
    for volume in job["spec"]["template"]["spec"].get("volumes", []):
        source = volume.get("configMap")
        if volume.get("name") == "s3-ca" and source:
            found = json.loads(
                cluster.kubectl_run(
                    "get", "configmap", source["name"], "-o", "json", what="kubectl get configmap"
                )
            )
            key = source.get("items", [{}])[0].get("key", "ca.crt")
            path = folder / "ca.crt"
            path.write_text(found.get("data", {})[key])
            return path
    return None


def run_in_cluster(
    cluster: Cluster, *, chart: Path, run: str, protocol: str, run_args: list[str], output: Path
) -> ExitCode:
    if not Layout.valid_run(run):
        raise BadInput(f"--run {run!r}: a run name is 1-63 lower-case letters, digits, dots and dashes")
    check_run_args(run_args)
    derived: list[str] = []
    if not any(a.split("=")[0] == "--resources" for a in run_args):  # the cost section's
        deployments = list_objects(
            "deployments", kubectl=cluster.kubectl, namespace=cluster.namespace, release=cluster.release
        )
        # Through the Service the Job reaches every ready replica: the whole Deployment serves it.
        derived = resources_arguments(pod_resources(deployments, release=cluster.release, replicas=True))
    job, companions = render_job(
        cluster, chart=chart, run=run, protocol=protocol, run_args=run_args, derived=derived
    )
    name = job["metadata"]["name"]
    # create, not apply: a Job of the same name is another run's, never this one's to reuse.
    created = run_tool(
        [cluster.kubectl, "create", "-f", "-", "-n", cluster.namespace, "-o", "json"],
        what="kubectl create (the load-test Job)", input=json.dumps(job), timeout=60, conflict=True,
    )  # fmt: skip
    if created is None:
        raise Conflict(f"a load-test Job {name} exists already (run {run}); name another run with --run")
    # The run's NetworkPolicy belongs to its Job: deleted with it (ttlSecondsAfterFinished).
    owner = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "name": name,
        "uid": json.loads(created)["metadata"]["uid"],
    }
    for document in companions:
        document["metadata"]["ownerReferences"] = [owner]
        cluster.kubectl_run(
            "create", "-f", "-", what=f"kubectl create ({document['kind']})", input=json.dumps(document)
        )
    log(f"load-test Job {name} started: kubectl -n {cluster.namespace} logs -f job/{name}")
    outcome = wait(cluster, name, timeout=float(job["spec"]["activeDeadlineSeconds"]) + GRACE_S)
    if outcome.exit_code is None:
        raise Unavailable(f"the load-test Job {name} ended without a load test: {outcome.reason}")
    try:
        fetch(cluster, job, output=output)
    except BadInput as err:
        if outcome.succeeded:
            raise Unavailable(
                f"the load-test Job {name} completed but kept no report: {err.message}"
            ) from None
        log(f"the load-test Job {name} failed (exit {outcome.exit_code}) and kept no report: {err.message}")
    print(output)
    try:
        return ExitCode(outcome.exit_code)
    except ValueError:  # not the load tester's own (137: killed, out of memory or at the deadline)
        raise Unavailable(
            f"the load-test Job {name}'s container ended with exit {outcome.exit_code}: {outcome.reason}"
        ) from None
