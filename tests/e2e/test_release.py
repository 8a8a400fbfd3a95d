"""The chart's rendered commands run for real on loopback (issue #8), and mutations of the render fail.

One release (examples/values/local.yaml plus the stand-in checkpoint) is rendered, the S3 gateway
set up as its MinIO, and its packager Job run (conftest.py). Then: the servers' `fetch`
initContainers, Triton with its rendered arguments and environment, OVMS's rendered command line,
config.json and environment checked and its models compiled, Prometheus scraping what the rendered
ServiceMonitors select with the rendered rules loaded, the load tester through Triton's Service,
and the `helm test` pod's command. See devstack/src/devstack/release.py for what stands in for what.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import pytest
from tokenizers import Tokenizer

from devstack.chart import ChartError, Render
from devstack.process import http_status
from devstack.release import Release, checkpoint_values, rule_files
from loadtest.kept import fetch_report
from loadtest.package import open_store
from tests.e2e.conftest import LOAD_TEST_RUN

LOCAL_VALUES = Path(__file__).resolve().parents[2] / "examples" / "values" / "local.yaml"
SENTENCES = ["Ура, мы победили!", "Мне очень грустно сегодня.", "Как же это бесит!", "Обычный день."]


def _reference(release: Release) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Token ids and ONNX Runtime's probabilities for SENTENCES, from what the Job published."""
    client = release.s3.client()
    bucket = release.bucket
    ready = json.loads(client.get_object(bucket, "manifests/emotion/READY").read())
    manifest = json.loads(client.get_object(bucket, ready["manifest"]).read())
    folder = release.root / "reference"
    client.fget_object(bucket, f"triton/emotion/{ready['version']}/model.onnx", str(folder / "model.onnx"))
    client.fget_object(bucket, manifest["models"]["tokenizer"]["key"], str(folder / "tokenizer.json"))
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.enable_padding()
    encoded = tokenizer.encode_batch(SENTENCES)
    batch = {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
        "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
    }
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"))
    return batch, session.run(["probabilities"], batch)[0]


