"""A level's counts, typed: what each worker process sends back (`Tally.from_worker`, the one reader of the
workers' wire format), merged across workers by `+`, next to the fields they merge. runner.Run._merge turns
the merged tally into the level's entry of report.json; loadtest.columns says what of it is shown.
"""

from __future__ import annotations

import functools
import math
import operator
import statistics
from dataclasses import dataclass, field
from typing import Any

from loadtest import stats


@dataclass
class Slot:
    """One interval of the measured window: answers, failures, the latency histograms (encoded)."""

    answered: int = 0
    errors: int = 0
    histograms: list[str] = field(default_factory=list)

    def __add__(self, other: Slot) -> Slot:
        return Slot(
            self.answered + other.answered, self.errors + other.errors, self.histograms + other.histograms
        )


def _sum_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: a.get(k, 0) + b.get(k, 0) for k in {**a, **b}}


@dataclass
class Tally:
    """Counters and histograms of one level, from one worker or merged from several."""

    latency: list[str]  # encoded HDR histograms, merged when read
    service: list[str]
    lag: list[str]
    intervals: dict[int, Slot]
    requests: int
    sent_in_window: int
    answered_in_window: int
    ok: int
    errors: dict[str, int]
    error_examples: dict[str, str]
    mismatches: int
    mismatched_sentences: int
    examples: list[dict[str, Any]]
    max_drift: float
    cpu_seconds: float
    aborted: str | None
    test_stalls: int
    #: Answers not byte-identical to the reference beyond the engine's 65,536 kept distinct ones: not checked.
    unchecked: int = 0

    @classmethod
    def from_worker(cls, answer: dict[str, Any]) -> Tally:
        """A worker's `level` answer (worker.py: Level.result())."""
        return cls(
            latency=[answer["latency"]],
            service=[answer["service"]],
            lag=[answer["lag"]],
            intervals={int(k): Slot(a, e, [h]) for k, (a, e, h) in answer["intervals"].items()},
            requests=answer["requests"],
            sent_in_window=answer["sent_in_window"],
            answered_in_window=answer["answered_in_window"],
            ok=answer["ok"],
            errors=dict(answer["errors"]),
            error_examples=dict(answer["error_examples"]),
            mismatches=answer["mismatches"],
            mismatched_sentences=answer["mismatched_sentences"],
            examples=list(answer["examples"]),
            max_drift=answer["max_drift"],
            cpu_seconds=answer["cpu_seconds"],
            aborted=answer["aborted"],
            test_stalls=answer["test_stalls"],
            unchecked=answer.get("unchecked", 0),
        )

    def __add__(self, other: Tally) -> Tally:
        slots = {
            k: self.intervals.get(k, Slot()) + other.intervals.get(k, Slot())
            for k in {**self.intervals, **other.intervals}
        }
        return Tally(
            latency=self.latency + other.latency,
            service=self.service + other.service,
            lag=self.lag + other.lag,
            intervals=slots,
            requests=self.requests + other.requests,
            sent_in_window=self.sent_in_window + other.sent_in_window,
            answered_in_window=self.answered_in_window + other.answered_in_window,
            ok=self.ok + other.ok,
            errors=_sum_counts(self.errors, other.errors),
            error_examples={**other.error_examples, **self.error_examples},  # the first worker's example wins
            mismatches=self.mismatches + other.mismatches,
            mismatched_sentences=self.mismatched_sentences + other.mismatched_sentences,
            examples=self.examples + other.examples,
            max_drift=max(self.max_drift, other.max_drift),
            cpu_seconds=self.cpu_seconds + other.cpu_seconds,
            aborted=self.aborted or other.aborted,
            test_stalls=self.test_stalls + other.test_stalls,
            unchecked=self.unchecked + other.unchecked,
        )

    @classmethod
    def merged(cls, answers: list[dict[str, Any]]) -> Tally:
        return functools.reduce(operator.add, (cls.from_worker(a) for a in answers))

    def intervals_json(self, *, interval: float, duration: float, count: int) -> list[dict[str, Any]]:
        """One row per interval of the measured window, empty ones included (a server that answered nothing
        for a second shows as a zero, not as a missing second)."""
        slots = [Slot() for _ in range(count)]
        for index, slot in self.intervals.items():
            last = min(index, count - 1)  # a time a rounding step short of the window's end
            slots[last] += slot
        rows = []
        for index, slot in enumerate(slots):
            span = round(min(interval, duration - index * interval), 9)
            summary = stats.summary_ms(stats.merged(slot.histograms, stats.INTERVAL_DIGITS))
            rows.append(
                {
                    "start_s": round(index * interval, 3),
                    "duration_s": span,
                    "throughput_rps": round(slot.answered / span, 3),
                    "errors": slot.errors,
                    "p50_ms": summary["p50"],
                    "p99_ms": summary["p99"],
                }
            )
        return rows


