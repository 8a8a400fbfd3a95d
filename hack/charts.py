"""Checks and generated files of the emotion-serving charts (run by mk/charts.mk).

    python hack/charts.py schema [--check]          build every chart's values.schema.json
    python hack/charts.py compare LEFT RIGHT        two renders hold the same objects
    python hack/charts.py exit-codes RENDER         the Job's FailJob codes are the packager's permanent ones
    python hack/charts.py docs README               every value in the README's table has a description
    python hack/charts.py restricted RENDER...      every pod meets Pod Security Standards "restricted"

`schema` expands charts/emotion-serving/schema/<chart>.yaml: `$fragments` in a `properties` map
become the shared property sets of schema/defs.yaml, and the `$defs` the chart refers to are copied
in, so each chart's schema is whole in itself (helm reads no other file). `--check` fails when a
committed schema differs from what the sources give.

`compare` parses both multi-document files and compares the objects, keyed by kind, namespace and
name, ignoring how the YAML is laid out (helm 4 separates documents differently from helm 3). The
data of Secrets annotated `emotion-serving/generated` are random at every render and are compared
by their keys only.

Exit codes: 0 ok, 1 a check failed (one line per difference on stderr), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "emotion-serving"
SCHEMA_SOURCES = CHART / "schema"
#: The charts whose schema is built, and where each one's values.schema.json goes.
SCHEMA_TARGETS = {
    "emotion-serving": CHART,
    "minio": CHART / "charts" / "minio",
    "ovms": CHART / "charts" / "ovms",
    "triton": CHART / "charts" / "triton",
}
GENERATED = "emotion-serving/generated"
REF_PREFIX = "#/$defs/"
#: Pod Security Standards, "restricted" profile (Kubernetes docs, concepts/security/pod-security-standards).
RESTRICTED_VOLUMES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
RESTRICTED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
RESTRICTED_ADD_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})


class CheckFailed(Exception):
    """A check found differences; `lines` says which, one per line."""

    def __init__(self, summary: str, lines: Sequence[str] = ()) -> None:
        super().__init__(summary)
        self.summary = summary
        self.lines = list(lines)


def _expand(node: Any, fragments: dict[str, dict[str, Any]]) -> Any:
    """The schema node with every `properties.$fragments` list replaced by the fragments' properties."""
    if isinstance(node, list):
        return [_expand(item, fragments) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: _expand(value, fragments) for key, value in node.items()}
    properties = result.get("properties")
    if isinstance(properties, dict) and "$fragments" in properties:
        merged: dict[str, Any] = {}
        for name in properties.pop("$fragments"):
            if name not in fragments:
                raise CheckFailed(f"schema: unknown fragment {name!r} (defs.yaml has {sorted(fragments)})")
            merged.update(_expand(fragments[name], fragments))
        clash = sorted(set(merged) & set(properties))
        if clash:
            raise CheckFailed(f"schema: properties {clash} are both in a fragment and given again")
        result["properties"] = merged | properties
    return result


def _refs(node: Any) -> set[str]:
    """Names of the `#/$defs/<name>` references anywhere in the node."""
    if isinstance(node, dict):
        found = {node["$ref"].removeprefix(REF_PREFIX)} if isinstance(node.get("$ref"), str) else set()
        return found.union(*(_refs(value) for value in node.values()))
    if isinstance(node, list):
        return set().union(*(_refs(item) for item in node))
    return set()


def build_schema(*, chart: str, sources: Path = SCHEMA_SOURCES) -> dict[str, Any]:
    """One chart's values schema from its source and the shared definitions."""
    shared = yaml.safe_load((sources / "defs.yaml").read_text())
    schema = _expand(yaml.safe_load((sources / f"{chart}.yaml").read_text()), shared["fragments"])
    definitions: dict[str, Any] = {}
    pending = _refs(schema)
    while pending:
        name = pending.pop()
        if name not in shared["$defs"]:
            raise CheckFailed(f"schema {chart}: no definition {name!r} in defs.yaml")
        definitions[name] = shared["$defs"][name]
        pending |= _refs(definitions[name]) - definitions.keys()
    if definitions:
        schema["$defs"] = dict(sorted(definitions.items()))
    return schema