def test_the_rendered_release_runs_end_to_end(
    published: Release, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for component in ("ovms", "triton"):
        fetched = published.fetch(component)
        assert fetched.returncode == 0, fetched.stderr
        assert json.loads(fetched.stdout)["name"] == "emotion"

    published.start_triton()

    problems, compiled = published.check_ovms()
    assert problems == []
    batch, reference = _reference(published)
    token_answer = compiled["emotion"](batch)["probabilities"]
    text_answer = compiled["emotion-text"]([np.array(SENTENCES)])["probabilities"]
    assert np.max(np.abs(token_answer - reference)) <= 1e-4
    assert np.max(np.abs(text_answer - reference)) <= 1e-4

    prometheus, skipped = published.start_prometheus(rule_files=rule_files(published.render, tmp_path))
    assert sorted(skipped) == [
        "e2e-emotion-serving-minio:api/minio/v2/metrics/cluster "
        "(the Versity S3 gateway stands in for MinIO and has no MinIO metrics)",
        "e2e-emotion-serving-ovms:http/metrics (not running here)",
    ]

    # The chart's load-test Job (make loadtest's in-cluster run): its report is kept in the bucket.
    load, not_running = published.load_test()
    assert load.returncode == 0, load.stderr[-2000:]
    assert not_running == [
        "ovms=e2e-emotion-serving-ovms.serving.svc:9000",
        "--metrics=ovms=http://e2e-emotion-serving-ovms.serving.svc:8000/metrics",
    ]
    for name, value in published.s3.env().items():
        monkeypatch.setenv(name, value)
    store = open_store(f"s3://{published.bucket}", s3_endpoint=published.s3.endpoint)
    fetch_report(store, name="emotion", run=LOAD_TEST_RUN, folder=tmp_path / "report")
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["config"]["path"] == "in-cluster"
    (level,) = [r for r in report["results"] if r["target"] == "triton"]
    assert level["requests"] > 0
    assert level["errors"] == 0
    assert level["mismatches"] == 0

    helm_test, not_here = published.helm_test()
    assert helm_test.returncode == 0, helm_test.stderr[-2000:]
    assert not_here == ["ovms=e2e-emotion-serving-ovms.serving.svc:8000"]

    assert prometheus.wait_scraped()["e2e-triton"] == ("up", "")
    served = prometheus.wait_for('sum(nv_inference_request_success{job="e2e-triton", model="emotion"}) > 0')
    assert float(served[0]["value"][1]) >= level["requests"]
    rate = prometheus.wait_for(
        'emotion:requests_success:rate{server="triton", namespace="serving"}', timeout=60
    )
    assert float(rate[0]["value"][1]) > 0


# -- mutations: each must make the run fail, with a message that names the problem ----------------


def _env_renamed(component: str, old: str, new: str) -> Any:
    def change(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            if (
                doc["kind"] == "Deployment"
                and doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
            ):
                spec = doc["spec"]["template"]["spec"]
                for item in spec.get("initContainers", []) + spec["containers"]:
                    for entry in item.get("env", []):
                        if entry["name"] == old:
                            entry["name"] = new

    return change


def _service_target(component: str, port_name: str, target: int) -> Any:
    def change(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            if (
                doc["kind"] == "Service"
                and doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
            ):
                for port in doc["spec"].get("ports", []):
                    if port["name"] == port_name:
                        port["targetPort"] = target

    return change


def _triton_arg(old: str, new: str) -> Any:
    def change(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            if (
                doc["kind"] == "Deployment"
                and doc["metadata"]["labels"]["app.kubernetes.io/component"] == "triton"
            ):
                item = doc["spec"]["template"]["spec"]["containers"][0]
                item["args"] = [new if a == old else a for a in item["args"]]

    return change


def _metrics_path(path: str) -> Any:
    def change(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            selects = doc.get("spec", {}).get("selector", {}).get("matchLabels", {})
            if doc["kind"] == "ServiceMonitor" and selects.get("app.kubernetes.io/component") == "triton":
                doc["spec"]["endpoints"][0]["path"] = path

    return change


@pytest.fixture
def mutated(published: Release, tmp_path: Path):
    started: list[Release] = []

    def run(change: Any) -> Release:
        release = Release(render=published.render.patch(change), root=tmp_path / f"mutant-{len(started)}")
        release.share_s3(published)
        started.append(release)
        return release

    yield run
    for release in started:
        release.stop()


def test_a_wrong_s3_key_variable_for_the_fetch_fails_it(mutated) -> None:
    release = mutated(_env_renamed("triton", "AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"))
    fetched = release.fetch("triton", timeout=60)
    assert fetched.returncode != 0
    assert "model-packager: " in fetched.stderr


def _fetch_output(component: str, output: str) -> Any:
    def change(docs: list[dict[str, Any]]) -> None:
        for doc in docs:
            if (
                doc["kind"] == "Deployment"
                and doc["metadata"]["labels"]["app.kubernetes.io/component"] == component
            ):
                (fetch,) = doc["spec"]["template"]["spec"]["initContainers"]
                fetch["args"] = [
                    f"--output={output}" if a.startswith("--output=") else a for a in fetch["args"]
                ]

    return change


def test_a_fetch_into_a_folder_ovms_does_not_read_is_named(mutated) -> None:
    release = mutated(_fetch_output("ovms", "/tmp/elsewhere"))  # noqa: S108 (a path in the pod, not here)
    assert release.fetch("ovms").returncode == 0
    with pytest.raises(ChartError) as err:
        release.check_ovms()
    assert str(err.value) == "OVMS would find no version of emotion under /tmp/models/emotion"


def test_a_service_pointing_at_the_wrong_container_port_is_named(mutated) -> None:
    release = mutated(_service_target("triton", "http", 8080))
    assert release.fetch("triton").returncode == 0
    with pytest.raises(ChartError) as err:
        release.start_triton(timeout=120)
    assert str(err.value) == (
        "Service e2e-emotion-serving-triton port 8000 targets 8080, which no container of triton declares"
    )


def test_a_server_listening_on_an_undeclared_port_is_named(mutated) -> None:
    release = mutated(_triton_arg("--metrics-port=8002", "--metrics-port=8003"))
    assert release.fetch("triton").returncode == 0
    with pytest.raises(ChartError) as err:
        release.start_triton(timeout=120)
    assert (
        str(err.value)
        == "tritonserver --metrics-port=8003, but the container's port 'metrics' is not that port"
    )


def test_a_wrong_metrics_path_is_named(mutated) -> None:
    """Triton answers its metrics on any path, so a real scrape cannot catch this; the documented path can."""
    release = mutated(_metrics_path("/metricz"))
    with pytest.raises(ChartError) as err:
        release.start_prometheus()
    assert str(err.value) == (
        "ServiceMonitor e2e-monitoring-triton scrapes /metricz, but triton serves its metrics at /metrics"
    )


# -- the model's lifecycle (issue #15): last in the module, it publishes a second version ----------


def test_a_pinned_release_serves_its_version_after_a_newer_one_is_published(
    published: Release, checkpoint: Path, tmp_path: Path
) -> None:
    """The release's Job again (a re-created Job, a GitOps sync): its request is recorded, so it neither
    resolves the model nor builds. A model value changed (max length) is a new request: one build,
    version 2, READY 2, served by the changed release while the first one's servers keep 1. The
    release pinned to version 1 (a rollback) fetches 1: real Triton serves version 1 only, OVMS's
    folder and policy are version 1's."""
    again = published.run("Job", "packager", "packager")
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["already_published"] is True
    steps = {json.loads(line).get("step") for line in again.stderr.splitlines() if line.startswith("{")}
    assert "recorded" in steps
    assert not steps & {"resolve", "load", "export-onnx", "parity", "upload"}

    values = [LOCAL_VALUES, checkpoint_values(tmp_path, checkpoint)]

    secrets = {d["metadata"]["name"]: d for d in published.render.objects("Secret")}

    def keep_secrets(docs: list[dict[str, Any]]) -> None:
        """The upgrade's Secrets are the cluster's (helm's lookup keeps them): the running S3's keys."""
        for i, doc in enumerate(docs):
            if doc["kind"] == "Secret" and doc["metadata"]["name"] in secrets:
                docs[i] = secrets[doc["metadata"]["name"]]

    def release(name: str, *settings: str) -> Release:
        render = Render.template(release="e2e", namespace="serving", values=values, set_values=settings)
        other = Release(render=render.patch(keep_secrets), root=tmp_path / name)
        other.share_s3(published)
        return other

    with release("changed", "global.model.maxLength=64") as changed:
        job = changed.run("Job", "packager", "packager")
        assert job.returncode == 0, job.stderr[-2000:]
        assert json.loads(job.stdout)["version"] == 2
        ready = published.s3.client().get_object(published.bucket, "manifests/emotion/READY")
        assert json.loads(ready.read())["version"] == 2
        # Unpinned, each release's servers serve what its own model request built, not READY's: the
        # first release's pods (an old pod of a rolling update) fetch 1, the changed release's fetch 2.
        for serving, version in ((published, 1), (changed, 2)):
            for component in ("triton", "ovms"):
                fetched = serving.fetch(component)
                assert fetched.returncode == 0, fetched.stderr[-2000:]
                assert json.loads(fetched.stdout)["version"] == version, (component, fetched.stdout)

    with release("pinned", "global.model.version=1") as pinned:
        for component in ("triton", "ovms"):
            fetched = pinned.fetch(component)
            assert fetched.returncode == 0, fetched.stderr[-2000:]
            assert json.loads(fetched.stdout)["version"] == 1
        pinned.start_triton()
        http = "http://127.0.0.1:{}".format(pinned.triton_ports["http"])
        for model in ("emotion", "emotion-tokenizer", "emotion-text"):
            assert http_status(f"{http}/v2/models/{model}/versions/1/ready") == 200, model
            assert http_status(f"{http}/v2/models/{model}/versions/2/ready") != 200, model
        problems, compiled = pinned.check_ovms()
        assert problems == []
        assert sorted(compiled) == ["emotion", "emotion-text"]
        assert {folder.name for folder, _ in pinned.ovms_models.values()} == {"1"}
