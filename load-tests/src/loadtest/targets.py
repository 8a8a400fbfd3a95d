"""Targets given as NAME=URL (host:port of the protocol's port) and their metrics URLs; readiness checks."""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emotion_contract.errors import BadInput, Unavailable

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")
_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class Target:
    name: str
    url: str  # host:port
    metrics_url: str | None  # a full http(s) URL of the server's Prometheus endpoint


def parse_pairs(values: list[str], *, flag: str) -> dict[str, str]:
    """`NAME=VALUE` items of a repeated flag, in order; names unique."""
    pairs: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not value or not _NAME.match(name):
            raise BadInput(f"{flag} {item!r}: expected NAME=VALUE with a name of letters, digits, . _ -")
        if name in pairs:
            raise BadInput(f"{flag} {name}: given twice")
        pairs[name] = value
    return pairs


def host_port(url: str, *, flag: str) -> str:
    """host:port from `host:port` or `http://host:port` (TLS is not supported)."""
    bare = url.removeprefix("http://").removeprefix("grpc://").rstrip("/")
    if (
        url.startswith("https://")
        or not _HOST_PORT.match(bare)
        or not 0 < int(bare.rsplit(":", 1)[1]) < 65536
    ):
        raise BadInput(f"{flag} {url!r}: expected host:port (plain HTTP/2 or HTTP/1.1, no TLS)")
    return bare


def parse_targets(targets: list[str], metrics: list[str], *, protocol: str) -> tuple[Target, ...]:
    """Targets in the order given. Without `--metrics NAME=URL`, an HTTP target's metrics are read from
    its own port (OVMS serves /metrics on its REST port; Triton on a port of its own, so name it)."""
    urls = parse_pairs(targets, flag="--target")
    if not urls:
        raise BadInput("give at least one --target NAME=HOST:PORT")
    metric_urls = parse_pairs(metrics, flag="--metrics")
    unknown = sorted(set(metric_urls) - set(urls))
    if unknown:
        raise BadInput(f"--metrics {unknown[0]}: no --target of that name")
    parsed = []
    for name, url in urls.items():
        address = host_port(url, flag="--target")
        metrics_url = metric_urls.get(name)
        if metrics_url is not None and metrics_url != "none":
            if not metrics_url.startswith(("http://", "https://")):
                metrics_url = f"http://{host_port(metrics_url, flag='--metrics')}/metrics"
        elif metrics_url is None and protocol == "http":
            metrics_url = f"http://{address}/metrics"
        parsed.append(Target(name, address, None if metrics_url == "none" else metrics_url))
    return tuple(parsed)


def check_ready(target: Target, *, protocol: str, model: str, timeout: float = 5.0) -> None:
    """The server is live and `model` is ready, or Unavailable with the reason."""
    where = f"target {target.name} ({target.url}, {protocol})"
    if not is_live(target, protocol=protocol, timeout=timeout):
        raise Unavailable(f"{where}: the server does not answer as live")
    if protocol == "http":
        ready = _http_status(f"http://{target.url}/v2/models/{model}/ready", timeout) == 200
    else:
        ready = _grpc_ask(
            target.url, timeout, lambda client: client.is_model_ready(model, client_timeout=timeout)
        )
    if not ready:
        raise Unavailable(f"{where}: model {model} is not ready")


def is_live(target: Target, *, protocol: str, timeout: float = 3.0) -> bool:
    if protocol == "http":
        return _http_status(f"http://{target.url}/v2/health/live", timeout) == 200
    return _grpc_ask(target.url, timeout, lambda client: client.is_server_live(client_timeout=timeout))


def _grpc_ask(url: str, timeout: float, question: Callable[[Any], bool]) -> bool:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(url)
    try:
        return bool(question(client))
    except InferenceServerException:
        return False
    finally:
        client.close()


def _http_status(url: str, timeout: float) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (the user's own target)
            return response.status
    except urllib.error.HTTPError as err:
        return err.code
    except (OSError, urllib.error.URLError):
        return None
