"""The monitoring subchart against the rest of the rendered umbrella: what the ServiceMonitors select
exists with the named port and reaches the server pods, OVMS serves /metrics at all, and the
prometheus-adapter rules serve the metric names the servers' custom-metric HPAs read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

HERE = Path(__file__).resolve().parent
CHART = Path(os.environ.get("MONITORING_CHART", HERE.parents[1] / "charts" / "emotion-serving"))
HPA_ON = [
    f"{server}.autoscaling.{key}=true"
    for server in ("ovms", "triton")
    for key in ("enabled", "customMetric.enabled")
]


def rendered(out: Path, *sets: str) -> list[dict[str, Any]]:
    """The umbrella as render.py renders it (release es, namespace emotion, monitoring on)."""
    argv = [sys.executable, str(HERE / "render.py"), "manifests", str(out), "--chart", str(CHART)]
    subprocess.run(argv + [a for s in sets for a in ("--set", s)], check=True)
    return [doc for doc in yaml.safe_load_all(out.read_text()) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    out = tmp_path_factory.mktemp("wiring") / "manifests.yaml"
    return rendered(out, *HPA_ON, "monitoring.autoscalingMetrics.enabled=true")


def test_each_service_monitor_reaches_its_server_pods_on_the_named_port(docs: list[dict[str, Any]]) -> None:
    monitors = of_kind(docs, "ServiceMonitor")
    assert sorted(m["metadata"]["name"] for m in monitors) == [
        "es-monitoring-minio",
        "es-monitoring-ovms",
        "es-monitoring-triton",
    ]
    workloads = of_kind(docs, "Deployment") + of_kind(docs, "StatefulSet")
    for monitor in monitors:
        wanted = monitor["spec"]["selector"]["matchLabels"]
        port = monitor["spec"]["endpoints"][0]["port"]
        services = [s for s in of_kind(docs, "Service") if wanted.items() <= s["metadata"]["labels"].items()]
        # exactly one selected Service exposes the port: a second one would scrape every pod twice
        with_port = [s for s in services if port in {p.get("name") for p in s["spec"].get("ports", [])}]
        assert len(with_port) == 1, (monitor["metadata"]["name"], [s["metadata"]["name"] for s in services])
        selector = with_port[0]["spec"]["selector"]
        pods = [
            w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(pods) == 1, (monitor["metadata"]["name"], selector)
        container_ports = {
            p["name"] for c in pods[0]["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])
        }
        target = next(p["targetPort"] for p in with_port[0]["spec"]["ports"] if p["name"] == port)
        assert target in container_ports or isinstance(target, int), (monitor["metadata"]["name"], target)


def test_ovms_serves_metrics(docs: list[dict[str, Any]]) -> None:
    configs = [
        json.loads(c["data"]["config.json"])
        for c in of_kind(docs, "ConfigMap")
        if "config.json" in c.get("data", {})
    ]
    assert len(configs) == 1
    assert configs[0]["monitoring"]["metrics"]["enable"] is True


def test_adapter_serves_every_custom_metric_the_hpas_read(docs: list[dict[str, Any]]) -> None:
    hpa_metrics = {
        metric["pods"]["metric"]["name"]
        for hpa in of_kind(docs, "HorizontalPodAutoscaler")
        for metric in hpa["spec"]["metrics"]
        if metric["type"] == "Pods"
    }
    (config,) = [c for c in of_kind(docs, "ConfigMap") if "config.yaml" in c.get("data", {})]
    served = {rule["name"]["as"] for rule in yaml.safe_load(config["data"]["config.yaml"])["rules"]}
    assert hpa_metrics == {"emotion_ovms_requests_per_stream", "emotion_triton_pending_requests"}
    assert hpa_metrics <= served


def test_the_comparison_dashboard_shows_only_this_releases_servers(docs: list[dict[str, Any]]) -> None:
    # Two releases in one namespace record the same emotion:* series, told apart by job <release>-<server>.
    (config,) = [
        c for c in of_kind(docs, "ConfigMap") if c["metadata"]["name"].endswith("-dashboard-compare")
    ]
    (text,) = config["data"].values()
    dashboard = json.loads(text)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert (variables["release"]["type"], variables["release"]["query"]) == ("constant", "es")
    selectors = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    selectors.append(variables["model"]["query"]["query"])
    assert selectors
    for selector in selectors:
        assert 'job=~"$release-(ovms|triton)"' in selector, selector
