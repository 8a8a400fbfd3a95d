"""One description per inference server: what the packager, devstack and the load tester need to know.

Adding a server is an entry in SERVERS (plus its repository writer in the packager, its subchart, and its
ports in the chart's `emotion-serving.ports` helper, which tests/charts/test_cli_contract.py holds equal to
`ports` here). Sources: OVMS docs/metrics.md and parameters.md (metrics on the REST port); Triton
docs/user_guide/metrics.md (its own port) and the KServe v2 protocol (health and readiness paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Server(StrEnum):
    OVMS = "ovms"
    TRITON = "triton"


@dataclass(frozen=True)
class ServerSpec:
    server: Server
    title: str  # how reports name it
    #: Container ports by name, as the chart numbers them.
    ports: dict[str, int]
    #: The port that serves Prometheus metrics (a key of `ports`), and the path.
    metrics_port: str
    #: The server flag that sets the metrics port (devstack checks the rendered args against it).
    metrics_flag: str
    #: Samples named with this prefix identify the server in a scrape (loadtest.servermetrics).
    metric_prefix: str
    #: The model label in its metrics.
    model_label: str
    metrics_path: str = "/metrics"
    live_path: str = "/v2/health/live"

    @property
    def name(self) -> str:
        return self.server.value

    @staticmethod
    def ready_path(model: str) -> str:
        """KServe v2 model readiness, the same on both servers."""
        return f"/v2/models/{model}/ready"


SERVERS: dict[Server, ServerSpec] = {
    Server.OVMS: ServerSpec(
        server=Server.OVMS,
        title="OpenVINO Model Server",
        ports={"grpc": 9000, "http": 8000},
        metrics_port="http",
        metrics_flag="--rest_port",
        metric_prefix="ovms_",
        model_label="name",
    ),
    Server.TRITON: ServerSpec(
        server=Server.TRITON,
        title="NVIDIA Triton",
        ports={"http": 8000, "grpc": 8001, "metrics": 8002},
        metrics_port="metrics",
        metrics_flag="--metrics-port",
        metric_prefix="nv_",
        model_label="model",
    ),
}


def spec(name: str) -> ServerSpec:
    """The description of the server called `name` (KeyError when there is none)."""
    return SERVERS[Server(name)]
