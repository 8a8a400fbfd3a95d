"""Render the monitoring subchart with helm and pull out what the checks need.

    render.py manifests OUT.yaml     every rendered manifest
    render.py rules OUT.yaml         the PrometheusRule's groups, as a Prometheus rule file
    render.py dashboards OUT_DIR     every dashboard ConfigMap's JSON, one file per dashboard
    render.py expressions OUT.json   every PromQL expression: rules, dashboard targets and variables,
                                     autoscaling queries (with their templating filled in)

The chart is rendered through the umbrella (`--chart`, default charts/emotion-serving), the way users
install it, with `--api-versions monitoring.coreos.com/v1` so the operator's resources render, and
monitoring.enabled=true.
`--set key=value` passes values (umbrella paths, e.g. monitoring.rules.rateWindow=10s).
Exit codes: 0 done, 2 usage, 3 the chart did not render or held nothing to extract.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from devstack.chart import ChartError, Render

REPO = Path(__file__).resolve().parents[2]
UMBRELLA = REPO / "charts" / "emotion-serving"
RELEASE = "es"
NAMESPACE = "emotion"
SIDECAR_LABEL = "grafana_dashboard"

#: What Grafana substitutes for the dashboards' variables before a query reaches Prometheus.
GRAFANA_VARIABLES = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "${namespace}": NAMESPACE,
    "$namespace": NAMESPACE,
    "${release}": RELEASE,
    "$release": RELEASE,
    "${job}": f"{RELEASE}-ovms",
    "$job": f"{RELEASE}-ovms",
    "$model": "emotion",
    "${model}": "emotion",
}
#: prometheus-adapter fills these into metricsQuery (kubernetes-sigs/prometheus-adapter docs/config.md).
ADAPTER_VARIABLES = {
    "<<.Series>>": "SERIES",
    "<<.LabelMatchers>>": f'namespace="{NAMESPACE}", pod=~"x|y"',
    "<<.GroupBy>>": "pod",
}


class RenderError(Exception):
    """The chart did not render, or held nothing of the asked kind."""


def render(*, chart: Path = UMBRELLA, sets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The chart's manifests as rendered by `helm template` (release es, namespace emotion)."""
    try:
        rendered = Render.template(
            release=RELEASE, namespace=NAMESPACE, chart=chart, set_values=["monitoring.enabled=true", *sets]
        )
    except ChartError as err:
        raise RenderError(str(err)) from None
    return rendered.docs


def rule_groups(docs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rule groups of every PrometheusRule, as a Prometheus rule file holds them."""
    groups = [g for d in docs if d.get("kind") == "PrometheusRule" for g in d["spec"]["groups"]]
    if not groups:
        raise RenderError("no PrometheusRule in the rendered chart")
    return groups


def dashboards(docs: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """file name -> dashboard JSON of every ConfigMap the Grafana sidecar loads (default label)."""
    found: dict[str, dict[str, Any]] = {}
    for doc in docs:
        labels = doc.get("metadata", {}).get("labels") or {}
        if doc.get("kind") != "ConfigMap" or labels.get(SIDECAR_LABEL) != "1":
            continue
        for key, text in (doc.get("data") or {}).items():
            if key.endswith(".json"):
                found[key] = json.loads(text)
    if not found:
        raise RenderError("no dashboard ConfigMap in the rendered chart")
    return found


def dashboard_queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable, Grafana variables filled in."""
    queries: list[tuple[str, str]] = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel.get('title')!r}", target["expr"]))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append((f"variable {variable['name']!r}", _label_values_selector(text)))
    return [(where, fill(expr, GRAFANA_VARIABLES)) for where, expr in queries]


def _label_values_selector(text: str) -> str:
    """Grafana's label_values(SELECTOR, label) asks Prometheus for SELECTOR's series; check SELECTOR."""
    if text.startswith("label_values(") and text.endswith(")"):
        return text[len("label_values(") : -1].rsplit(",", 1)[0].strip()
    return text


def fill(text: str, variables: dict[str, str]) -> str:
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(name, variables[name])
    return text


def autoscaling_queries(docs: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """(where, PromQL) of the prometheus-adapter rules and KEDA triggers, if rendered."""
    queries: list[tuple[str, str]] = []
    for doc in docs:
        data = doc.get("data") or {} if doc.get("kind") == "ConfigMap" else {}
        if "config.yaml" in data:
            for rule in yaml.safe_load(data["config.yaml"])["rules"]:
                series = rule["seriesQuery"]
                metric = series.split("{", 1)[0]
                queries.append((f"adapter {rule['name']['as']} seriesQuery", series))
                variables = dict(ADAPTER_VARIABLES, **{"<<.Series>>": metric})
                queries.append((f"adapter {rule['name']['as']}", fill(rule["metricsQuery"], variables)))
        if "keda-triggers.yaml" in data:
            for trigger in yaml.safe_load(data["keda-triggers.yaml"]):
                queries.append((f"keda {trigger['name']}", trigger["metadata"]["query"]))
    return queries


def expressions(docs: Sequence[dict[str, Any]]) -> list[dict[str, str]]:
    found = [
        {"where": f"rule {r.get('record') or r.get('alert')}", "expr": str(r["expr"])}
        for g in rule_groups(docs)
        for r in g["rules"]
    ]
    for name, dashboard in dashboards(docs).items():
        found += [{"where": f"{name}: {where}", "expr": e} for where, e in dashboard_queries(dashboard)]
    found += [{"where": where, "expr": e} for where, e in autoscaling_queries(docs)]
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=["manifests", "rules", "dashboards", "expressions"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--chart", type=Path, default=UMBRELLA)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        docs = render(chart=args.chart, sets=args.sets)
        if args.what == "manifests":
            args.out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        elif args.what == "rules":
            args.out.write_text(yaml.safe_dump({"groups": rule_groups(docs)}, sort_keys=False))
        elif args.what == "dashboards":
            args.out.mkdir(parents=True, exist_ok=True)
            for name, dashboard in dashboards(docs).items():
                (args.out / name).write_text(json.dumps(dashboard, indent=1))
        else:
            args.out.write_text(json.dumps(expressions(docs), indent=1))
    except RenderError as err:
        print(f"render.py: {err}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
