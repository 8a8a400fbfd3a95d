"""`make loadtest RELEASE=... NAMESPACE=...`, the command a user runs, against a release helm installed
on devstack's cluster, with real servers behind its Services.

KWOK runs no container, so the work that must be real runs on this machine from the objects the API
server holds (devstack.installed): the S3 gateway with the root keys of the release's generated
Secret and the accounts its MinIO setup container creates, the packager Job's container from its
admitted pod (a real version published from a local checkpoint), Triton's `fetch-model`
initContainer and then tritonserver from an admitted Triton pod. KWOK's PortForward objects send
`kubectl port-forward` of the MinIO and Triton pods to those processes, and every Service address in
a container's argv or env goes through such a port-forward.

`make loadtest` runs both ways a user can. By default (LOADTEST_MODE=in-cluster) it applies the
chart's load-test Job and fetches the report the Job kept in the bucket: that Job's pod is held
Running (devstack.cluster.HELD_ANNOTATION, set through loadtest.podAnnotations) while its container
runs here from the admitted pod, and then ends with that container's exit code. With
LOADTEST_MODE=port-forward, `loadtest release` finds the Services by the chart's labels and forwards
them to this machine itself.

OVMS is not in this release (`ovms.enabled=false`): no OVMS binary exists here, and `loadtest
release` load-tests every server the release has, so an OVMS Service with nothing behind it would
fail the run. tests/e2e checks OVMS's rendered command line, config and models; the demo compares the
runtimes (devstack.runtimes).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.chart import container
from devstack.cluster import HELD_ANNOTATION, Cluster
from devstack.installed import Installed
from devstack.paths import REPO_ROOT, tool
from devstack.release import Release, checkpoint_values
from tests.cluster.conftest import Helm, example_values

OVMS_LEFT_OUT = (
    "OVMS is not installed: no OVMS binary here, and `loadtest release` drives every server it finds"
)
#: Short levels, the release's loadtest.args: this checks the path through the cluster, not speed (the
#: 2-core machine is busy).
LOADTEST_ARGS = "--concurrency 2 --duration 4s --warmup 1s --workers 1 --max-lag 500ms"


@pytest.fixture
def served(
    kube_cluster: Cluster, helm: Helm, checkpoint: Path, tmp_path: Path
) -> Iterator[tuple[Installed, Release]]:
    """The release installed with the checkpoint, its Job's work done and Triton serving."""
    with kube_cluster.folder_claim(helm.namespace, "checkpoint", checkpoint) as claim:
        values = checkpoint_values(tmp_path, checkpoint, claim=claim)
        held = f"loadtest.podAnnotations.{HELD_ANNOTATION.replace('.', chr(92) + '.')}=true"
        # The run options are the release's own (loadtest.args): `make loadtest` gives none.
        helm.install("--values", example_values("kind-cpu"), "--values", str(values),
                     "--set", "ovms.enabled=false", "--set-string", held,
                     "--set-json", f"loadtest.args={json.dumps(LOADTEST_ARGS.split())}")  # fmt: skip
        with (
            Installed(kube_cluster, helm.release, helm.namespace, tmp_path / "forwards") as installed,
            Release(render=installed, root=tmp_path / "release") as release,
        ):
            release.start_s3()
            job = release.run("Job", "packager", "packager")
            assert job.returncode == 0, job.stderr[-3000:]
            fetched = release.fetch("triton")
            assert fetched.returncode == 0, fetched.stderr[-3000:]
            release.start_triton()
            yield installed, release


def _secret(helm: Helm, suffix: str) -> dict[str, str]:
    """A Secret of the release as kubectl reads it (not through devstack.installed, which is tested)."""
    obj = helm.cluster.get("secret", f"{helm.release}-emotion-serving-{suffix}", namespace=helm.namespace)
    return {key: base64.b64decode(value).decode() for key, value in obj["data"].items()}


def _served_requests(release: Release) -> float:
    """Successful inferences of model emotion, from the local Triton's own metrics port."""
    url = f"http://127.0.0.1:{release.triton_ports['metrics']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = re.findall(r'^nv_inference_request_success\{[^}]*model="emotion"[^}]*\} (\S+)$', text, re.M)
    return sum(float(v) for v in found)


