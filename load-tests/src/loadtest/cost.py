"""Cost and hardware: throughput per core and per GPU, cost per million requests, and which target is cheaper.

Inputs are the run's `--price NAME=USD_PER_HOUR` and `--resources NAME=cpu:N,gpu:N` (report.json's
`config.prices` and `config.resources`): what serving the target costs per hour (the node, or the share
of it the pods take) and the CPUs and GPUs it has. There is no default price: without one the verdict
says "not comparable" and why.

Each target is judged at one level: the highest rate that met the SLO when the run searched for it
(`--slo-search`), otherwise the highest valid level within every threshold (p99 under `--slo-p99-ms`
when given, errors, mismatches, stalls). Cost per million requests = price per hour / (throughput x
3600) x 10^6. Whether the cheaper target's lead is beyond run-to-run noise is `loadtest compare`'s test
(Welch's t at 99 % on the per-interval throughputs), applied to requests per dollar: each interval's
throughput divided by the target's price.
"""

from __future__ import annotations

import math
from typing import Any

from loadtest.columns import level_name
from loadtest.compare import Change, compare_reports

Report = dict[str, Any]
Result = dict[str, Any]
#: The resources `--resources` takes, and what each is.
RESOURCE_KINDS = {"cpu": "CPU cores", "gpu": "GPUs"}
#: The cheaper target's lead must also reach this (as `loadtest compare --min-change`'s default).
MIN_CHANGE = 0.05


def parse_price(text: str) -> float:
    """USD per hour: a finite number above 0 (ValueError otherwise)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r} is not a price above 0 (USD per hour)")
    return value


def parse_resources(text: str) -> dict[str, float]:
    """`cpu:4,gpu:1` -> {"cpu": 4.0, "gpu": 1.0}; kinds cpu and gpu, each once, above 0 (ValueError)."""
    found: dict[str, float] = {}
    for part in text.split(","):
        kind, sep, amount = part.strip().partition(":")
        if not sep or kind not in RESOURCE_KINDS:
            raise ValueError(f"{part.strip()!r}: expected cpu:N or gpu:N")
        if kind in found:
            raise ValueError(f"{kind} given twice")
        try:
            value = float(amount)
        except ValueError:
            raise ValueError(f"{part.strip()!r}: {amount!r} is not a number") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"{part.strip()!r}: the amount must be a number above 0")
        found[kind] = value
    return found


def versus(a: Result, b: Result, *, min_change: float = MIN_CHANGE) -> dict[str, Change]:
    """b against a, two results of different targets (or levels), with `loadtest compare`'s tests:
    metric title (req/s, p50 ms, p99 ms, error rate, mismatch rate) -> Change (old = a, new = b)."""
    same = {"target": "-", "mode": "-", "value": 0.0, "arrival": None, "probe": False}
    changes = compare_reports(
        {"results": [{**a, **same}]}, {"results": [{**b, **same}]}, min_change=min_change
    )
    return {c.metric: c for c in changes}


def chosen_level(report: Report, target: str) -> tuple[Result | None, str]:
    """The level a target's cost is computed at, and how it was chosen (or why there is none)."""
    bound = report["config"].get("slo_p99_ms")
    search = (report.get("slo_search") or {}).get(target)
    results = [r for r in report["results"] if r["target"] == target]
    if search is not None:
        if search.get("max_rate") is None:
            return None, "no rate met the SLO"
        found = [r for r in results if r.get("probe") and r["value"] == search["max_rate"] and r["valid"]]
        basis = f"the highest rate that met the SLO (p99 ≤ {bound:g} ms; SLO search)"
        return (found[-1], basis) if found else (None, "the SLO search's best rate has no valid result")
    passing = [r for r in results if not r.get("probe") and r["valid"] and not r["breaches"]]
    if not passing:
        return None, "no valid level within the thresholds"
    if bound is None:
        basis = "the highest valid level within the thresholds (no --slo-p99-ms; no SLO search)"
    else:
        basis = f"the highest valid level within p99 ≤ {bound:g} ms and the other thresholds (no SLO search)"
    return max(passing, key=lambda r: r["value"]), basis


