"""What the per-cluster examples promise, checked on their renders."""

from __future__ import annotations

import yaml

from devstack.chart import Render
from devstack.paths import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples" / "values"


def test_onprem_monitoring_is_selected_by_the_existing_kube_prometheus_stack() -> None:
    # kube-prometheus-stack selects ServiceMonitors and PrometheusRules by `release: <its own release>`.
    example = EXAMPLES / "onprem-nfd-gpu.yaml"
    stack_release = yaml.safe_load(example.read_text())["monitoring"]["prometheusSelectorLabels"]["release"]
    render = Render.template(release="emotion", namespace="emotion", values=[example])
    selected = render.objects("ServiceMonitor") + render.objects("PrometheusRule")
    assert {obj["kind"] for obj in selected} == {"ServiceMonitor", "PrometheusRule"}
    assert stack_release != "emotion"
    assert {obj["metadata"]["name"]: obj["metadata"]["labels"].get("release") for obj in selected} == {
        obj["metadata"]["name"]: stack_release for obj in selected
    }


def test_onprem_networkpolicies_admit_the_monitoring_namespaces_prometheus_to_minio() -> None:
    example = EXAMPLES / "onprem-nfd-gpu.yaml"
    scrapers = yaml.safe_load(example.read_text())["global"]["networkPolicy"]["metricsFrom"]
    render = Render.template(release="emotion", namespace="emotion", values=[example])
    policy = render.one("NetworkPolicy", "minio")
    assert {"ports": [{"port": "api", "protocol": "TCP"}], "from": scrapers} in policy["spec"]["ingress"]
