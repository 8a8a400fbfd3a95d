"""The monitoring subchart's Chart.lock is the one helm itself would accept for its Chart.yaml.

`helm dependency build` checks the lock's digest (helm's internal/resolver HashReq: sha256 of the JSON of
[Chart.yaml dependencies, Chart.lock dependencies]) before it looks for repositories. With no repository
configured it therefore stops at "no repository definition" when the digest is right, and at "out of
sync" when it is not: both without any network.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from devstack.paths import tool

CHART = Path(__file__).resolve().parents[2] / "charts" / "emotion-serving" / "charts" / "monitoring"
STACK_REPO = "https://prometheus-community.github.io/helm-charts"


def dependency_build(chart: Path, tmp_path: Path) -> str:
    repositories = tmp_path / "repositories.yaml"
    repositories.write_text("apiVersion: v1\nrepositories: []\n")
    proc = subprocess.run(
        [
            str(tool("helm")),
            "dependency",
            "build",
            str(chart),
            "--repository-config",
            str(repositories),
            "--repository-cache",
            str(tmp_path / "cache"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0, proc.stdout
    return proc.stderr.strip()


@pytest.fixture
def chart_copy(tmp_path: Path) -> Path:
    return Path(shutil.copytree(CHART, tmp_path / "monitoring"))


def test_lock_pins_the_stack_that_chart_yaml_declares() -> None:
    declared = yaml.safe_load((CHART / "Chart.yaml").read_text())["dependencies"]
    locked = yaml.safe_load((CHART / "Chart.lock").read_text())["dependencies"]
    assert declared == [
        {
            "name": "kube-prometheus-stack",
            "version": "87.0.0",
            "repository": STACK_REPO,
            "condition": "kube-prometheus-stack.enabled",
        }
    ]
    assert locked == [{"name": "kube-prometheus-stack", "repository": STACK_REPO, "version": "87.0.0"}]


def test_helm_accepts_the_lock_digest(chart_copy: Path, tmp_path: Path) -> None:
    error = dependency_build(chart_copy, tmp_path)
    assert error == (
        f"Error: no repository definition for {STACK_REPO}. Please add the missing repos via 'helm repo add'"
    )


def test_helm_refuses_a_lock_that_no_longer_matches(chart_copy: Path, tmp_path: Path) -> None:
    chart_yaml = chart_copy / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace("version: 87.0.0", "version: 87.0.1"))
    error = dependency_build(chart_copy, tmp_path)
    assert error == (
        "Error: the lock file (Chart.lock) is out of sync with the dependencies file (Chart.yaml). "
        "Please update the dependencies"
    )