def target_cost(report: Report, target: str) -> dict[str, Any]:
    """Price, resources and, at the chosen level, throughput per core and per GPU and USD per million."""
    config = report["config"]
    price = (config.get("prices") or {}).get(target)
    resources = (config.get("resources") or {}).get(target) or {}
    result, basis = chosen_level(report, target)
    entry: dict[str, Any] = {
        "target": target, "price_per_hour": price, "resources": resources, "basis": basis,
        "level": None, "throughput_rps": None, "rps_per_core": None, "rps_per_gpu": None,
        "usd_per_million": None,
    }  # fmt: skip
    if result is None:
        return entry
    throughput = result["throughput_rps"]
    entry["level"] = level_name(result)
    entry["throughput_rps"] = throughput
    if resources.get("cpu"):
        entry["rps_per_core"] = round(throughput / resources["cpu"], 3)
    if resources.get("gpu"):
        entry["rps_per_gpu"] = round(throughput / resources["gpu"], 3)
    if price is not None and throughput > 0:
        entry["usd_per_million"] = round(price / (throughput * 3600) * 1e6, 6)
    return entry


def cost_summary(report: Report) -> dict[str, Any]:
    """Every target's cost entry and the verdict: {"comparable": bool, "line": str, ...}."""
    targets = [t["name"] for t in report["config"]["targets"]]
    entries = [target_cost(report, name) for name in targets]
    return {"targets": entries, "verdict": verdict(report, entries)}


def verdict(report: Report, entries: list[dict[str, Any]]) -> dict[str, Any]:
    def not_comparable(reason: str) -> dict[str, Any]:
        return {"comparable": False, "reason": reason, "line": f"not comparable: {reason}"}

    if len(entries) < 2:
        return not_comparable("one target only")
    if not any(e["price_per_hour"] is not None for e in entries):
        return not_comparable("no prices given (--price NAME=USD_PER_HOUR for each target)")
    for entry in entries:
        if entry["price_per_hour"] is None:
            return not_comparable(f"no --price for {entry['target']}")
    for entry in entries:
        if entry["usd_per_million"] is None:
            return not_comparable(f"{entry['target']}: {entry['basis']}")
    ranked = sorted(entries, key=lambda e: e["usd_per_million"])
    cheaper, dearer = ranked[0], ranked[1]
    ratio = dearer["usd_per_million"] / cheaper["usd_per_million"]
    noise = _noise(report, cheaper, dearer)
    slo = report["config"].get("slo_p99_ms") is not None
    meets = "meets the SLO" if slo else "stays within the thresholds"
    line = (
        f"{cheaper['target']} {meets} at the lower cost: {_usd(cheaper['usd_per_million'])} per million "
        f"requests against {_usd(dearer['usd_per_million'])} for {dearer['target']}, {ratio:.2f}x cheaper "
        f"({cheaper['level']} against {dearer['level']}, {cheaper['basis']}); {noise}"
    )
    return {
        "comparable": True, "cheaper": cheaper["target"], "dearer": dearer["target"],
        "ratio": round(ratio, 4), "noise": noise, "line": line,
    }  # fmt: skip


def _noise(report: Report, cheaper: dict[str, Any], dearer: dict[str, Any]) -> str:
    """Is the cheaper target's lead beyond run-to-run noise? compare's test on requests per dollar."""
    picked = {}
    for entry in (cheaper, dearer):
        result, _ = chosen_level(report, entry["target"])
        assert result is not None
        picked[entry["target"]] = _per_dollar(result, entry["price_per_hour"])
    change = versus(picked[dearer["target"]], picked[cheaper["target"]])["req/s"]
    if change.verdict == "unknown":
        return "run-to-run noise unknown (fewer than 3 intervals per level)"
    if change.verdict == "better":
        return "beyond run-to-run noise (Welch's t at 99 % on requests per dollar per interval)"
    return (
        f"within run-to-run noise or under {MIN_CHANGE:.0%} (Welch's t at 99 % on requests per dollar "
        "per interval)"
    )


def _per_dollar(result: Result, price: float) -> Result:
    """A result whose throughputs (overall and per interval) are requests per dollar-hour, as a figure."""
    return {
        **result,
        "throughput_rps": result["throughput_rps"] / price,
        "intervals": [{**i, "throughput_rps": i["throughput_rps"] / price} for i in result["intervals"]],
    }


def _usd(value: float) -> str:
    return f"${value:.4g}"
