"""A real Prometheus loads the chart's rendered rules and scrapes a real Triton under load.

The Triton-side `emotion:*` records must come out non-empty and plausible: the request rate within
20 % of what the client sent, the error ratio near the share of requests made to fail, a compute time
no shorter than the model's sleep, and every rule of the file evaluating without error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from devstack.prometheus import Prometheus, ScrapeTarget
from devstack.triton import TritonServer

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MODELS = HERE / "models"
#: The chart to render: the umbrella by default (MONITORING_CHART overrides it, as mk/monitoring.mk does).
CHART = Path(os.environ.get("MONITORING_CHART", REPO / "charts" / "emotion-serving"))
# What render.py renders: release es in namespace emotion; the ServiceMonitor would set job es-triton.
JOB, NAMESPACE, POD = "es-triton", "emotion", "triton-0"
WINDOW_SECONDS = 10
RATE = 40.0  # requests per second the client sends
FAIL_EVERY = 20  # every 20th request carries a negative token id and fails in the model (5 %)
COMPUTE_SECONDS = 0.003  # the model's sleep (models/emotion/1/model.py)


def render_rules(out: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            str(HERE / "render.py"),
            "rules",
            str(out),
            "--chart",
            str(CHART),
            "--set",
            f"monitoring.rules.rateWindow={WINDOW_SECONDS}s",
        ],
        check=True,
    )
    return out


def send_paced(triton: TritonServer, *, seconds: float) -> tuple[int, int, float]:
    """Open-loop: one request every 1/RATE s from the intended start. Returns (sent, failed, elapsed)."""
    client = httpclient.InferenceServerClient(triton.http_url)
    good = httpclient.InferInput("input_ids", [1, 8], "INT64")
    good.set_data_from_numpy(np.arange(8, dtype=np.int64).reshape(1, 8))
    bad = httpclient.InferInput("input_ids", [1, 8], "INT64")
    bad.set_data_from_numpy(-np.ones((1, 8), dtype=np.int64))
    sent = failed = 0
    start = time.monotonic()
    try:
        while (now := time.monotonic()) - start < seconds:
            intended = start + sent / RATE
            if now < intended:
                time.sleep(intended - now)
            try:
                client.infer("emotion", [bad if sent % FAIL_EVERY == FAIL_EVERY - 1 else good])
            except InferenceServerException as err:
                if "negative token id" not in str(err):
                    raise
                failed += 1
            sent += 1
        return sent, failed, time.monotonic() - start
    finally:
        client.close()  # an open keep-alive connection holds Triton's shutdown for --exit-timeout-secs


def value(prometheus: Prometheus, promql: str) -> float:
    result = prometheus.wait_for(promql, timeout=10)
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def rule_health(prometheus: Prometheus) -> dict[str, list[str]]:
    with urllib.request.urlopen(prometheus.url + "/api/v1/rules", timeout=10) as response:  # noqa: S310
        groups = json.load(response)["data"]["groups"]
    health: dict[str, list[str]] = {}
    for group in groups:
        for rule in group["rules"]:
            health.setdefault(rule["health"], []).append(f"{rule['name']}: {rule.get('lastError', '')}")
    return health


@pytest.mark.timeout(120)
def test_triton_records_match_the_load_the_client_sent(
    tmp_path: Path, triton_factory: Callable[..., TritonServer], prometheus_factory: Callable[..., Prometheus]
) -> None:
    rules = render_rules(tmp_path / "rules.yaml")
    triton = triton_factory(MODELS)
    prometheus = prometheus_factory(
        targets=[
            ScrapeTarget(
                job=JOB,
                address=f"127.0.0.1:{triton.metrics_port}",
                labels={"namespace": NAMESPACE, "pod": POD},
            )
        ],
        rule_files=[rules],
    )
    # Load for two windows; read the records while the last full window is all load.
    sent, failed, elapsed = send_paced(triton, seconds=2 * WINDOW_SECONDS)
    client_rate = sent / elapsed
    mine = f'{{namespace="{NAMESPACE}", job="{JOB}", model="emotion", server="triton"}}'

    request_rate = value(prometheus, f"emotion:requests:rate{mine}")
    error_ratio = value(prometheus, f"emotion:request_errors:ratio{mine}")
    duration = value(prometheus, f"emotion:request_duration_seconds:mean{mine}")
    queue = value(prometheus, f"emotion:queue_duration_seconds:mean{mine}")
    compute = value(prometheus, f"emotion:compute_duration_seconds:mean{mine}")
    inflight = value(prometheus, f"emotion:inflight_requests:mean{mine}")
    pod_queue = value(prometheus, f'emotion:pod_queue_duration_seconds:mean{{job="{JOB}", pod="{POD}"}}')
    print(
        f"client {client_rate:.1f} req/s ({sent} sent, {failed} failed); records: rate {request_rate:.1f}/s"
        f" ({request_rate / client_rate - 1:+.1%}), errors {error_ratio:.3f},"
        f" duration {duration * 1e3:.2f} ms, queue {queue * 1e3:.3f} ms,"
        f" compute {compute * 1e3:.2f} ms, in flight {inflight:.3f}"
    )

    assert failed == sent // FAIL_EVERY
    assert abs(request_rate - client_rate) <= 0.2 * client_rate
    assert 0.5 / FAIL_EVERY <= error_ratio <= 1.5 / FAIL_EVERY
    assert COMPUTE_SECONDS <= compute < duration < 0.1
    assert 0 <= queue < duration
    assert pod_queue == pytest.approx(queue, rel=0.05, abs=1e-6)
    # Little's law: mean requests in the server = rate of successes x their mean duration.
    success_rate = request_rate * (1 - error_ratio)
    assert inflight == pytest.approx(success_rate * duration, rel=0.05)
    health = rule_health(prometheus)
    assert set(health) == {"ok"}, health