def level_json(
    tally: Tally,
    *,
    target: str,
    value: float,
    workers: int,
    closed: bool,
    poisson: bool,
    duration: float,
    interval: float,
    batch_size: int,
    labels: list[str],
) -> dict[str, Any]:
    """A level's entry of report.json (docs/loadtest.md, "report.json"), from its merged tally."""
    latency = stats.merged(tally.latency)
    error_count = sum(tally.errors.values())
    requests, ok, answered, cpu = tally.requests, tally.ok, tally.answered_in_window, tally.cpu_seconds
    examples = [
        {**e, "expected": labels[e.pop("expected_top")], "got": labels[e.pop("got_top")]}
        for e in tally.examples[:5]
    ]
    count = interval_count(duration, interval)
    return {
        "target": target,
        "mode": "concurrency" if closed else "rate",
        "value": value,
        "arrival": None if closed else ("poisson" if poisson else "fixed"),
        "workers": workers,
        "duration_s": duration,
        "requests": requests,
        "ok": ok,
        "achieved_rate": round(tally.sent_in_window / duration, 3),
        "throughput_rps": round(answered / duration, 3),
        "sentences_per_s": round(answered * batch_size / duration, 3),
        "errors": error_count,
        "errors_by_kind": tally.errors,
        "error_examples": tally.error_examples,
        "error_rate": round(error_count / requests, 6) if requests else None,
        "mismatches": tally.mismatches,
        "mismatched_sentences": tally.mismatched_sentences,
        "mismatch_rate": round(tally.mismatches / ok, 6) if ok else None,
        "mismatch_examples": examples,
        "max_drift": tally.max_drift,
        "latency_ms": stats.summary_ms(latency),
        "service_ms": stats.summary_ms(stats.merged(tally.service)),
        "lag_ms": stats.summary_ms(stats.merged(tally.lag)),
        "lag_kind": "event loop" if closed else "schedule",
        "client_cpu": {
            "seconds": round(cpu, 3),
            "cores": round(cpu / duration, 3),
            "requests_per_cpu_second": round(answered / cpu, 1) if cpu > 0 else None,
        },
        "intervals": tally.intervals_json(interval=interval, duration=duration, count=count),
        "histogram": stats.encode(latency),
        "aborted": tally.aborted,
        "test_stalls": tally.test_stalls,
        "unchecked": tally.unchecked,
    }


#: The stall rule judges an interval only when the level's median throughput promises at least this many
#: answers in it: below that an empty interval is ordinary chance (Poisson arrivals averaging 5 per interval
#: leave one interval in 150 empty; averaging 20, fewer than 2 answers happen once in 23 million intervals).
STALL_MIN_ANSWERS = 20


def interval_count(duration: float, interval: float) -> int:
    """How many intervals cover the measured window (the last one shorter when they do not divide it)."""
    return max(1, math.ceil(duration / interval - 1e-9))


def find_stall(intervals: list[dict[str, Any]], *, share: float) -> dict[str, Any]:
    """The stall rule (docs/loadtest.md): an interval whose throughput is below `share` times the median
    throughput of the level's intervals that had any answer. An interval is judged only when that median
    promises at least STALL_MIN_ANSWERS answers in it; `share` 0 judges none."""
    answering = [row["throughput_rps"] for row in intervals if row["throughput_rps"] > 0]
    median = statistics.median(answering) if answering else None
    judged = [
        row
        for row in intervals
        if share > 0 and median is not None and median * row["duration_s"] >= STALL_MIN_ANSWERS
    ]
    stalled = [row["start_s"] for row in judged if row["throughput_rps"] < share * median]
    return {"median_rps": median, "judged_intervals": len(judged), "stalled": stalled}


def stall_breach(stall: dict[str, Any], intervals: list[dict[str, Any]], share: float) -> str:
    rows = [row for row in intervals if row["start_s"] in stall["stalled"]]
    seconds = sum(row["duration_s"] for row in rows)
    return (
        f"stall: throughput under --stall-share {share:g} x the median {stall['median_rps']:g} req/s in "
        f"{len(rows)} of {len(intervals)} intervals ({seconds:g} s), the first at {rows[0]['start_s']:g} s "
        f"with {rows[0]['throughput_rps']:g} req/s"
    )
