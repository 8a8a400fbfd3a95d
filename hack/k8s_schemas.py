"""Lay out JSON schemas for kubeconform, offline.

Kubernetes: the `kubernetes-validate` wheel ships `v<version>-local-strict/<kind>-<group>-<version>.json`
whose `$ref`s point at `/api/_definitions.json` under `$id: https://kubernetes.io/...`. As shipped,
kubeconform would try to download that URL (or, with -ignore-missing-schemas, silently pass
everything). This rewrites every reference to the sibling `_definitions.json` file, drops the `$id`,
and writes the folders in kubeconform's default layout `v<version>-standalone-strict/`.

CRDs: the prometheus-operator module ships the CustomResourceDefinitions that kube-prometheus-stack
installs. Their `openAPIV3Schema` becomes `<group>/<kind>_<version>.json` with
`additionalProperties: false` on every object that lists its properties (kubeconform's strict mode,
as openapi2jsonschema does it).

    python hack/k8s_schemas.py --out .tools/schemas --kube-versions 1.30.0 1.33.0 --crds DIR...
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

_REF = re.compile(r'"\$ref": "/api/_definitions\.json#')


def kubernetes(out: Path, version: str) -> Path:
    source = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{version}-local-strict"
    if not source.is_dir():
        raise SystemExit(f"k8s_schemas: kubernetes-validate has no schemas for Kubernetes {version}")
    target = out / f"v{version}-standalone-strict"
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for path in source.glob("*.json"):
        text = _REF.sub('"$ref": "_definitions.json#', path.read_text())
        schema = json.loads(text)
        schema.pop("$id", None)
        (tmp / path.name).write_text(json.dumps(schema))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target


def _strict(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


def crds(out: Path, files: list[Path]) -> list[Path]:
    written = []
    for path in files:
        crd = yaml.safe_load(path.read_text())
        group = crd["spec"]["group"]
        kind = crd["spec"]["names"]["kind"].lower()
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            target = out / group / f"{kind}_{version['name']}.json"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(schema))
            written.append(target)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--kube-versions", nargs="+", default=[])
    parser.add_argument("--crds", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    for version in args.kube_versions:
        print(f"k8s_schemas: {kubernetes(args.out, version)}")
    for target in crds(args.out, args.crds):
        print(f"k8s_schemas: {target}")


if __name__ == "__main__":
    main()