def write_schemas(*, check: bool) -> list[str]:
    """Write (or with `check`, compare) every chart's values.schema.json; the paths that changed or differ."""
    stale = []
    for chart, folder in SCHEMA_TARGETS.items():
        path = folder / "values.schema.json"
        text = json.dumps(build_schema(chart=chart), indent=2, ensure_ascii=False) + "\n"
        if path.exists() and path.read_text() == text:
            continue
        stale.append(str(path.relative_to(ROOT)))
        if not check:
            path.write_text(text)
    if check and stale:
        raise CheckFailed("schema: stale, run `make chart-schemas`", stale)
    return stale


def _objects(path: Path) -> dict[tuple[str, str, str], Any]:
    """The objects of a multi-document manifest, keyed by kind, namespace and name."""
    objects: dict[tuple[str, str, str], Any] = {}
    for document in yaml.safe_load_all(path.read_text()):
        if not document:
            continue
        meta = document.get("metadata", {})
        key = (document.get("kind", ""), meta.get("namespace", ""), meta.get("name", ""))
        if key in objects:
            raise CheckFailed(f"{path}: {'/'.join(key)} appears twice")
        if document.get("kind") == "Secret" and GENERATED in (meta.get("annotations") or {}):
            document["data"] = dict.fromkeys(document.get("data", {}), "<generated>")
        objects[key] = document
    if not objects:
        raise CheckFailed(f"{path}: no objects")
    return objects


def compare_manifests(*, left: Path, right: Path) -> int:
    """Raise CheckFailed unless both manifests hold the same objects; the number of objects."""
    a, b = _objects(left), _objects(right)
    differences = [f"only in {left}: {'/'.join(key)}" for key in sorted(a.keys() - b.keys())]
    differences += [f"only in {right}: {'/'.join(key)}" for key in sorted(b.keys() - a.keys())]
    differences += [f"differs: {'/'.join(key)}" for key in sorted(a.keys() & b.keys()) if a[key] != b[key]]
    if differences:
        raise CheckFailed(f"compare: {left} and {right} differ", differences)
    return len(a)


def check_exit_codes(*, render: Path) -> list[int]:
    """Raise CheckFailed unless the packager Job fails at once on exactly the packager's permanent codes."""
    from model_packager.errors import PERMANENT

    jobs = [
        obj
        for (kind, _, name), obj in _objects(render).items()
        if kind == "Job"
        and obj["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component") == "packager"
    ]
    if len(jobs) != 1:
        raise CheckFailed(f"exit-codes: {render} holds {len(jobs)} packager Jobs, not 1")
    rules = jobs[0]["spec"].get("podFailurePolicy", {}).get("rules", [])
    chart = sorted(
        code for rule in rules if rule.get("action") == "FailJob" for code in rule["onExitCodes"]["values"]
    )
    packager = sorted(int(code) for code in PERMANENT)
    if chart != packager:
        raise CheckFailed(f"exit-codes: FailJob on {chart}, the packager's permanent codes are {packager}")
    return chart


def check_docs(*, readme: Path) -> int:
    """Raise CheckFailed when a row of the README's values table (helm-docs) has no description;
    the number of rows. helm-docs' own strict mode also asks for every parent key, so it is not used."""
    text = readme.read_text()
    if "\n## Values\n" not in text:
        raise CheckFailed(f"docs: {readme} has no `## Values` section")
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.split("\n## Values\n", 1)[1].splitlines()
        if line.startswith("| ") and not line.startswith("| Key ")
    ]
    missing = [row[0] for row in rows if len(row) < 4 or not row[-1]]
    if missing:
        raise CheckFailed(f"docs: {len(missing)} values without a `# --` description", missing)
    if not rows:
        raise CheckFailed(f"docs: {readme} lists no values")
    return len(rows)


