"""Checks of the monitoring subchart's rendered rules and dashboards (run by mk/monitoring.mk).

    check.py coverage RULES.yaml TEST.yaml...
        every alert has a promtool test where it fires and one where it stays silent, and every
        recording rule is evaluated by a promql_expr_test with expected samples.
    check.py queries --names-tool BIN [--chart DIR] [--set KEY=VALUE] [--series-from TEST.yaml...]
        every PromQL expression of the rendered chart (rules, dashboard panels and variables, autoscaling
        queries) parses in this Prometheus (promtool) and in Prometheus's current parser (BIN, built
        from tests/monitoring/promql-names), and selects only metrics that the servers export
        (known_metrics.yaml) or the recording rules define; so do the synthetic series of the promtool
        tests. Every dashboard takes its data source from a variable.

Exit codes: 0 all good, 1 a check failed (one line per problem on stderr), 2 usage, 3 render failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import render
import yaml

from devstack.paths import tool

HERE = Path(__file__).resolve().parent
SUFFIXES = {
    "counter": [""],
    "gauge": [""],
    "histogram": ["_bucket", "_sum", "_count"],
    "summary": ["", "_sum", "_count"],
}


def known_metrics(path: Path = HERE / "known_metrics.yaml") -> set[str]:
    exported = yaml.safe_load(path.read_text())
    return {
        name + suffix
        for metrics in exported.values()
        for name, kind in metrics.items()
        for suffix in SUFFIXES[kind]
    }


def rules_of(groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [rule for group in groups for rule in group["rules"]]


def coverage(rules: Sequence[dict[str, Any]], tests: Sequence[dict[str, Any]]) -> list[str]:
    """Problems: alerts without a firing and a silent case, records no test evaluates."""
    fired: set[str] = set()
    silent: set[str] = set()
    evaluated: set[str] = set()
    for test_file in tests:
        for group in test_file.get("tests", []):
            for case in group.get("alert_rule_test", []):
                (fired if case.get("exp_alerts") else silent).add(case["alertname"])
            for case in group.get("promql_expr_test", []):
                if case.get("exp_samples"):
                    evaluated.update(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", case["expr"]))
    problems = []
    for rule in rules:
        if "alert" in rule:
            name = rule["alert"]
            if name not in fired:
                problems.append(f"alert {name}: no test where it fires")
            if name not in silent:
                problems.append(f"alert {name}: no test where it stays silent")
        elif rule["record"] not in evaluated:
            problems.append(f"record {rule['record']}: no promql_expr_test evaluates it")
    return sorted(set(problems))


def promtool_parse(exprs: Sequence[str]) -> dict[int, str]:
    """Parse errors of this Prometheus (promtool check rules), by expression index."""
    rules = [{"record": f"check:expr_{i}", "expr": e} for i, e in enumerate(exprs)]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}, handle)
        handle.flush()
        proc = subprocess.run(
            [str(tool("promtool")), "check", "rules", handle.name],
            capture_output=True,
            text=True,
            check=False,
        )
    errors = {int(m[1]): m[2] for m in re.finditer(r'"check:expr_(\d+)": (.*)', proc.stdout + proc.stderr)}
    if proc.returncode != 0 and not errors:
        raise RuntimeError(f"promtool check rules failed without naming an expression: {proc.stderr.strip()}")
    return errors


def selected_names(tool: Path, exprs: Sequence[str]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(tool)], input=json.dumps(list(exprs)), capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout)


def dashboard_problems(dashboards: dict[str, dict[str, Any]]) -> list[str]:
    """Data source from a `datasource` variable everywhere; no import-time ${DS_*} inputs."""
    problems = []
    for name, dashboard in dashboards.items():
        text = json.dumps(dashboard)
        if "__inputs" in dashboard or "${DS_" in text:
            problems.append(f"{name}: uses import-time data source inputs")
        variables = {v["name"]: v for v in dashboard.get("templating", {}).get("list", [])}
        if variables.get("datasource", {}).get("type") != "datasource":
            problems.append(f"{name}: no `datasource` variable of type datasource")
        for panel in dashboard.get("panels", []):
            sources = [panel.get("datasource")] + [t.get("datasource") for t in panel.get("targets", [])]
            if any(s != {"type": "prometheus", "uid": "${datasource}"} for s in sources):
                problems.append(f"{name}: panel {panel.get('title')!r} does not use the datasource variable")
    return problems


def series_names(test_files: Sequence[Path]) -> list[tuple[str, str]]:
    return [
        (f"{path.name}: input series", series["series"])
        for path in test_files
        for group in yaml.safe_load(path.read_text()).get("tests", [])
        for series in group.get("input_series", [])
    ]


def queries(
    *, chart: Path, names_tool: Path, series_from: Sequence[Path], sets: Sequence[str] = ()
) -> tuple[list[str], int]:
    docs = render.render(chart=chart, sets=sets)
    groups = render.rule_groups(docs)
    records = {rule["record"] for rule in rules_of(groups) if "record" in rule}
    allowed = known_metrics() | records
    found = [(e["where"], e["expr"]) for e in render.expressions(docs)] + series_names(series_from)
    exprs = [expr for _, expr in found]
    problems = [
        f"{found[i][0]}: promtool: {error}: {found[i][1]}" for i, error in promtool_parse(exprs).items()
    ]
    for (where, expr), result in zip(found, selected_names(names_tool, exprs), strict=True):
        if result.get("error"):
            problems.append(f"{where}: does not parse: {result['error']}: {expr}")
        for name in result["names"]:
            if name not in allowed:
                problems.append(f"{where}: unknown metric {name!r}: {expr}")
    problems += dashboard_problems(render.dashboards(docs))
    return problems, len(found)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cov = sub.add_parser("coverage")
    cov.add_argument("rules", type=Path)
    cov.add_argument("tests", type=Path, nargs="+")
    qry = sub.add_parser("queries")
    qry.add_argument("--names-tool", type=Path, required=True)
    qry.add_argument("--chart", type=Path, default=render.UMBRELLA)
    qry.add_argument("--series-from", type=Path, nargs="*", default=[])
    qry.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        if args.command == "coverage":
            rules = rules_of(yaml.safe_load(args.rules.read_text())["groups"])
            problems = coverage(rules, [yaml.safe_load(p.read_text()) for p in args.tests])
            alerts = sum("alert" in r for r in rules)
            summary = f"{alerts} alerts and {len(rules) - alerts} records covered"
        else:
            problems, count = queries(
                chart=args.chart, names_tool=args.names_tool, series_from=args.series_from, sets=args.sets
            )
            summary = f"{count} expressions parse and select only known metrics; dashboards use $datasource"
    except render.RenderError as err:
        print(f"check.py: {err}", file=sys.stderr)
        return 3
    for problem in problems:
        print(f"check.py: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"check.py: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
