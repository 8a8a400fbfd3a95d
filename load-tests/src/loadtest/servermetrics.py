"""Server-side time from each server's Prometheus endpoint, scraped before and after every level.

OVMS (histograms on its REST port): ovms_request_time_us, ovms_inference_time_us and
ovms_wait_for_infer_req_time_us (labels name, version), counters ovms_requests_success/_fail (method
ModelInfer). Triton (cumulative counters on its metrics port, label model): nv_inference_request_success,
nv_inference_request_failure, nv_inference_request_duration_us, nv_inference_queue_duration_us,
nv_inference_compute_{input,infer,output}_duration_us, nv_inference_count and nv_inference_exec_count.
Sources: OVMS docs/metrics.md, Triton docs/user_guide/metrics.md. Both reduce to the same figures per level:
requests, failures, mean request, queue and compute time per request (ms), and Triton's mean batch size.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from emotion_contract.servers import SERVERS, Server

Sample = tuple[str, dict[str, str], float]

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> list[Sample]:
    """Samples of the Prometheus text format (comments and malformed lines skipped)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        pairs = {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(labels or "")}
        samples.append((name, pairs, number))
    return samples


def scrape(url: str, *, timeout: float = 5.0) -> list[Sample] | None:
    """The samples at `url`, or None when it cannot be read (server metrics are optional)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the user's own URL)
            return parse(response.read().decode("utf-8", errors="replace"))
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _total(samples: list[Sample], name: str, match: Callable[[dict[str, str]], bool]) -> float:
    return sum(value for n, labels, value in samples if n == name and match(labels))


def server_side(before: list[Sample] | None, after: list[Sample] | None, model: str) -> dict[str, Any] | None:
    """The level's server-side figures for `model` (None: a scrape failed, or an unknown server)."""
    if before is None or after is None:
        return None
    names = {name for name, _, _ in after}
    for server, reduce in _REDUCERS.items():
        if any(name.startswith(SERVERS[server].metric_prefix) for name in names):
            return reduce(before, after, model)
    return None


def _delta(
    before: list[Sample], after: list[Sample], name: str, match: Callable[[dict[str, str]], bool]
) -> float:
    return _total(after, name, match) - _total(before, name, match)


def _per_request_ms(total_us: float, count: float) -> float | None:
    return round(total_us / count / 1000.0, 3) if count > 0 else None


def _triton(before: list[Sample], after: list[Sample], model: str) -> dict[str, Any]:
    def ours(labels: dict[str, str]) -> bool:
        return labels.get(SERVERS[Server.TRITON].model_label) == model

    def delta(name: str) -> float:
        return _delta(before, after, name, ours)

    requests = delta("nv_inference_request_success")
    compute = sum(delta(f"nv_inference_compute_{part}_duration_us") for part in ("input", "infer", "output"))
    executions = delta("nv_inference_exec_count")
    return {
        "server": Server.TRITON.value,
        "requests": int(requests),
        "failures": int(delta("nv_inference_request_failure")),
        "request_ms": _per_request_ms(delta("nv_inference_request_duration_us"), requests),
        "queue_ms": _per_request_ms(delta("nv_inference_queue_duration_us"), requests),
        "compute_ms": _per_request_ms(compute, requests),
        "batch_size": round(delta("nv_inference_count") / executions, 3) if executions > 0 else None,
    }


def _ovms(before: list[Sample], after: list[Sample], model: str) -> dict[str, Any]:
    def ours(labels: dict[str, str]) -> bool:
        return labels.get(SERVERS[Server.OVMS].model_label) == model

    def infer_calls(labels: dict[str, str]) -> bool:
        return ours(labels) and labels.get("method") == "ModelInfer"

    def mean_ms(histogram: str) -> float | None:
        total = _delta(before, after, f"{histogram}_sum", ours)
        return _per_request_ms(total, _delta(before, after, f"{histogram}_count", ours))

    return {
        "server": Server.OVMS.value,
        "requests": int(_delta(before, after, "ovms_requests_success", infer_calls)),
        "failures": int(_delta(before, after, "ovms_requests_fail", infer_calls)),
        "request_ms": mean_ms("ovms_request_time_us"),
        "queue_ms": mean_ms("ovms_wait_for_infer_req_time_us"),
        "compute_ms": mean_ms("ovms_inference_time_us"),
        "batch_size": None,
    }


#: Each server's reduction of its metrics to the same figures (one per entry of emotion_contract.servers).
_REDUCERS: dict[Server, Callable[[list[Sample], list[Sample], str], dict[str, Any]]] = {
    Server.TRITON: _triton,
    Server.OVMS: _ovms,
}
