"""PNG plots of a report (matplotlib, Agg backend): latency vs throughput per target, the latency
distribution of every level, and p99 per interval over each level."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from loadtest import stats
from loadtest.columns import level_name

DISTRIBUTION_TICKS = (0.0, 90.0, 99.0, 99.9, 99.99, 99.999)


def draw_plots(report: dict[str, Any], folder: Path) -> list[str]:
    """The three plots of a report, written to `folder`; their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    results = report["results"]
    targets = list(dict.fromkeys(r["target"] for r in results))
    return [
        _save(_latency_vs_throughput(plt, results, targets), folder, "latency_vs_throughput.png"),
        _save(_distributions(plt, results, targets), folder, "latency_distribution.png"),
        _save(_over_time(plt, results, targets), folder, "latency_over_time.png"),
    ]


def _latency_vs_throughput(plt: Any, results: list[dict[str, Any]], targets: list[str]) -> Any:
    colors = {target: f"C{i}" for i, target in enumerate(targets)}
    figure, axes = plt.subplots(figsize=(8, 5))
    for target in targets:
        rows = sorted(
            (r for r in results if r["target"] == target and r["ok"]), key=lambda r: r["throughput_rps"]
        )
        for percentile, style in (("p50", "o-"), ("p99", "s--"), ("p99.9", "^:")):
            axes.plot(
                [r["throughput_rps"] for r in rows],
                [r["latency_ms"][percentile] for r in rows],
                style,
                color=colors[target],
                label=f"{target} {percentile}",
            )
    axes.set(
        xlabel="throughput (requests/s)", ylabel="latency (ms)", yscale="log", title="Latency vs throughput"
    )
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize="small")
    return figure


def _distributions(plt: Any, results: list[dict[str, Any]], targets: list[str]) -> Any:
    figure, grid = plt.subplots(len(targets), 1, figsize=(8, 3.5 * len(targets)), squeeze=False)
    for axes, target in zip(grid[:, 0], targets, strict=True):
        widest = 0.0
        for result in (r for r in results if r["target"] == target and r["ok"]):
            points = stats.distribution_ms(stats.merged([result["histogram"]]))
            xs = [_nines(p) for p, _ in points]
            widest = max(widest, *xs)
            axes.plot(xs, [v for _, v in points], label=level_name(result))
        ticks = [t for t in DISTRIBUTION_TICKS if _nines(t) <= widest + 0.5]
        axes.set_xticks([_nines(t) for t in ticks], [f"{t:g}" for t in ticks])
        axes.set(
            xlabel="percentile", ylabel="latency (ms)", yscale="log", title=f"{target}: latency distribution"
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small", ncol=2)
    return figure


def _over_time(plt: Any, results: list[dict[str, Any]], targets: list[str]) -> Any:
    figure, grid = plt.subplots(len(targets), 1, figsize=(8, 3.5 * len(targets)), squeeze=False)
    for axes, target in zip(grid[:, 0], targets, strict=True):
        for result in (r for r in results if r["target"] == target):
            rows = [i for i in result["intervals"] if i["p99_ms"] is not None]
            axes.plot([i["start_s"] for i in rows], [i["p99_ms"] for i in rows], label=level_name(result))
        axes.set(
            xlabel="time in the level (s)", ylabel="p99 (ms)", yscale="log", title=f"{target}: p99 over time"
        )
        axes.grid(True, which="both", alpha=0.3)
        axes.legend(fontsize="small", ncol=2)
    return figure


def _nines(percentile: float) -> float:
    """The x position of a percentile on a 'number of nines' axis (0 → 0, 90 → 1, 99 → 2, ...)."""
    return -math.log10(max(1.0 - percentile / 100.0, 1e-6))


def _save(figure: Any, folder: Path, name: str) -> str:
    import matplotlib.pyplot as plt

    figure.tight_layout()
    tmp = folder / f".{name}.tmp.png"
    figure.savefig(tmp, dpi=100)
    plt.close(figure)
    tmp.replace(folder / name)
    return name