def _make_loadtest(
    helm: Helm, installed: Installed, release: Release, output: Path, *args: str
) -> subprocess.CompletedProcess[str] | None:
    """`make loadtest` as a user runs it (the cluster's kubeconfig; the bucket's reader keys from the
    release's Secret, for a package read from here), with devstack as the kubelet of the load-test
    Job's pod if it makes one: that pod is held Running, its container runs here from the admitted
    pod (Release.load_test) and the pod ends with its exit code. Returns that container's run."""
    keys = _secret(helm, "s3-reader")
    reader = {name: keys[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    argv = ["make", "--no-print-directory", "loadtest", f"RELEASE={helm.release}",
            f"NAMESPACE={helm.namespace}", f"KUBECTL={tool('kubectl')}",
            f"LOADTEST_OUTPUT={output}", *args]  # fmt: skip
    log = output.with_suffix(".log")
    client = None
    with log.open("w") as out:
        make = subprocess.Popen(argv, cwd=REPO_ROOT, env={**helm.cluster.env(), **reader}, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        try:
            deadline = time.monotonic() + 600
            while make.poll() is None and time.monotonic() < deadline:
                running = [p for p in installed.pods("loadtest") if p["status"].get("phase") == "Running"]
                if running and client is None:
                    (pod,) = running
                    assert pod["metadata"]["annotations"].get(HELD_ANNOTATION) == "true"
                    client, skipped = release.load_test(timeout=300)
                    assert skipped == [], skipped
                    helm.cluster.finish_pod(helm.namespace, pod["metadata"]["name"], client.returncode)
                time.sleep(0.5)
        finally:
            make.kill()
            make.wait()
    assert make.returncode == 0, log.read_text()[-3000:]
    return client


def _assert_report(output: Path, release: Release, before: float, *, path: str) -> dict[str, Any]:
    report = json.loads((output / "report.json").read_text())
    assert report["config"].get("path") == path, report["config"]
    assert report["config"]["duration"] == 4.0, "not the release's loadtest.args"
    assert {r["target"] for r in report["results"]} == {"triton"}, OVMS_LEFT_OUT
    (level,) = report["results"]
    print(f"{output.name} ({path}): triton {level['requests']} requests, {level['throughput_rps']}/s, "
          f"latency ms {level['latency_ms']}")  # fmt: skip
    assert level["requests"] > 0
    assert level["errors"] == 0
    assert level["mismatches"] == 0
    assert (output / "report.md").is_file()
    # Served by the local Triton, which nothing but the PortForward objects points the cluster at.
    assert _served_requests(release) - before >= level["requests"]
    return level


@pytest.mark.parametrize("binary", ["helm"])
@pytest.mark.parametrize("example", ["kind-cpu"])
def test_make_loadtest_through_the_cluster(
    served: tuple[Installed, Release], helm: Helm, example: str, binary: str, tmp_path: Path
) -> None:
    installed, release = served
    print(OVMS_LEFT_OUT)
    # What the Job ran came from its admitted pod: the writer keys helm generated in the cluster (a
    # render generates others), and the MinIO Service through a port-forward, not the gateway's port.
    pod = installed.pod("Job", "packager")
    job = container(pod, "packager")
    writer = _secret(helm, "s3-writer")
    assert release.loop.env(pod, job)["AWS_ACCESS_KEY_ID"] == writer["AWS_ACCESS_KEY_ID"]
    (endpoint,) = [a for a in release.loop.argv(pod, job) if a.startswith("--endpoint=")]
    assert release.s3 is not None
    assert endpoint.startswith("--endpoint=http://127.0.0.1:"), endpoint
    assert endpoint != f"--endpoint={release.s3.endpoint}", endpoint

    # In the cluster (the default): the chart's load-test Job, its container run here from its admitted
    # pod (held Running meanwhile), its report kept in the bucket and fetched from there by `make loadtest`.
    before = _served_requests(release)
    client = _make_loadtest(helm, installed, release, tmp_path / "in-cluster")
    assert client is not None, "make loadtest (in-cluster) made no load-test pod"
    assert client.returncode == 0, client.stderr[-3000:]
    _assert_report(tmp_path / "in-cluster", release, before, path="in-cluster")
    # The cost section's resources: one Triton pod's reservation, read from the Deployment (kind-cpu).
    report = json.loads((tmp_path / "in-cluster" / "report.json").read_text())
    assert report["config"]["resources"] == {"triton": {"cpu": 1.0}}, report["config"]["resources"]

    # Through kubectl port-forward, from this machine.
    before = _served_requests(release)
    forwarded = _make_loadtest(
        helm, installed, release, tmp_path / "port-forward", "LOADTEST_MODE=port-forward"
    )
    assert forwarded is None
    _assert_report(tmp_path / "port-forward", release, before, path="port-forward")
