"""HDR histograms (microseconds) and the figures the reports take from them.

Latencies are recorded in whole microseconds from 1 µs to 10 minutes with 3 significant digits (values
are exact to 0.1 %); the per-interval histograms use 2 digits to stay small. Workers send their
histograms encoded (HdrHistogram's compressed base64 form) and the runner adds them up.
"""

from __future__ import annotations

from collections.abc import Iterable

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000
DIGITS = 3
INTERVAL_DIGITS = 2
#: The percentiles every report gives, with their names in report.json.
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p99.9": 99.9}


def new_histogram(digits: int = DIGITS) -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, digits)


def record_us(histogram: HdrHistogram, seconds: float) -> None:
    """Record a duration given in seconds; values beyond the range are clamped to it."""
    histogram.record_value(min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US))


def encode(histogram: HdrHistogram) -> str:
    return histogram.encode().decode("ascii")


def merged(encoded: Iterable[str], digits: int = DIGITS) -> HdrHistogram:
    total = new_histogram(digits)
    for item in encoded:
        total.add(HdrHistogram.decode(item.encode("ascii")))
    return total


def summary_ms(histogram: HdrHistogram) -> dict[str, float | int | None]:
    """count, min, mean, the report's percentiles and max in ms (None when nothing was recorded)."""
    count = histogram.get_total_count()
    figures: dict[str, float | int | None] = {"count": count}
    if count == 0:
        figures.update(dict.fromkeys(["min", "mean", *PERCENTILES, "max"]))
        return figures
    figures["min"] = _ms(histogram.get_min_value())
    figures["mean"] = _ms(histogram.get_mean_value())
    for name, percentile in PERCENTILES.items():
        figures[name] = _ms(histogram.get_value_at_percentile(percentile))
    figures["max"] = _ms(histogram.get_max_value())
    return figures


def distribution_ms(histogram: HdrHistogram, *, ticks_per_half: int = 5) -> list[tuple[float, float]]:
    """(percentile, latency ms) pairs for a percentile-distribution plot (HdrHistogram's classic view)."""
    if histogram.get_total_count() == 0:
        return []
    # Beyond 1 - 1/count the data says nothing more: stop there rather than draw a flat line to 100 %.
    last = 100.0 * (1.0 - 1.0 / histogram.get_total_count())
    points = []
    for item in histogram.get_percentile_iterator(ticks_per_half):
        percentile = float(item.percentile_level_iterated_to)
        points.append((min(percentile, last), _ms(item.value_iterated_to)))
        if percentile >= last:
            break
    return points


def _ms(microseconds: float) -> float:
    return round(microseconds / 1000.0, 3)