def _pod_specs(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs an object runs: a Pod's own, a workload's template, a CronJob's job template."""
    spec = document.get("spec") or {}
    kind = document.get("kind")
    if kind == "Pod":
        return [spec]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        return [spec["template"]["spec"]]
    return []


def restricted_violations(pod: dict[str, Any]) -> list[str]:
    """What keeps a pod spec from the "restricted" Pod Security profile (empty when it meets it)."""
    problems = [f"spec.{key}: true" for key in ("hostNetwork", "hostPID", "hostIPC") if pod.get(key)]
    for volume in pod.get("volumes") or []:
        kind = next((key for key in volume if key != "name"), None)
        if kind not in RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: type {kind} is not allowed")
    pod_context = pod.get("securityContext") or {}
    for container in (pod.get("initContainers") or []) + (pod.get("containers") or []):
        name, context = container["name"], container.get("securityContext") or {}

        def effective(key: str, context: dict[str, Any] = context) -> Any:
            return context[key] if key in context else pod_context.get(key)

        if context.get("privileged"):
            problems.append(f"container {name}: privileged")
        if context.get("allowPrivilegeEscalation") is not False:
            problems.append(f"container {name}: allowPrivilegeEscalation is not false")
        if effective("runAsNonRoot") is not True:
            problems.append(f"container {name}: runAsNonRoot is not true")
        if effective("runAsUser") == 0:
            problems.append(f"container {name}: runAsUser is 0")
        if (effective("seccompProfile") or {}).get("type") not in RESTRICTED_SECCOMP:
            problems.append(f"container {name}: seccompProfile is not RuntimeDefault or Localhost")
        capabilities = context.get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            problems.append(f"container {name}: capabilities do not drop ALL")
        added = set(capabilities.get("add") or []) - RESTRICTED_ADD_CAPABILITIES
        if added:
            problems.append(f"container {name}: adds capabilities {sorted(added)}")
        if any(port.get("hostPort") for port in container.get("ports") or []):
            problems.append(f"container {name}: uses a hostPort")
    return problems


def check_restricted(*, renders: Sequence[Path]) -> int:
    """Raise CheckFailed unless every pod of the renders meets "restricted"; the number of pod specs."""
    problems, count = [], 0
    for render in renders:
        for (kind, _, name), document in _objects(render).items():
            for pod in _pod_specs(document):
                count += 1
                problems += [
                    f"{render.name}: {kind}/{name}: {problem}" for problem in restricted_violations(pod)
                ]
    if problems:
        raise CheckFailed(f"restricted: {len(problems)} violations of Pod Security restricted", problems)
    if not count:
        raise CheckFailed("restricted: no pods in the renders")
    return count


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="charts.py", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    schema = commands.add_parser("schema", help="build every chart's values.schema.json")
    schema.add_argument("--check", action="store_true", help="fail instead of writing when one is stale")
    compare = commands.add_parser("compare", help="two renders hold the same objects")
    compare.add_argument("left", type=Path)
    compare.add_argument("right", type=Path)
    exit_codes = commands.add_parser("exit-codes", help="the packager Job's FailJob codes are the packager's")
    exit_codes.add_argument("render", type=Path)
    docs = commands.add_parser("docs", help="every value in the README's table has a description")
    docs.add_argument("readme", type=Path)
    restricted = commands.add_parser("restricted", help='every pod meets Pod Security "restricted"')
    restricted.add_argument("renders", type=Path, nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "schema":
            changed = write_schemas(check=args.check)
            done = "current" if args.check else f"{len(changed)} written"
            print(f"schema: {len(SCHEMA_TARGETS)} charts, {done}")
        elif args.command == "compare":
            count = compare_manifests(left=args.left, right=args.right)
            print(f"compare: {count} objects identical")
        elif args.command == "restricted":
            count = check_restricted(renders=args.renders)
            print(
                f"restricted: {count} pod specs in {len(args.renders)} renders meet Pod Security restricted"
            )
        elif args.command == "docs":
            print(f"docs: {check_docs(readme=args.readme)} values, each with a description")
        else:
            codes = check_exit_codes(render=args.render)
            print(f"exit-codes: FailJob on {codes}, as model_packager.errors.PERMANENT")
    except CheckFailed as failure:
        print(f"charts.py: {failure.summary}", file=sys.stderr)
        for line in failure.lines:
            print(f"  {line}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
