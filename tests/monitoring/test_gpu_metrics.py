"""The GPU alert and the Triton dashboard's GPU panels on real Triton GPU metrics.

fixtures/triton-h200-gpu-metrics.txt is what the real Triton 2.51 exported on an NVIDIA H200 (no GPU
here): served back on loopback, scraped by a real Prometheus that loads the chart's rules with the GPU
memory threshold below the measured use (0.41 %), the alert must fire; every GPU panel query of the
Triton dashboard must return that GPU.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devstack.process import free_port
from devstack.prometheus import Prometheus, ScrapeTarget

HERE = Path(__file__).resolve().parent
FIXTURE = HERE / "fixtures" / "triton-h200-gpu-metrics.txt"
GPU = "GPU-b41910cc-dfe2-a12d-e035-9da3e447553a"
JOB, NAMESPACE, POD = "es-triton", "emotion", "triton-0"


@pytest.fixture
def recorded_triton() -> Iterator[str]:
    """host:port of a loopback server that answers /metrics with the recorded text."""
    body = FIXTURE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body if self.path == "/metrics" else b"")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def render(what: str, out: Path, *sets: str) -> None:
    argv = [sys.executable, str(HERE / "render.py"), what, str(out)]
    subprocess.run(argv + [a for s in sets for a in ("--set", s)], check=True)


def test_gpu_alert_and_panels_work_on_real_triton_gpu_metrics(
    tmp_path: Path, recorded_triton: str, prometheus_factory: Callable[..., Prometheus]
) -> None:
    rules = tmp_path / "rules.yaml"
    render(
        "rules", rules, "monitoring.alerts.gpuMemory.threshold=0.004", "monitoring.alerts.gpuMemory.for=0s"
    )
    render("dashboards", tmp_path / "dashboards")
    prometheus = prometheus_factory(
        targets=[ScrapeTarget(job=JOB, address=recorded_triton, labels={"namespace": NAMESPACE, "pod": POD})],
        rule_files=[rules],
    )

    firing = prometheus.wait_for('ALERTS{alertname="EmotionServingGpuMemoryNearFull", alertstate="firing"}')
    assert [(a["metric"]["gpu_uuid"], a["metric"]["pod"], a["metric"]["severity"]) for a in firing] == [
        (GPU, POD, "warning")
    ]

    dashboard = json.loads(next((tmp_path / "dashboards").glob("*-triton-*.json")).read_text())
    gpu_panels = [p for p in dashboard["panels"] if p["title"].startswith("GPU")]
    assert len(gpu_panels) == 3
    for panel in gpu_panels:
        expr = panel["targets"][0]["expr"].replace("$namespace", NAMESPACE).replace("$job", JOB)
        result = prometheus.wait_for(expr)
        assert [r["metric"]["gpu_uuid"] for r in result] == [GPU], panel["title"]
    (memory,) = prometheus.query(
        next(p for p in gpu_panels if "memory" in p["title"])["targets"][0]["expr"]
        .replace("$namespace", NAMESPACE)
        .replace("$job", JOB)
    )
    assert float(memory["value"][1]) == pytest.approx(618659840 / 150754820096)
