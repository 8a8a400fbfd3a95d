"""loadtest.cost on constructed report dicts: the level each target is judged at, per-core and per-GPU
throughput, cost per million requests, the verdict and its noise test; the flags' exit codes."""

from __future__ import annotations

from typing import Any

import pytest

from loadtest import cli
from loadtest.cost import cost_summary, parse_price, parse_resources, target_cost, versus
from loadtest.report import markdown


def result(
    target: str, value: float, throughputs: list[float], *, probe: bool = False, valid: bool = True,
    breaches: tuple[str, ...] = (), mode: str = "concurrency",
) -> dict[str, Any]:  # fmt: skip
    """A level's result with one interval per throughput (p50 2 ms, p99 5 ms throughout)."""
    mean = sum(throughputs) / len(throughputs)
    return {
        "target": target, "mode": mode, "value": value, "arrival": None if mode == "concurrency" else "fixed",
        "probe": probe, "valid": valid, "invalid_reason": None if valid else "the client fell behind",
        "breaches": list(breaches), "throughput_rps": mean, "requests": 1000, "ok": 1000, "errors": 0,
        "mismatches": 0, "latency_ms": {"p50": 2.0, "p99": 5.0},
        "intervals": [
            {"start_s": float(i), "duration_s": 1.0, "throughput_rps": t, "errors": 0,
             "p50_ms": 2.0, "p99_ms": 5.0}
            for i, t in enumerate(throughputs)
        ],
    }  # fmt: skip


