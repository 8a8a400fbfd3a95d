"""The one specification of what a level's result shows: report.md's table, the plots' labels, `compare`'s
measures and the demo's summary line all read COLUMNS (and `level_name`), so a new figure is one entry here.

A result is a level's entry of report.json (`results[]`, written by runner.Run._merge).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from loadtest.stats import PERCENTILES

NONE = "-"
Result = dict[str, Any]


def level_name(result: Result) -> str:
    """`c=4` (closed loop, 4 users), `300/s` or `300/s poisson` (open loop)."""
    if result["mode"] == "concurrency":
        return f"c={result['value']:g}"
    return f"{result['value']:g}/s" + (" poisson" if result.get("arrival") == "poisson" else "")


def ms(value: float | None) -> str:
    return NONE if value is None else f"{value:.2f}"


@dataclass(frozen=True)
class Column:
    title: str
    value: Callable[[Result], Any]
    text: Callable[[Result], str]
    #: The per-interval figure `compare` tests for noise (a key of results[].intervals[]), if any.
    interval: str | None = None
    higher_better: bool = False
    #: In the demo's one-line summary, under this short name.
    summary: str | None = None


def _latency(percentile: str) -> Column:
    def value(r: Result) -> float | None:
        return r["latency_ms"][percentile]

    return Column(
        title=f"{percentile} ms",
        value=value,
        text=lambda r: ms(value(r)),
        interval=f"{percentile}_ms" if percentile in ("p50", "p99") else None,
        summary=percentile if percentile in ("p50", "p99") else None,
    )


def _server(r: Result) -> str:
    server = r.get("server") or {}
    return f"{ms(server.get('queue_ms'))} / {ms(server.get('compute_ms'))}" if server else NONE


COLUMNS: tuple[Column, ...] = (
    Column(
        "req/s",
        lambda r: r["throughput_rps"],
        lambda r: f"{r['throughput_rps']:.1f}",
        interval="throughput_rps",
        higher_better=True,
        summary="req/s",
    ),
    *(_latency(p) for p in PERCENTILES),
    Column("service p99", lambda r: r["service_ms"]["p99"], lambda r: ms(r["service_ms"]["p99"])),
    Column("errors", lambda r: r["errors"], lambda r: str(r["errors"]), summary="errors"),
    Column("mismatches", lambda r: r["mismatches"], lambda r: str(r["mismatches"]), summary="mismatches"),
    Column("server queue / compute ms", lambda r: r.get("server"), _server),
    Column("client cores", lambda r: r["client_cpu"]["cores"], lambda r: f"{r['client_cpu']['cores']:.2f}"),
)

#: What `compare` tests: the columns with a per-interval series.
MEASURES = tuple(c for c in COLUMNS if c.interval)


def summary_line(result: Result) -> str:
    """`triton c=4: 812.3 req/s, p50 4.21 ms, p99 9.87 ms, errors 0, mismatches 0` (the demo's summary)."""
    parts = []
    for column in COLUMNS:
        if column.summary is None:
            continue
        unit = " ms" if column.title.endswith(" ms") else ""
        parts.append(
            f"{column.text(result)} {column.summary}" if column.summary == "req/s"
            else f"{column.summary} {column.text(result)}{unit}"
        )  # fmt: skip
    return f"{result['target']} {level_name(result)}: " + ", ".join(parts)
