"""`loadtest compare OLD NEW`: is a change between two runs beyond run-to-run noise?

Levels are matched by target, mode and value. For throughput, p50 and p99 the noise comes from the
runs themselves: each level's per-interval figures (one per --interval) are samples, and the difference
of the two means is judged with Welch's t test at 99 % confidence (two-sided; the critical value for the
Welch-Satterthwaite degrees of freedom, so that a few intervals need a large difference). Error and
mismatch rates are compared as proportions (two-proportion z test, 99 %). A change also has to move the
level's overall figure by at least `min_change` (default 5 %) to count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from loadtest.columns import MEASURES, level_name

#: Fewer intervals than this on either side: the noise cannot be estimated.
MIN_INTERVALS = 3
#: Two-sided 99 % critical values of Student's t for 1..30 degrees of freedom (standard tables); beyond 30,
#: the normal distribution's 2.576.
T_CRITICAL_99 = (
    63.657, 9.925, 5.841, 4.604, 4.032, 3.707, 3.499, 3.355, 3.250, 3.169,
    3.106, 3.055, 3.012, 2.977, 2.947, 2.921, 2.898, 2.878, 2.861, 2.845,
    2.831, 2.819, 2.807, 2.797, 2.787, 2.779, 2.771, 2.763, 2.756, 2.750,
)  # fmt: skip
Z_CRITICAL_99 = 2.576


@dataclass(frozen=True)
class Change:
    target: str
    level: str
    metric: str
    old: float | None
    new: float | None
    relative: float | None
    statistic: float | None  # t or z
    critical: float | None  # what |statistic| must reach
    verdict: str  # better, worse, same (within noise), unknown


# metric -> (overall figure, per-interval key, higher is better)
def compare_reports(old: dict[str, Any], new: dict[str, Any], *, min_change: float) -> list[Change]:
    def key(result: dict[str, Any]) -> tuple[str, str, float, Any]:
        return (result["target"], result["mode"], float(result["value"]), result.get("arrival"))

    olds = {key(r): r for r in old["results"] if not r.get("probe")}
    bounds = {"min_change": min_change}
    changes = []
    for result in new["results"]:
        if result.get("probe") or key(result) not in olds:
            continue
        before = olds[key(result)]
        where = (result["target"], level_name(result))
        for column in MEASURES:
            per_interval = column.interval
            a = [i[per_interval] for i in before["intervals"] if i[per_interval] is not None]
            b = [i[per_interval] for i in result["intervals"] if i[per_interval] is not None]
            statistic = _welch(a, b)
            old_figure, new_figure = column.value(before), column.value(result)
            changes.append(
                _judge(
                    where, column.title, old_figure, new_figure, statistic, **bounds,
                    higher_better=column.higher_better,
                )
            )  # fmt: skip
        for metric, count, total in (
            ("error rate", "errors", "requests"),
            ("mismatch rate", "mismatches", "ok"),
        ):
            statistic = _proportions(before[count], before[total], result[count], result[total])
            old_rate = before[count] / before[total] if before[total] else None
            new_rate = result[count] / result[total] if result[total] else None
            changes.append(
                _judge(where, metric, old_rate, new_rate, statistic, **bounds, higher_better=False)
            )
    return changes


def unmatched(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    def names(report: dict[str, Any]) -> set[str]:
        return {f"{r['target']} {level_name(r)}" for r in report["results"] if not r.get("probe")}

    only_old, only_new = names(old) - names(new), names(new) - names(old)
    return [f"only in OLD: {n}" for n in sorted(only_old)] + [f"only in NEW: {n}" for n in sorted(only_new)]


def _judge(
    where: tuple[str, str],
    metric: str,
    old: float | None,
    new: float | None,
    test: tuple[float, float] | None,
    *,
    higher_better: bool,
    min_change: float,
) -> Change:
    if old is None or new is None or test is None:
        return Change(*where, metric, old, new, None, None, None, "unknown")
    statistic, critical = test
    relative = (new - old) / abs(old) if old else (0.0 if new == 0 else math.inf)
    verdict = "same"
    if abs(statistic) >= critical and abs(relative) >= min_change:
        improved = (new > old) == higher_better
        verdict = "better" if improved else "worse"
    return Change(*where, metric, old, new, relative, statistic, critical, verdict)


def _welch(a: list[float], b: list[float]) -> tuple[float, float] | None:
    """Welch's t for the difference of the means of b and a, and its 99 % critical value (None with too few
    samples)."""
    if len(a) < MIN_INTERVALS or len(b) < MIN_INTERVALS:
        return None
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    share_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1) / len(a)
    share_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1) / len(b)
    spread = math.sqrt(share_a + share_b)
    if spread == 0:
        return (0.0 if mean_a == mean_b else math.copysign(math.inf, mean_b - mean_a)), T_CRITICAL_99[0]
    freedom = (share_a + share_b) ** 2 / (share_a**2 / (len(a) - 1) + share_b**2 / (len(b) - 1))
    degrees = max(1, math.floor(freedom))
    critical = T_CRITICAL_99[degrees - 1] if degrees <= len(T_CRITICAL_99) else Z_CRITICAL_99
    return (mean_b - mean_a) / spread, critical


def _proportions(count_a: int, total_a: int, count_b: int, total_b: int) -> tuple[float, float] | None:
    """The two-proportion z statistic and its 99 % critical value."""
    if not total_a or not total_b:
        return None
    pooled = (count_a + count_b) / (total_a + total_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / total_a + 1 / total_b))
    difference = count_b / total_b - count_a / total_a
    return (difference / spread if spread else 0.0), Z_CRITICAL_99


def markdown(changes: list[Change], notes: list[str]) -> str:
    lines = [
        "| target | level | metric | old | new | change | statistic (99 % bound) | verdict |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for c in changes:
        relative = "-" if c.relative is None else f"{c.relative:+.1%}"
        statistic = "-" if c.statistic is None else f"{c.statistic:+.1f} ({c.critical:.2f})"
        verdict = f"**{c.verdict}**" if c.verdict == "worse" else c.verdict
        lines.append(
            f"| {c.target} | {c.level} | {c.metric} | {_figure(c.old)} | {_figure(c.new)} | {relative} | "
            f"{statistic} | {verdict} |"
        )
    return "\n".join([*lines, *(f"\n{n}" for n in notes)]) + "\n"


def _figure(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}"
