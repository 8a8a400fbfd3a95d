"""The install commands the docs print render against the chart's strict values schema.

Every `helm install` in the chart's README and in the header of each examples/values file is turned
into `helm template` (the same values files and `--set` items) and must render: a key the schema
does not know fails it, as it would fail the install.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from devstack.chart import CHART, Render
from devstack.paths import REPO_ROOT

DOCS = [
    REPO_ROOT / "README.md",
    CHART / "README.md",
    *sorted((REPO_ROOT / "examples" / "values").glob("*.yaml")),
]
# Flags that only matter against a cluster.
CLUSTER_ONLY = {"--wait", "--wait-for-jobs", "--create-namespace"}


def install_commands(path: Path) -> list[list[str]]:
    text = path.read_text()
    if path.suffix == ".yaml":  # the commands sit in comments: "#   helm install ..."
        text = "\n".join(line.lstrip("#") for line in text.splitlines() if line.startswith("#"))
    text = text.replace("\\\n", " ")
    return [shlex.split(match) for match in re.findall(r"^\s*(helm install .*)$", text, re.MULTILINE)]


def as_template(argv: list[str]) -> tuple[list[Path], list[str]]:
    values: list[Path] = []
    set_values: list[str] = []
    words = iter(argv[4:])  # helm install RELEASE CHART
    for word in words:
        if word in ("-f", "--values"):
            values.append(REPO_ROOT / next(words))
        elif word == "--set":
            set_values.append(next(words))
        elif word in ("--namespace", "-n", "--timeout"):
            next(words)
        elif word not in CLUSTER_ONLY:
            pytest.fail(f"unexpected flag in {argv}: {word}")
    return values, set_values


@pytest.mark.parametrize("path", DOCS, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_documented_install_command_renders(path: Path) -> None:
    commands = [c for c in install_commands(path) if c[3] == "charts/emotion-serving"]
    if path.name == "README.md":
        assert commands, f"{path} shows no install command"
    for argv in commands:
        values, set_values = as_template(argv)
        Render.template(release=argv[2], namespace="emotion", values=values, set_values=set_values)


def test_the_readme_installs_a_packager_image_of_its_own() -> None:
    (argv,) = install_commands(CHART / "README.md")
    assert any(item.startswith("global.packager.image.repository=") for item in argv)
