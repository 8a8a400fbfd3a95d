"""The commands the chart renders are ones the packager's and the load tester's CLIs accept.

The chart is rendered by the real helm (.tools/bin, `make setup`); the argument lists of the packager
Job, the servers' `wait` initContainers and the `helm test` pod are parsed by the CLIs' own parsers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.chart import CHART, ChartError, Render
from emotion_contract.servers import SERVERS
from loadtest.cli import build_parser as loadtest_parser
from loadtest.incluster import JOB_OWNS
from model_packager import cli as packager_cli

EXTERNAL_S3 = CHART / "tests" / "values" / "external-s3.yaml"


def render(*, values: Sequence[Path] = (), set_values: Sequence[str] = (), **options: Any) -> Render:
    return Render.template(release="es", namespace="emotion", values=values, set_values=set_values, **options)


def parse_packager(argv: list[str]) -> Any:
    try:
        return packager_cli.build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse's usage error, exit code 2
        pytest.fail(f"model-packager refuses {argv}: exit {exit_.code}")


@pytest.fixture(scope="module")
def default_render() -> Render:
    return render()


def test_the_packager_job_runs_a_command_model_packager_accepts(default_render: list[dict[str, Any]]) -> None:
    container = default_render.one("Job", "packager")["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["model-packager"]
    args = parse_packager(container["args"])
    assert (args.command, args.model, args.name, args.bucket) == (
        "run",
        "seara/rubert-tiny2-cedr-russian-emotion",
        "emotion",
        "models",
    )
    assert args.endpoint == "http://es-emotion-serving-minio.emotion.svc:9000"
    assert (args.max_length, args.precision, args.text, args.work_dir) == (128, "fp32", "on", Path("/work"))


@pytest.mark.parametrize("server", ["ovms", "triton"])
def test_each_server_fetches_with_a_command_model_packager_accepts(
    default_render: list[dict[str, Any]], server: str
) -> None:
    init = default_render.one("Deployment", server)["spec"]["template"]["spec"]["initContainers"][0]
    assert init["command"] == ["model-packager"]
    args = parse_packager(init["args"])
    assert (args.command, args.server, args.bucket, args.name, args.version, args.timeout) == (
        "fetch",
        server,
        "models",
        "emotion",
        None,
        1800.0,
    )


def test_a_pinned_version_and_a_ca_bundle_reach_both_commands() -> None:
    docs = render(values=[EXTERNAL_S3], set_values=["global.model.version=3"])
    init = docs.one("Deployment", "ovms")["spec"]["template"]["spec"]["initContainers"][0]
    wait = parse_packager(init["args"])
    assert (wait.version, wait.ca_bundle) == (3, Path("/etc/emotion-serving/s3-ca/ca.crt"))
    job = docs.one("Job", "packager")["spec"]["template"]["spec"]["containers"][0]
    run = parse_packager(job["args"])
    assert (run.endpoint, run.bucket, run.ca_bundle) == (
        "https://s3.storage.example.internal",
        "emotion-models",
        Path("/etc/emotion-serving/s3-ca/ca.crt"),
    )


def test_helm_test_runs_a_smoke_check_loadtest_accepts(default_render: list[dict[str, Any]]) -> None:
    container = default_render.one("Pod", "tests")["spec"]["containers"][0]
    assert container["command"] == ["loadtest"]
    args = loadtest_parser().parse_args(container["args"])
    assert args.command == "smoke"
    assert args.target == [
        "ovms=es-emotion-serving-ovms.emotion.svc:8000",
        "triton=es-emotion-serving-triton.emotion.svc:8000",
    ]
    assert (args.protocol, args.name, args.package) == ("http", "emotion", "s3://models")
    assert args.endpoint == "http://es-emotion-serving-minio.emotion.svc:9000"


def test_helm_test_over_grpc_without_the_text_model() -> None:
    docs = render(set_values=["tests.protocol=grpc", "global.model.text=false"])
    container = docs.one("Pod", "tests")["spec"]["containers"][0]
    args = loadtest_parser().parse_args(container["args"])
    assert args.target == [
        "ovms=es-emotion-serving-ovms.emotion.svc:9000",
        "triton=es-emotion-serving-triton.emotion.svc:8001",
    ]
    assert args.input == ("tokens",)


def test_the_contracts_server_ports_are_the_charts(default_render: Render) -> None:
    """emotion_contract.servers and the chart's `emotion-serving.ports` helper name the same ports."""
    for spec in SERVERS.values():
        pod = default_render.pod("Deployment", spec.name)
        server = next(c for c in pod["spec"]["containers"] if c["name"] == spec.name)
        assert {p["name"]: p["containerPort"] for p in server["ports"]} == spec.ports, spec.name
        assert spec.metrics_port in spec.ports
    monitored = render(set_values=["monitoring.enabled=true"])
    monitors = {m["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]: m for m in
                monitored.objects("ServiceMonitor")}  # fmt: skip
    for spec in SERVERS.values():
        endpoint = monitors[spec.name]["spec"]["endpoints"][0]
        assert (endpoint["port"], endpoint.get("path", "/metrics")) == (spec.metrics_port, spec.metrics_path)


def test_helm_refuses_a_cluster_older_than_kubernetes_1_30() -> None:
    """podFailurePolicy's onPodConditions and the preStop sleep action need 1.30 (Chart.yaml kubeVersion)."""
    with pytest.raises(ChartError) as err:
        render(kube_version="1.29.0")
    assert "chart requires kubeVersion: >=1.30.0-0 which is incompatible with Kubernetes v1.29.0" in str(
        err.value
    )
    render(kube_version="1.30.0")


def test_make_loadtest_refuses_exactly_the_options_the_job_sets() -> None:
    """`loadtest release` refuses the `loadtest run` options that the chart's Job sets itself
    (incluster.JOB_OWNS): the Job's own options, with a CA bundle, a pinned version and, unpinned, the
    packager's request, are that list and no more."""
    owned = set()
    for pin in (["global.model.version=3"], []):
        docs = render(values=[EXTERNAL_S3], set_values=["loadtest.run=r1", *pin])
        container = docs.one("Job", "loadtest")["spec"]["template"]["spec"]["containers"][0]
        assert loadtest_parser().parse_args(container["args"]).command == "run"
        release_args = {
            a.split("=")[0] for a in yaml.safe_load((CHART / "values.yaml").read_text())["loadtest"]["args"]
        }
        owned |= {a.split("=")[0] for a in container["args"][1:]} - release_args
    assert owned == set(JOB_OWNS)
