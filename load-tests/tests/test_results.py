"""Merging the workers' tallies of a level (loadtest.results): sums, the first example, every interval."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from loadtest import stats
from loadtest.results import Tally


def _answer(
    latencies_ms: list[float], *, slot: int, errors: dict[str, int], aborted: str | None = None
) -> dict[str, Any]:
    histogram = stats.encode(stats.histogram_of(np.array(latencies_ms) / 1000.0))
    return {
        "latency": histogram,
        "service": histogram,
        "lag": stats.encode(stats.histogram_of(np.zeros(1))),
        "intervals": {
            slot: (
                len(latencies_ms),
                sum(errors.values()),
                stats.encode(stats.histogram_of(np.array(latencies_ms) / 1000.0, stats.INTERVAL_DIGITS)),
            )
        },
        "requests": len(latencies_ms) + sum(errors.values()),
        "sent_in_window": len(latencies_ms),
        "answered_in_window": len(latencies_ms),
        "ok": len(latencies_ms),
        "errors": errors,
        "error_examples": {kind: f"{kind} from worker at slot {slot}" for kind in errors},
        "mismatches": 0,
        "mismatched_sentences": 0,
        "examples": [],
        "max_drift": 0.001 * (slot + 1),
        "cpu_seconds": 0.5,
        "aborted": aborted,
        "test_stalls": 0,
    }


def test_tallies_of_two_workers_add_up() -> None:
    first = _answer([1.0, 2.0, 3.0], slot=0, errors={"timeout": 1})
    second = _answer([10.0, 20.0], slot=1, errors={"timeout": 2, "unavailable": 1}, aborted="reset")
    tally = Tally.merged([first, second])
    assert (tally.requests, tally.ok, tally.answered_in_window) == (9, 5, 5)
    assert tally.errors == {"timeout": 3, "unavailable": 1}
    assert tally.error_examples["timeout"] == "timeout from worker at slot 0"
    assert tally.max_drift == 0.002
    assert tally.cpu_seconds == 1.0
    assert tally.aborted == "reset"
    assert stats.summary_ms(stats.merged(tally.latency))["p50"] == pytest.approx(3.0, rel=0.01)  # HDR buckets


def test_every_interval_is_a_row_and_late_answers_fold_into_the_last() -> None:
    tally = Tally.merged([_answer([1.0], slot=0, errors={}), _answer([5.0, 5.0], slot=3, errors={})])
    rows = tally.intervals_json(interval=1.0, duration=3.0, count=3)
    assert [r["throughput_rps"] for r in rows] == [1.0, 0.0, 2.0]
    p50s = [r["p50_ms"] for r in rows]
    assert p50s[1] is None
    assert [p50s[0], p50s[2]] == pytest.approx([1.0, 5.0], rel=0.01)
