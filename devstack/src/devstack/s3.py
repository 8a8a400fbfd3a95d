"""The Versity S3 Gateway (Apache-2.0) with its posix backend, on loopback."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from minio import Minio

from devstack.paths import tool
from devstack.process import ManagedProcess, free_port, http_status

REGION = "us-east-1"


@dataclass
class S3Server:
    """A real S3 server storing objects as files under `root` (one folder per bucket).

    stop() and start() keep the port, the data and the keys, so a test can take the server away
    in the middle of an upload and bring it back.
    """

    root: Path
    port: int = field(default_factory=free_port)
    access_key: str = field(default_factory=lambda: "devstack-" + secrets.token_hex(4))
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    region: str = REGION
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The AWS_* variables an S3 client reads, for this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
        }

    def client(self) -> Minio:
        return Minio(
            self.host_port,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            secure=False,
        )

    def start(self, *, timeout: float = 30.0) -> S3Server:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        self._proc = ManagedProcess(
            "versitygw",
            [
                tool("versitygw"),
                "--access",
                self.access_key,
                "--secret",
                self.secret_key,
                "--region",
                self.region,
                "--port",
                self.host_port,
                "--quiet",
                "posix",
                self.root / "data",
            ],
            log_path=self.root / "versitygw.log",
        )
        self._proc.start()
        # Any HTTP answer means the listener is up; an unsigned request gets 403.
        self._proc.wait_until(lambda: http_status(self.endpoint + "/") is not None, timeout=timeout)
        return self

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
