"""report.json (for machines), report.md (a side-by-side table for people) and the PNG plots.

Every file is written to a temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from loadtest.columns import COLUMNS, NONE, level_name, ms
from loadtest.cost import RESOURCE_KINDS, cost_summary

REPORT_JSON = "report.json"
#: The client's network path to the servers (`run --path`), as the report states it.
PATHS = {
    "direct": "direct (the targets as given)",
    "in-cluster": "in the cluster: a Job next to the servers, through their Services",
    "port-forward": "tunnelled: kubectl port-forward through the API server and the kubelet, which the "
    "latencies include (for checking a release, not for absolute figures)",
}
REPORT_MD = "report.md"
PLOTS = "plots"


def write_report(report: dict[str, Any], output: Path, *, final: bool) -> None:
    """report.json and report.md always; the plots once the run is over (they take a second or two)."""
    output.mkdir(parents=True, exist_ok=True)
    plots: list[str] = []
    if final and report["results"]:
        from loadtest.plots import draw_plots

        plots = draw_plots(report, output / PLOTS)
    report["plots"] = [f"{PLOTS}/{name}" for name in plots]
    report["cost"] = cost_summary(report)
    write_atomically(output / REPORT_JSON, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    write_atomically(output / REPORT_MD, markdown(report))


def write_atomically(path: Path, text: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode() if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_report(path: Path) -> dict[str, Any]:
    """A report.json (or the folder holding one)."""
    from emotion_contract.errors import BadInput

    file = path / REPORT_JSON if path.is_dir() else path
    try:
        report = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{file}: no such report") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"{file}: not a readable report ({err})") from None
    if not isinstance(report, dict) or report.get("schema") != "loadtest-report/1":
        raise BadInput(f"{file}: not a loadtest report (schema loadtest-report/1)")
    return report


def markdown(report: dict[str, Any]) -> str:
    config = report["config"]
    package = report["inputs"]["package"]
    corpus = report["inputs"]["corpus"]
    targets = ", ".join(f"{t['name']} ({t['url']})" for t in config["targets"])
    if config["mode"] == "concurrency":
        mode = "closed loop, concurrency " + ", ".join(f"{v:g}" for v in config["levels"])
    else:
        mode = (
            f"open loop ({config['arrival']} arrivals, at most {config['max_in_flight']} in flight), rates "
        )
        mode += ", ".join(f"{v:g}/s" for v in config["levels"])
        if config["slo_search"]:
            mode = f"SLO search from {config['levels'][0]:g}/s (open loop, {config['arrival']} arrivals)"
    lines = [
        f"# Load test: {targets}",
        "",
        *_verdict(report),
        f"- status: **{report['status']}** (exit code {report['exit_code']}), {report['started']} to "
        f"{report['finished'] or 'running'}",
        f"- model: `{config['model']}` over {config['protocol']}, batch {config['batch_size']}, from package "
        f"{package['name']} v{package['version']} ({package['source']})",
        f"- load: {mode}; {config['duration']:g} s measured after {config['warmup']:g} s warmup, "
        f"{config['workers']} worker processes",
        f"- corpus: {corpus['source']}, {corpus['sentences']} sentences; "
        f"answers checked against the package's ONNX model (tolerance {config['tolerance']:g})",
        f"- client: {report['client']['host']}, {report['client']['cpus']} CPUs; "
        f"path: {PATHS[config.get('path', 'direct')]}",
        "",
    ]
    if report["problems"]:
        lines += ["## Problems", "", *[f"- {p}" for p in report["problems"]], ""]
    lines += _results_table(report)
    if report.get("slo_search"):
        lines += _search_table(report)
    lines += _cost_table(report)
    lines += _errors_and_mismatches(report)
    if report.get("plots"):
        lines += ["## Plots", "", *[f"![{Path(p).stem.replace('_', ' ')}]({p})" for p in report["plots"]], ""]
    lines += [
        "Latency: in open loop from each request's intended send time (queueing in the client counts, no "
        "coordinated omission); in closed loop from the send. Service time: from the actual send. "
        "Server queue/compute: mean per request from the server's /metrics over the level.",
        "",
    ]
    return "\n".join(lines)


def _results_table(report: dict[str, Any]) -> list[str]:
    lines = [
        "## Results",
        "",
        "| level | target | " + " | ".join(c.title for c in COLUMNS) + " | valid |",
        "|---|---|" + "---:|" * len(COLUMNS) + "---|",
    ]
    for result in report["results"]:
        valid = "yes" if result["valid"] else f"**no**: {result['invalid_reason']}"
        name = level_name(result) + (" (probe)" if result.get("probe") else "")
        figures = " | ".join(c.text(result) for c in COLUMNS)
        lines.append(f"| {name} | {result['target']} | {figures} | {valid} |")
    return [*lines, ""]


def _search_table(report: dict[str, Any]) -> list[str]:
    bound = report["config"]["slo_p99_ms"]
    lines = [
        "## SLO search",
        "",
        f"| target | highest rate with p99 ≤ {bound:g} ms | first failing rate | probes (rate: p99 ms) |",
        "|---|---:|---:|---|",
    ]
    for name, search in report["slo_search"].items():
        probes = ", ".join(f"{p['rate']:g}: {ms(p['p99_ms'])}" for p in search["probes"])
        best = "none" if search["max_rate"] is None else f"{search['max_rate']:g}/s"
        failing = NONE if search.get("first_failing_rate") is None else f"{search['first_failing_rate']:g}/s"
        lines.append(f"| {name} | {best} | {failing} | {probes} |")
    return [*lines, ""]


def _errors_and_mismatches(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for result in report["results"]:
        where = f"{result['target']} {level_name(result)}"
        for kind, count in result["errors_by_kind"].items():
            lines.append(f"- {where}: {count} x `{kind}`: {result['error_examples'].get(kind, '')}")
        for example in result["mismatch_examples"]:
            lines.append(
                f"- {where}: mismatch on sentence {example['sentence']} («{example['text']}»): "
                f"{example['got']} instead of {example['expected']}, drift {example['drift']:g}"
            )
    return ["## Errors and mismatches", "", *lines, ""] if lines else []


def _cost(report: dict[str, Any]) -> dict[str, Any]:
    return report.get("cost") or cost_summary(report)


def _verdict(report: dict[str, Any]) -> list[str]:
    """The first lines: which target serves at the lower cost, by how much, beyond noise or not."""
    verdict = _cost(report)["verdict"]
    return [f"**Verdict (cost)**: {verdict['line']}.", ""]


def _cost_table(report: dict[str, Any]) -> list[str]:
    entries = _cost(report)["targets"]
    lines = [
        "## Cost and hardware",
        "",
        "Per target at the level named (loadtest.cost): the price per hour from `--price`, the CPUs and GPUs "
        "from `--resources`, and from them throughput per core and per GPU and the cost per million requests "
        "(price / (req/s x 3600) x 10^6).",
        "",
        "| target | level | chosen as | USD / hour | "
        + " | ".join(RESOURCE_KINDS.values())
        + " | req/s | req/s per core | req/s per GPU | USD per million requests |",
        "|---|---|---|---:|" + "---:|" * len(RESOURCE_KINDS) + "---:|---:|---:|---:|",
    ]
    for e in entries:
        resources = " | ".join(_figure(e["resources"].get(kind)) for kind in RESOURCE_KINDS)
        lines.append(
            f"| {e['target']} | {e['level'] or NONE} | {e['basis']} | {_figure(e['price_per_hour'])} | "
            f"{resources} | {_figure(e['throughput_rps'])} | {_figure(e['rps_per_core'])} | "
            f"{_figure(e['rps_per_gpu'])} | {_figure(e['usd_per_million'])} |"
        )
    return [*lines, ""]


def _figure(value: float | None) -> str:
    return NONE if value is None else f"{value:.4g}"
