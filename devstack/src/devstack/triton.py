"""Triton Inference Server from the nvidia-pytriton wheel (2.51, python backend, S3 support).

The wheel's python-backend stub embeds the system libpython3.11 in isolated mode: PYTHONPATH and
the user site are ignored, so our python models add the folders named in EMOTION_SERVING_PYTHONPATH
to sys.path themselves (the stock Triton image needs none). That folder holds numpy<2: with numpy 2
every response of this stub fails with "output tensor shape does not match size of output".
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from devstack.paths import triton_home, triton_stub_site
from devstack.process import ManagedProcess, free_port, http_status

#: The variable our python-backend models read to extend sys.path (see model code in the packager).
STUB_PATH_VARIABLE = "EMOTION_SERVING_PYTHONPATH"


@dataclass
class TritonServer:
    """tritonserver on loopback serving `repository` (a local folder or s3://host:port/bucket/prefix).

    `args` are extra command-line flags, `env` extra environment (the S3 keys for an s3:// repository).
    """

    root: Path
    repository: str
    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def argv(self) -> list[str]:
        return command(
            [
                f"--model-repository={self.repository}",
                f"--http-port={self.http_port}",
                f"--grpc-port={self.grpc_port}",
                f"--metrics-port={self.metrics_port}",
                *self.args,
            ]
        )

    def process_env(self) -> dict[str, str]:
        return environment(self.env)

    def start(self, *, timeout: float = 120.0) -> TritonServer:
        self._proc = ManagedProcess(
            "tritonserver", self.argv(), log_path=self.root / "tritonserver.log", env=self.process_env()
        )
        self._proc.start()
        self._proc.wait_until(self.ready, timeout=timeout)
        return self

    def ready(self) -> bool:
        return http_status(f"http://{self.http_url}/v2/health/ready") == 200

    def model_ready(self, model: str) -> bool:
        return http_status(f"http://{self.http_url}/v2/models/{model}/ready") == 200

    def running(self) -> bool:
        return self._proc is not None and self._proc.running()

    def tail(self, lines: int = 20) -> str:
        return self._proc.tail(lines) if self._proc else ""

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop(grace=40)  # above Triton's default --exit-timeout-secs (30)

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def command(args: Sequence[str]) -> list[str]:
    """tritonserver from the wheel with `args`, its backends, and every listener on loopback only."""
    home = triton_home()
    return [
        str(home / "bin" / "tritonserver"),
        f"--backend-directory={home / 'backends'}",
        "--http-address=127.0.0.1",
        "--grpc-address=127.0.0.1",
        "--metrics-address=127.0.0.1",
        *args,
    ]


def environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment plus `extra`, with the stub's numpy<2 folder on our models' path."""
    env = {**os.environ, **extra}
    paths = [str(triton_stub_site())]
    if env.get(STUB_PATH_VARIABLE):
        paths.append(env[STUB_PATH_VARIABLE])
    env[STUB_PATH_VARIABLE] = os.pathsep.join(paths)
    return env


def s3_repository_url(host_port: str, bucket: str, prefix: str) -> str:
    """Triton's form for a non-AWS S3 repository: s3://host:port/bucket/prefix (plain HTTP)."""
    return f"s3://{host_port}/{bucket}/{prefix.strip('/')}"
