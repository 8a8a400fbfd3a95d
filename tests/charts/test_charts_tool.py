"""hack/charts.py: the schema builder, the render comparison, the exit-code and README checks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("charts_tool", ROOT / "hack" / "charts.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["charts_tool"] = module
    spec.loader.exec_module(module)
    return module


charts = _load()


def _write_yaml(path: Path, *documents: object) -> Path:
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    return path


@pytest.fixture
def sources(tmp_path: Path) -> Path:
    defs = {
        "fragments": {"pod": {"resources": {"$ref": "#/$defs/resources"}}},
        "$defs": {
            "resources": {"type": "object", "properties": {"limits": {"$ref": "#/$defs/resourceList"}}},
            "resourceList": {"type": "object"},
            "unused": {"type": "string"},
        },
    }
    _write_yaml(tmp_path / "defs.yaml", defs)
    chart = {"type": "object", "properties": {"$fragments": ["pod"], "replicas": {"type": "integer"}}}
    _write_yaml(tmp_path / "demo.yaml", chart)
    return tmp_path


def test_schema_expands_fragments_and_copies_only_the_definitions_it_uses(sources: Path) -> None:
    schema = charts.build_schema(chart="demo", sources=sources)
    assert schema == {
        "type": "object",
        "properties": {"resources": {"$ref": "#/$defs/resources"}, "replicas": {"type": "integer"}},
        "$defs": {
            "resourceList": {"type": "object"},
            "resources": {"type": "object", "properties": {"limits": {"$ref": "#/$defs/resourceList"}}},
        },
    }


def test_schema_refuses_an_unknown_fragment(sources: Path) -> None:
    _write_yaml(sources / "demo.yaml", {"properties": {"$fragments": ["server"]}})
    with pytest.raises(
        charts.CheckFailed, match=r"^schema: unknown fragment 'server' \(defs.yaml has \['pod'\]\)$"
    ):
        charts.build_schema(chart="demo", sources=sources)


def test_schema_refuses_a_property_given_twice(sources: Path) -> None:
    _write_yaml(sources / "demo.yaml", {"properties": {"$fragments": ["pod"], "resources": {}}})
    with pytest.raises(
        charts.CheckFailed, match=r"properties \['resources'\] are both in a fragment and given again"
    ):
        charts.build_schema(chart="demo", sources=sources)


def test_schema_refuses_a_missing_definition(sources: Path) -> None:
    _write_yaml(sources / "demo.yaml", {"properties": {"image": {"$ref": "#/$defs/image"}}})
    with pytest.raises(charts.CheckFailed, match=r"^schema demo: no definition 'image' in defs.yaml$"):
        charts.build_schema(chart="demo", sources=sources)


def test_committed_schemas_are_what_the_sources_give() -> None:
    for chart, folder in charts.SCHEMA_TARGETS.items():
        committed = json.loads((folder / "values.schema.json").read_text())
        assert committed == charts.build_schema(chart=chart), chart


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "api"},
    "spec": {"ports": [{"port": 80}]},
}


def _secret(value: str, *, generated: bool) -> dict[str, object]:
    meta: dict[str, object] = {"name": "keys"}
    if generated:
        meta["annotations"] = {"emotion-serving/generated": "true"}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"password": value}}


def test_compare_ignores_layout_and_generated_secret_values(tmp_path: Path) -> None:
    left = _write_yaml(tmp_path / "a.yaml", SERVICE, _secret("b25l", generated=True))
    right = tmp_path / "b.yaml"
    right.write_text("\n---\n" + yaml.safe_dump_all([_secret("dHdv", generated=True), SERVICE]) + "\n---\n")
    assert charts.compare_manifests(left=left, right=right) == 2


def test_compare_sees_a_changed_field_a_missing_object_and_a_changed_secret(tmp_path: Path) -> None:
    changed = {**SERVICE, "spec": {"ports": [{"port": 8080}]}}
    left = _write_yaml(tmp_path / "a.yaml", SERVICE, _secret("b25l", generated=False))
    right = _write_yaml(tmp_path / "b.yaml", changed, _secret("dHdv", generated=False))
    with pytest.raises(charts.CheckFailed) as failure:
        charts.compare_manifests(left=left, right=right)
    assert failure.value.lines == ["differs: Secret//keys", "differs: Service//api"]
    only = _write_yaml(tmp_path / "c.yaml", SERVICE)
    with pytest.raises(charts.CheckFailed) as failure:
        charts.compare_manifests(left=left, right=only)
    assert failure.value.lines == [f"only in {left}: Secret//keys"]


def _job(codes: list[int]) -> dict[str, object]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "packager-1"},
        "spec": {
            "podFailurePolicy": {
                "rules": [
                    {"action": "FailJob", "onExitCodes": {"operator": "In", "values": codes}},
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
                ]
            },
            "template": {"metadata": {"labels": {"app.kubernetes.io/component": "packager"}}},
        },
    }


def test_exit_codes_match_the_packagers_permanent_ones(tmp_path: Path) -> None:
    render = _write_yaml(tmp_path / "r.yaml", SERVICE, _job([3, 4, 5, 8]))
    assert charts.check_exit_codes(render=render) == [3, 4, 5, 8]


def test_exit_codes_refuse_a_policy_that_retries_a_permanent_failure(tmp_path: Path) -> None:
    render = _write_yaml(tmp_path / "r.yaml", _job([3, 4, 5]))
    with pytest.raises(
        charts.CheckFailed,
        match=r"^exit-codes: FailJob on \[3, 4, 5\], the packager's permanent codes are \[3, 4, 5, 8\]$",
    ):
        charts.check_exit_codes(render=render)


README = """# chart