def report(
    results: list[dict[str, Any]], *, prices: dict[str, float] | None = None,
    resources: dict[str, dict[str, float]] | None = None, slo: float | None = None,
    search: dict[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    names = list(dict.fromkeys(r["target"] for r in results))
    return {
        "config": {
            "targets": [{"name": n, "url": f"{n}:9000", "metrics_url": None} for n in names],
            "prices": prices or {}, "resources": resources or {}, "slo_p99_ms": slo,
        },
        "results": results,
        "slo_search": search or {},
    }  # fmt: skip


STEADY_A = [100.0, 101.0, 99.0, 100.0, 100.0]  # 100 req/s
STEADY_B = [200.0, 202.0, 198.0, 200.0, 200.0]  # 200 req/s


def test_cost_per_million_and_per_core_and_gpu() -> None:
    made = report(
        [result("ovms", 4, STEADY_A)], prices={"ovms": 3.6}, resources={"ovms": {"cpu": 4.0, "gpu": 2.0}}
    )
    entry = target_cost(made, "ovms")
    assert entry["level"] == "c=4"
    assert entry["throughput_rps"] == 100.0
    assert entry["rps_per_core"] == 25.0
    assert entry["rps_per_gpu"] == 50.0
    # 3.6 USD per hour / (100 req/s x 3600 s) = 1e-5 USD per request = 10 USD per million.
    assert entry["usd_per_million"] == pytest.approx(10.0)


def test_without_resources_there_is_no_per_core_figure() -> None:
    entry = target_cost(report([result("ovms", 4, STEADY_A)], prices={"ovms": 1.0}), "ovms")
    assert entry["rps_per_core"] is None
    assert entry["rps_per_gpu"] is None
    assert entry["usd_per_million"] is not None


def test_the_highest_valid_level_within_the_thresholds_is_chosen_without_a_search() -> None:
    made = report(
        [
            result("ovms", 1, STEADY_A),
            result("ovms", 4, STEADY_B),
            result("ovms", 16, STEADY_B, breaches=("p99 60 ms > --slo-p99-ms 50",)),
            result("ovms", 32, STEADY_B, valid=False),
        ],
        prices={"ovms": 1.0},
        slo=50.0,
    )
    entry = target_cost(made, "ovms")
    assert entry["level"] == "c=4"
    assert (
        entry["basis"]
        == "the highest valid level within p99 ≤ 50 ms and the other thresholds (no SLO search)"
    )


def test_the_slo_search_answer_is_the_level_used() -> None:
    probes = [
        result("ovms", 100, [100.0] * 5, probe=True, mode="rate"),
        result("ovms", 200, [200.0] * 5, probe=True, mode="rate"),
        result("ovms", 400, [300.0] * 5, probe=True, mode="rate", breaches=("p99 90 ms > --slo-p99-ms 50",)),
    ]
    search = {"ovms": {"max_rate": 200, "first_failing_rate": 400, "probes": []}}
    entry = target_cost(report(probes, prices={"ovms": 1.0}, slo=50.0, search=search), "ovms")
    assert entry["level"] == "200/s"
    assert entry["throughput_rps"] == 200.0
    assert entry["basis"] == "the highest rate that met the SLO (p99 ≤ 50 ms; SLO search)"


def test_no_prices_is_not_comparable_and_says_so() -> None:
    verdict = cost_summary(report([result("ovms", 4, STEADY_A), result("triton", 4, STEADY_B)]))["verdict"]
    assert verdict == {
        "comparable": False,
        "reason": "no prices given (--price NAME=USD_PER_HOUR for each target)",
        "line": "not comparable: no prices given (--price NAME=USD_PER_HOUR for each target)",
    }


def test_a_missing_price_or_level_is_named() -> None:
    both = [result("ovms", 4, STEADY_A), result("triton", 4, STEADY_B)]
    assert cost_summary(report(both, prices={"ovms": 1.0}))["verdict"]["reason"] == "no --price for triton"
    search = {"ovms": {"max_rate": None, "probes": []}, "triton": {"max_rate": 4, "probes": []}}
    probes = [result("ovms", 4, STEADY_A, probe=True), result("triton", 4, STEADY_B, probe=True)]
    verdict = cost_summary(report(probes, prices={"ovms": 1.0, "triton": 1.0}, slo=5.0, search=search))[
        "verdict"
    ]
    assert verdict["reason"] == "ovms: no rate met the SLO"
    assert cost_summary(report([both[0]], prices={"ovms": 1.0}))["verdict"]["reason"] == "one target only"


def test_the_cheaper_server_beyond_noise() -> None:
    # triton: twice the throughput at 1.5 times the price -> 1.33x cheaper per request.
    made = report(
        [result("ovms", 4, STEADY_A), result("triton", 4, STEADY_B)],
        prices={"ovms": 1.0, "triton": 1.5},
        slo=50.0,
    )
    verdict = cost_summary(made)["verdict"]
    assert verdict["comparable"] is True
    assert (verdict["cheaper"], verdict["dearer"], verdict["ratio"]) == (
        "triton",
        "ovms",
        pytest.approx(1.3333),
    )
    assert verdict["noise"].startswith("beyond run-to-run noise")
    assert verdict["line"].startswith(
        "triton meets the SLO at the lower cost: $2.083 per million requests against $2.778"
    )


def test_a_lead_inside_the_noise_is_called_so() -> None:
    noisy_a = [60.0, 140.0, 80.0, 120.0, 100.0]
    noisy_b = [70.0, 150.0, 90.0, 130.0, 110.0]  # 10 % more, well inside the spread
    made = report(
        [result("ovms", 4, noisy_a), result("triton", 4, noisy_b)], prices={"ovms": 1.0, "triton": 1.0}
    )
    verdict = cost_summary(made)["verdict"]
    assert verdict["cheaper"] == "triton"
    assert verdict["noise"].startswith("within run-to-run noise")
    assert "stays within the thresholds" in verdict["line"]


def test_too_few_intervals_leave_the_noise_unknown() -> None:
    made = report(
        [result("ovms", 4, [100.0]), result("triton", 4, [200.0])], prices={"ovms": 1.0, "triton": 1.0}
    )
    assert (
        cost_summary(made)["verdict"]["noise"]
        == "run-to-run noise unknown (fewer than 3 intervals per level)"
    )


def test_versus_compares_two_targets() -> None:
    changes = versus(result("ovms", 4, STEADY_A), result("triton", 4, STEADY_B))
    assert changes["req/s"].verdict == "better"
    assert changes["p99 ms"].verdict == "same"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cpu", "'cpu': expected cpu:N or gpu:N"),
        ("tpu:1", "'tpu:1': expected cpu:N or gpu:N"),
        ("cpu:0", "'cpu:0': the amount must be a number above 0"),
        ("cpu:nan", "'cpu:nan': the amount must be a number above 0"),
        ("cpu:x", "'cpu:x': 'x' is not a number"),
        ("cpu:1,cpu:2", "cpu given twice"),
    ],
)
def test_bad_resources(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_resources(text)


def test_resources_and_price_parse() -> None:
    assert parse_resources("cpu:4, gpu:1") == {"cpu": 4.0, "gpu": 1.0}
    assert parse_price("2.5") == 2.5
    for bad in ("0", "-1", "inf", "nan"):
        with pytest.raises(ValueError, match="is not a price above 0"):
            parse_price(bad)


def test_report_md_starts_with_the_verdict() -> None:
    made = report(
        [result("ovms", 4, STEADY_A), result("triton", 4, STEADY_B)], prices={"ovms": 1.0, "triton": 1.5}
    )
    made["config"].update(mode="concurrency", levels=[4], model="emotion", protocol="grpc", batch_size=1,
                          duration=5.0, warmup=1.0, workers=1, tolerance=1e-3)  # fmt: skip
    made.update(status="ok", exit_code=0, started="s", finished="f", problems=[],
                client={"host": "h", "cpus": 2},
                inputs={"package": {"name": "emotion", "version": 1, "source": "d"},
                        "corpus": {"source": "c", "sentences": 3}})  # fmt: skip
    for r in made["results"]:
        r.update(service_ms={"p99": 4.0}, client_cpu={"cores": 0.5}, errors_by_kind={}, mismatch_examples=[],
                 latency_ms={"p50": 2.0, "p90": 3.0, "p95": 4.0, "p99": 5.0, "p99.9": 6.0})  # fmt: skip
    lines = markdown(made).splitlines()
    assert lines[2].startswith("**Verdict (cost)**: triton stays within the thresholds at the lower cost")
    assert "## Cost and hardware" in lines


def _exit(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = cli.main(argv)
    except SystemExit as stop:
        code = int(stop.code or 0)
    return code, capsys.readouterr().err.strip()


RUN = [
    "run",
    "--target",
    "ovms=127.0.0.1:1",
    "--package",
    "/nonexistent",
    "--concurrency",
    "1",
    "--output",
    "out",
]


def test_a_malformed_price_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exit([*RUN, "--price", "ovms=cheap"], capsys)
    assert code == 2
    assert err.endswith(
        "error: argument --price: 'ovms=cheap': 'cheap' is not a price above 0 (USD per hour)"
    )


def test_a_price_for_no_target_is_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _exit([*RUN, "--price", "triton=1.5"], capsys)
    assert (code, err) == (3, "loadtest: --price triton: no --target of that name")
    code, err = _exit([*RUN, "--resources", "ovms=cpu:2", "--resources", "ovms=cpu:4"], capsys)
    assert (code, err) == (3, "loadtest: --resources ovms: given twice")
