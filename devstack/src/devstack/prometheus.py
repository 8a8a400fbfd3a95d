"""Prometheus (Debian's package) on loopback, with a scrape config and optional rule files."""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml

from devstack.errors import StackError
from devstack.paths import tool
from devstack.process import ManagedProcess, free_port, http_status


@dataclass(frozen=True)
class ScrapeTarget:
    """One scrape job: `job` names it, `address` is host:port, `path` the metrics path."""

    job: str
    address: str
    path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class Prometheus:
    root: Path
    targets: Sequence[ScrapeTarget]
    rule_files: Sequence[Path] = ()
    scrape_interval: str = "1s"
    port: int = field(default_factory=free_port)
    _proc: ManagedProcess | None = field(default=None, init=False, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": self.scrape_interval, "evaluation_interval": self.scrape_interval},
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {
                    "job_name": t.job,
                    "metrics_path": t.path,
                    "static_configs": [{"targets": [t.address], "labels": t.labels}],
                }
                for t in self.targets
            ],
        }

    def start(self, *, timeout: float = 60.0) -> Prometheus:
        self.root.mkdir(parents=True, exist_ok=True)
        config_path = self.root / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self._proc = ManagedProcess(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={self.root / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            log_path=self.root / "prometheus.log",
        )
        self._proc.start()
        self._proc.wait_until(lambda: http_status(self.url + "/-/ready") == 200, timeout=timeout)
        return self

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant-vector result of a PromQL query."""
        url = self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 (loopback only)
            body = json.load(response)
        if body.get("status") != "success":
            raise StackError(f"prometheus: query {promql!r} failed: {body}")
        return body["data"]["result"]

    def wait_for(self, promql: str, *, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Poll a query until it returns a non-empty result."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.query(promql)
            if result:
                return result
            time.sleep(0.5)
        assert self._proc is not None
        raise self._proc.fail(f"query {promql!r} stayed empty for {timeout:.0f} s")

    def targets_health(self) -> dict[str, str]:
        """scrape job -> health ("up", "down", "unknown") of its active targets."""
        return {job: health for job, (health, _) in self.scrape_status().items()}

    def scrape_status(self) -> dict[str, tuple[str, str]]:
        """job label -> (health, last scrape error) of the active targets."""
        with urllib.request.urlopen(self.url + "/api/v1/targets", timeout=10) as response:  # noqa: S310
            body = json.load(response)
        return {
            t["labels"]["job"]: (t["health"], t.get("lastError", "")) for t in body["data"]["activeTargets"]
        }

    def wait_scraped(self, *, timeout: float = 30.0) -> dict[str, tuple[str, str]]:
        """The targets once every one of them has been scraped at least once."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.scrape_status()
            scraped = found and all(health != "unknown" for health, _ in found.values())
            if scraped or time.monotonic() > deadline:
                return found
            time.sleep(0.5)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
