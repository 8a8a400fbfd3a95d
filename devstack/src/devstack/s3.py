"""The Versity S3 Gateway (Apache-2.0) with its posix backend, on loopback."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import urllib3
from minio import Minio

from devstack.errors import StackError
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
    iam: bool = False  # accounts besides root (create_user), kept under root/iam
    tls: tuple[Path, Path, Path] | None = None  # (certificate, key, the CA that signed it): serve https
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

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
        http = urllib3.PoolManager(ca_certs=str(self.tls[2]), cert_reqs="CERT_REQUIRED") if self.tls else None
        return Minio(
            self.host_port,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            secure=self.tls is not None,
            http_client=http,
        )

    def start(self, *, timeout: float = 30.0) -> S3Server:
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        if self.iam:
            (self.root / "iam").mkdir(exist_ok=True)
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
                *(["--iam-dir", str(self.root / "iam")] if self.iam else []),
                *(["--cert", str(self.tls[0]), "--key", str(self.tls[1])] if self.tls else []),
                "posix",
                self.root / "data",
            ],
            log_path=self.root / "versitygw.log",
        )
        self._proc.start()
        # Any HTTP answer means the listener is up; an unsigned request gets 403.
        ca = str(self.tls[2]) if self.tls else None
        self._proc.wait_until(
            lambda: http_status(self.endpoint + "/", ca_file=ca) is not None, timeout=timeout
        )
        return self

    def create_user(self, access_key: str, secret_key: str, *, role: str = "user") -> None:
        """An account of the gateway's internal IAM (needs iam=True); access comes from bucket policies."""
        result = subprocess.run(
            [
                str(tool("versitygw")), "admin",
                "--access", self.access_key, "--secret", self.secret_key,
                "--endpoint-url", self.endpoint,
                "create-user", "--access", access_key, "--secret", secret_key, "--role", role,
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        if result.returncode:
            reason = result.stderr.strip() or result.stdout.strip()
            raise StackError(f"versitygw: cannot create user {access_key}: {reason}")

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()

    def frozen(self) -> contextlib.AbstractContextManager[None]:
        """The server hung (SIGSTOP) for a with block: connections accepted, never answered."""
        assert self._proc is not None, "not started"
        return self._proc.frozen()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