## Values

| Key | Type | Default | Description |
|-----|------|---------|-------------|
| a.b | int | `1` | What b is |
| a.c | string | `""` |  |
"""


def test_docs_name_every_value_without_a_description(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    with pytest.raises(charts.CheckFailed) as failure:
        charts.check_docs(readme=readme)
    assert failure.value.summary == "docs: 1 values without a `# --` description"
    assert failure.value.lines == ["a.c"]
    readme.write_text(README.replace("|  |", "| What c is |"))
    assert charts.check_docs(readme=readme) == 2


def test_cli_prints_one_line_per_difference_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left = _write_yaml(tmp_path / "a.yaml", SERVICE)
    right = _write_yaml(tmp_path / "b.yaml", {**SERVICE, "metadata": {"name": "web"}})
    assert charts.main(["compare", str(left), str(right)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"charts.py: compare: {left} and {right} differ",
        f"  only in {left}: Service//api",
        f"  only in {right}: Service//web",
    ]


RESTRICTED_POD = {
    "securityContext": {
        "runAsNonRoot": True,
        "runAsUser": 5000,
        "seccompProfile": {"type": "RuntimeDefault"},
    },
    "containers": [
        {
            "name": "server",
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
    ],
    "volumes": [{"name": "tmp", "emptyDir": {}}],
}


def test_restricted_accepts_a_pod_that_meets_the_profile() -> None:
    assert charts.restricted_violations(RESTRICTED_POD) == []


def test_restricted_names_each_violation() -> None:
    pod = {
        "hostNetwork": True,
        "securityContext": {"runAsUser": 0},
        "initContainers": [{"name": "init", "securityContext": {"privileged": True}}],
        "containers": [
            {
                "name": "server",
                "ports": [{"containerPort": 80, "hostPort": 80}],
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "runAsNonRoot": True,
                    "seccompProfile": {"type": "Unconfined"},
                    "capabilities": {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_BIND_SERVICE"]},
                },
            }
        ],
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
    }
    assert charts.restricted_violations(pod) == [
        "spec.hostNetwork: true",
        "volume host: type hostPath is not allowed",
        "container init: privileged",
        "container init: allowPrivilegeEscalation is not false",
        "container init: runAsNonRoot is not true",
        "container init: runAsUser is 0",
        "container init: seccompProfile is not RuntimeDefault or Localhost",
        "container init: capabilities do not drop ALL",
        "container server: runAsUser is 0",
        "container server: seccompProfile is not RuntimeDefault or Localhost",
        "container server: adds capabilities ['NET_ADMIN']",
        "container server: uses a hostPort",
    ]


def test_restricted_checks_the_pods_of_workloads_in_a_render(tmp_path: Path) -> None:
    weak = {**RESTRICTED_POD, "securityContext": {"runAsNonRoot": True}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}}
    render = _write_yaml(
        tmp_path / "r.yaml",
        SERVICE,
        {**deployment, "spec": {"template": {"spec": RESTRICTED_POD}}},
        {**deployment, "metadata": {"name": "weak"}, "spec": {"template": {"spec": weak}}},
    )
    with pytest.raises(charts.CheckFailed) as failure:
        charts.check_restricted(renders=[render])
    assert failure.value.lines == [
        "r.yaml: Deployment/weak: container server: seccompProfile is not RuntimeDefault or Localhost"
    ]
