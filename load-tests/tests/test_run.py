"""`loadtest run` and `loadtest smoke` against a real local Triton serving python-backend test models."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil
import pytest

from devstack.paths import REPO_ROOT, tool
from emotion_contract.errors import ExitCode
from loadtest.prepare import load_prepared
from loadtest.servermetrics import scrape
from loadtest.stats import PERCENTILES
from loadtest.worker import STALL_HOOK

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: Options that keep a level short; --max-lag is generous because other work shares this machine's two cores.
SHORT = ("--warmup", "0.5s", "--max-lag", "1s")


def read_report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "report.json").read_text(encoding="utf-8"))


def assert_consistent_level(result: dict[str, Any]) -> None:
    """What holds for any level: ordered percentiles, counts that add up."""
    for figures in (result["latency_ms"], result["service_ms"]):
        ordered = [figures["min"], *(figures[p] for p in PERCENTILES), figures["max"]]
        assert ordered == sorted(ordered), figures
    # Timed-out requests count in the latency figures (at least the timeout), other errors do not.
    assert result["latency_ms"]["count"] == result["ok"] + result["errors_by_kind"].get("timeout", 0)
    assert result["ok"] + result["errors"] == result["requests"]
    assert result["errors"] == sum(result["errors_by_kind"].values())
    # Latency counts from the intended send time, service time from the actual send: never less.
    assert result["latency_ms"]["p50"] >= result["service_ms"]["p50"]
    assert result["latency_ms"]["max"] >= result["service_ms"]["max"]
    # One row per interval of the window, empty ones included, adding up to the level's answers.
    assert sum(i["duration_s"] for i in result["intervals"]) == pytest.approx(result["duration_s"])
    interval_answers = sum(round(i["throughput_rps"] * i["duration_s"]) for i in result["intervals"])
    assert interval_answers == round(result["throughput_rps"] * result["duration_s"])


def test_closed_loop_grpc_report_schema_and_values(
    emotion_triton, tiny_package, tmp_path, loadtest, test_models
):
    out = tmp_path / "report"
    run = loadtest(
        "run",
        "--target",
        f"triton={emotion_triton.grpc_url}",
        "--metrics",
        f"triton={emotion_triton.metrics_url}",
        "--package",
        tiny_package,
        "--concurrency",
        "1,2",
        "--duration",
        "2s",
        "--workers",
        "2",
        *SHORT,
        "--output",
        out,
    )
    assert run.code == 0, run.stderr
    assert run.stdout.strip() == str(out)
    report = read_report(out)
    assert report["schema"] == "loadtest-report/1"
    assert (report["status"], report["exit_code"], report["problems"]) == ("ok", 0, [])
    assert report["config"]["mode"] == "concurrency"
    assert report["config"]["levels"] == [1.0, 2.0]
    assert report["inputs"]["package"]["version"] == 1
    assert report["inputs"]["labels"] == list(test_models.labels)
    assert report["inputs"]["corpus"]["sentences"] == 216
    assert [(r["target"], r["value"], r["workers"]) for r in report["results"]] == [
        ("triton", 1, 1),
        ("triton", 2, 2),
    ]
    for result in report["results"]:
        assert_consistent_level(result)
        assert result["valid"]
        assert result["breaches"] == []
        assert result["requests"] > 50
        assert (result["errors"], result["mismatches"]) == (0, 0)
        assert result["max_drift"] <= 1e-6
        # Closed loop: latency is the service time.
        assert result["latency_ms"] == result["service_ms"]
        assert result["throughput_rps"] == pytest.approx(result["requests"] / 2, rel=0.1)
        assert len(result["intervals"]) == 2
        server = result["server"]
        assert server["server"] == "triton"
        assert abs(server["requests"] - result["requests"]) <= max(5, result["requests"] // 20)
        assert server["failures"] == 0
        # The server's compute is part of every request's latency: a mean under the client's mean (not its
        # median: with a client that adds little, a skewed compute time can have a mean above that median).
        assert 0 < server["compute_ms"] < result["latency_ms"]["mean"]
        assert server["queue_ms"] >= 0
        assert server["batch_size"] == 1.0
        assert result["client_cpu"]["seconds"] > 0
    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| c=1 | triton |" in markdown
    assert "| c=2 | triton |" in markdown
    assert report["plots"] == [
        f"plots/{n}"
        for n in ("latency_vs_throughput.png", "latency_distribution.png", "latency_over_time.png")
    ]
    for plot in report["plots"]:
        assert (out / plot).read_bytes().startswith(PNG_MAGIC)
        assert f"]({plot})" in markdown


def test_open_loop_http_text_model_batches_of_four(emotion_triton, tiny_package, tmp_path, loadtest):
    out = tmp_path / "report"
    target = f"--target triton={emotion_triton.http_url} --metrics triton={emotion_triton.metrics_url}"
    options = "--protocol http --input text --batch-size 4 --rate 40 --duration 2s --workers 2"
    run = loadtest(
        "run", *target.split(), *options.split(), "--package", tiny_package, *SHORT, "--output", out
    )
    assert run.code == 0, run.stderr
    report = read_report(out)
    assert report["config"]["model"] == "emotion-text"
    (result,) = report["results"]
    assert_consistent_level(result)
    assert (result["mode"], result["value"], result["arrival"]) == ("rate", 40, "fixed")
    # A fixed grid of 40/s over 2 s: exactly 80 intended sends in the window, each sent on time.
    assert result["requests"] == 80
    assert result["achieved_rate"] == pytest.approx(40, abs=1)
    assert result["sentences_per_s"] == 4 * result["throughput_rps"]
    assert (result["errors"], result["mismatches"]) == (0, 0)
    assert result["max_drift"] < 1e-5  # padding inside a batch: float noise only
    assert result["server"]["server"] == "triton"
    assert result["lag_kind"] == "schedule"


def test_slo_search_brackets_the_sleeping_models_capacity(
    odd_triton, tiny_package, tmp_path, loadtest, test_models
):
    """p99 under 4 sleeps: easy with evenly spaced requests up to the model's capacity (1000 / SLEEP_MS
    = 50/s, a little less with Triton's own time), hopeless at 80/s."""
    out = tmp_path / "report"
    bound = 4 * test_models.sleep_ms
    options = (
        f"--served-model sleepy --rate 10 --slo-search --slo-p99-ms {bound} --max-rate 80 --search-steps 1"
    )
    run = loadtest(
        "run",
        "--target",
        f"odd={odd_triton.grpc_url}",
        "--package",
        tiny_package,
        *options.split(),
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--workers",
        "1",
        "--max-lag",
        "1s",
        "--output",
        out,
    )
    assert run.code == 0, run.stderr
    report = read_report(out)
    search = report["slo_search"]["odd"]
    probes = [p["rate"] for p in search["probes"]]
    assert probes[:4] == [10, 20, 40, 80][: len(probes[:4])]
    assert 20 <= search["max_rate"] < search["first_failing_rate"] <= 80
    assert search["max_rate"] <= 1000 / test_models.sleep_ms
    by_rate = {p["rate"]: p["p99_ms"] for p in search["probes"]}
    assert by_rate[search["max_rate"]] <= bound < by_rate[search["first_failing_rate"]]
    assert all(r["probe"] for r in report["results"])
    assert (
        f"| odd | {search['max_rate']:g}/s | {search['first_failing_rate']:g}/s |"
        in (out / "report.md").read_text()
    )


def test_threshold_breach_exits_4_with_the_reason(emotion_triton, tiny_package, tmp_path, loadtest):
    out = tmp_path / "report"
    run = loadtest(
        "run",
        "--target",
        f"triton={emotion_triton.grpc_url}",
        "--package",
        tiny_package,
        "--concurrency",
        "1",
        "--duration",
        "1s",
        "--workers",
        "1",
        "--slo-p99-ms",
        "0.01",
        *SHORT,
        "--output",
        out,
    )
    assert run.code == ExitCode.THRESHOLD
    report = read_report(out)
    p99 = report["results"][0]["latency_ms"]["p99"]
    assert run.stderr.strip().splitlines()[-1] == f"loadtest: triton c=1: p99 {p99} ms > --slo-p99-ms 0.01"
    assert report["status"] == "threshold_breached"
    assert run.seconds < 30


def test_wrong_answers_are_counted_as_mismatches(odd_triton, tiny_package, tmp_path, loadtest, test_models):
    out = tmp_path / "report"
    run = loadtest(
        "run",
        "--target",
        f"odd={odd_triton.grpc_url}",
        "--package",
        tiny_package,
        "--concurrency",
        "2",
        "--duration",
        "2s",
        "--workers",
        "1",
        *SHORT,
        "--output",
        out,
    )
    assert run.code == ExitCode.THRESHOLD, run.stderr
    (result,) = read_report(out)["results"]
    assert result["errors"] == 0
    assert result["mismatches"] > 0
    # The model rotates the probabilities of exactly the sentences whose token ids sum to a multiple of
    # WRONG_EVERY: every reported example is one of them, and their share matches.
    prepared = load_prepared(next((out / "inputs").glob("*.npz")))
    wrong = {i for i in range(len(prepared)) if prepared.sentence(i)[0].sum() % test_models.wrong_every == 0}
    assert 0 < len(wrong) < len(prepared)
    for example in result["mismatch_examples"]:
        assert example["sentence"] in wrong
        assert example["got"] != example["expected"]
        assert example["text"] == prepared.texts[example["sentence"]]
    assert result["mismatch_rate"] == pytest.approx(len(wrong) / len(prepared), abs=0.1)
    rate = result["mismatch_rate"]
    assert run.stderr.strip().splitlines()[-1] == (
        f"loadtest: odd c=2: mismatch rate {rate:g} > --max-mismatch-rate 0"
    )


def test_coordinated_omission_open_loop_above_capacity(
    odd_triton, tiny_package, tmp_path, loadtest, test_models
):
    """The sleepy model serves at most 1000 / SLEEP_MS requests/s. Offered 80/s with one request in flight,
    requests queue in the client: latency from the intended send time grows through the run while the
    service time stays near the sleep. A closed loop at concurrency 1 reports the sleep."""
    sleep = test_models.sleep_ms
    common = (
        "--target",
        f"odd={odd_triton.grpc_url}",
        "--metrics",
        f"odd={odd_triton.metrics_url}",
        "--package",
        tiny_package,
        "--served-model",
        "sleepy",
        "--workers",
        "1",
        "--warmup",
        "0s",
        "--duration",
        "3s",
        "--timeout",
        "8s",
        "--max-lag",
        "1s",
    )
    run = loadtest("run", *common, "--rate", "80", "--max-in-flight", "1", "--output", tmp_path / "open")
    assert run.code == 0, run.stderr
    (result,) = read_report(tmp_path / "open")["results"]
    p99_by_second = [i["p99_ms"] for i in result["intervals"]]
    assert len(p99_by_second) == 3
    assert p99_by_second == sorted(p99_by_second)
    assert p99_by_second[-1] > 2 * p99_by_second[0]
    assert result["latency_ms"]["p99"] > 10 * sleep
    assert sleep <= result["service_ms"]["p50"]
    assert result["service_ms"]["p99"] < 3 * sleep
    assert result["achieved_rate"] < 1000 / sleep < 80
    assert sleep * 0.9 < result["server"]["compute_ms"] < 2 * sleep

    run = loadtest("run", *common, "--concurrency", "1", "--output", tmp_path / "closed")
    assert run.code == 0, run.stderr
    (result,) = read_report(tmp_path / "closed")["results"]
    assert sleep <= result["latency_ms"]["p50"]
    assert result["latency_ms"]["p99"] < 3 * sleep
    assert result["intervals"][-1]["p99_ms"] < 3 * sleep


def test_a_client_that_falls_behind_makes_the_run_invalid(emotion_triton, tiny_package, tmp_path, command):
    """The test hook LOADTEST_TEST_STALL=300:50 stops the worker (the engine) for 300 ms before every 50th
    request. At 100/s on a fixed grid the window (requests 51 to 200) holds three such stalls whole: each
    leaves the next requests due unsent, the first of them 299 ms late or more, on any machine. The run says
    so instead of reporting the client's lateness as server latency."""
    out = tmp_path / "report"
    options = "--rate 100 --duration 1.5s --warmup 0.5s --workers 1 --max-lag 50ms"
    argv = _run_argv(command, emotion_triton.grpc_url, tiny_package, options, out)
    env = {**os.environ, STALL_HOOK: "300:50"}
    run = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False, env=env)
    assert run.returncode == ExitCode.INVALID, run.stderr
    report = read_report(out)
    (result,) = report["results"]
    assert result["requests"] == 150
    assert not result["valid"]
    assert result["test_stalls"] == 4  # before requests 50, 100, 150 and 200
    # The second-largest of 150 lags (p99) is one of the requests due first in a stall: 299 ms or more.
    p99 = result["lag_ms"]["p99"]
    assert p99 >= 298  # 299 ms by construction, less the microsecond rounding of the recorded lags
    reason = (
        f"the client fell behind: p99 schedule lag {p99:g} ms > --max-lag 50 ms (use more --workers, a lower "
        "rate, or a less busy client machine)"
    )
    assert result["invalid_reason"] == reason
    assert report["problems"] == [
        f"triton 100/s: {reason}",
        f"test hook {STALL_HOOK} is set: the workers stalled their event loop 4 times on purpose",
    ]


def triton_pid(server) -> int:
    """The tritonserver process of `server` (a child of this test process, found by its gRPC port)."""
    flag = f"--grpc-port={server.grpc_port}"
    pids = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):  # a child that has just ended
            if flag in process.cmdline():
                pids.append(process.pid)
    (pid,) = pids
    return pid


def successes(server, model: str = "emotion") -> int:
    """Requests the server has answered (its statistics extension: counted as they complete)."""
    url = f"http://{server.http_url}/v2/models/{model}/stats"
    with urllib.request.urlopen(url, timeout=5) as response:
        (stats,) = json.load(response)["model_stats"]
    return stats["inference_stats"]["success"]["count"]


def run_frozen_partway(server, argv: list[str], *, after: int) -> tuple[subprocess.Popen, str, str]:
    """Run `argv` (a level without warmup); once the server has answered `after` requests, freeze it with
    SIGSTOP until the run has ended, and let it go again (SIGCONT) whatever happens."""
    pid = triton_pid(server)
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    frozen = False
    try:
        deadline = time.monotonic() + 60
        while successes(server) < after and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert run.poll() is None, "the run ended before the server was frozen"
        os.kill(pid, signal.SIGSTOP)
        frozen = True
        stdout, stderr = run.communicate(timeout=120)
    finally:
        if frozen:
            os.kill(pid, signal.SIGCONT)
        if run.poll() is None:
            run.kill()
            run.wait()
    return run, stdout, stderr


def assert_stalled(result: dict[str, Any], stderr: str, *, level: str, intervals: int, timeout_ms: float):
    """A level whose server froze partway and stayed frozen: one row per interval with zeros at the end,
    the stall named by the rule's own figures, and the timed-out requests in the latency figures."""
    assert_consistent_level(result)
    rows = result["intervals"]
    assert [r["start_s"] for r in rows] == [i * 0.5 for i in range(intervals)]
    assert {r["duration_s"] for r in rows} == {0.5}
    rates = [r["throughput_rps"] for r in rows]
    assert rates[-1] == 0
    stall = result["stall"]
    median = stall["median_rps"]
    assert median == statistics.median([r for r in rates if r > 0])
    assert stall["judged_intervals"] == intervals
    stalled = [r for r in rows if r["throughput_rps"] < 0.1 * median]
    assert stall["stalled"] == [r["start_s"] for r in stalled]
    breach = (
        f"stall: throughput under --stall-share 0.1 x the median {median:g} req/s in {len(stalled)} of "
        f"{intervals} intervals ({0.5 * len(stalled):g} s), the first at {stalled[0]['start_s']:g} s with "
        f"{stalled[0]['throughput_rps']:g} req/s"
    )
    assert breach in result["breaches"]
    assert f"loadtest: triton {level}: {breach}" in stderr.splitlines()
    # The requests the frozen server held timed out, and count in the latencies at least at the timeout:
    # an interval without answers has only timeouts in its figures.
    assert result["errors_by_kind"]["timeout"] > 0
    assert result["latency_ms"]["max"] >= timeout_ms
    for row in rows:
        if row["throughput_rps"] == 0 and row["errors"]:
            assert row["p50_ms"] >= timeout_ms


def test_a_server_frozen_partway_through_a_closed_loop_level_is_a_stall(
    serve, tiny_package, tmp_path, command
):
    """Issue 13: Triton frozen with SIGSTOP partway through a closed-loop level gave exit 0, a p99 of 22 ms
    and four intervals for ten seconds. Now every interval is reported, the empty ones as zeros, and the
    level breaches the stall rule (a threshold, exit 9)."""
    triton = serve({"emotion": {}})
    out = tmp_path / "report"
    options = (
        "--concurrency 4 --duration 3s --interval 500ms --warmup 0s --timeout 1s --workers 1 --max-lag 1s"
    )
    argv = _run_argv(command, triton.grpc_url, tiny_package, options, out)
    run, _, stderr = run_frozen_partway(triton, argv, after=100)
    assert run.returncode == ExitCode.THRESHOLD, stderr
    report = read_report(out)
    assert report["status"] == "threshold_breached"
    (result,) = report["results"]
    assert result["valid"]
    assert_stalled(result, stderr, level="c=4", intervals=6, timeout_ms=1000)


def test_a_server_frozen_partway_through_an_open_loop_level_is_a_stall(
    serve, tiny_package, tmp_path, command
):
    """The same over HTTP in open loop: the requests due while the server is frozen go out on new
    connections that it never serves, and time out at their deadline."""
    triton = serve({"emotion": {}})
    out = tmp_path / "report"
    options = "--rate 200 --duration 3s --interval 500ms --warmup 0s --timeout 1s --workers 1 --max-lag 1s"
    argv = _run_argv(command, triton.http_url, tiny_package, f"--protocol http {options}", out)
    run, _, stderr = run_frozen_partway(triton, argv, after=150)
    assert run.returncode == ExitCode.THRESHOLD, stderr
    (result,) = read_report(out)["results"]
    assert result["valid"]
    assert result["requests"] == 600  # every request of the grid is accounted for: answered or timed out
    assert_stalled(result, stderr, level="200/s", intervals=6, timeout_ms=1000)


def answered_by(triton: Any, model: str, *, at_least: int, timeout: float = 120.0) -> None:
    """Wait until Triton's own metrics count `at_least` successful inferences of `model`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = scrape(triton.metrics_url) or []
        done = sum(
            v
            for n, labels, v in samples
            if n == "nv_inference_request_success" and labels.get("model") == model
        )
        if done >= at_least:
            return
        time.sleep(0.2)
    pytest.fail(f"{model} answered fewer than {at_least} requests within {timeout:.0f} s")


def test_a_server_killed_mid_run_gives_exit_6_and_a_partial_report(serve, tiny_package, tmp_path, command):
    triton = serve({"emotion": {}})
    out = tmp_path / "report"
    options = "--rate 20 --duration 60s --warmup 0s --workers 1 --max-lag 1s"
    argv = _run_argv(command, triton.grpc_url, tiny_package, options, out)
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        answered_by(triton, "emotion", at_least=30)  # the level is under way, however slow the machine
        triton.kill()
        killed = time.monotonic()
        stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGKILL)
    assert run.returncode == 6, stderr
    assert time.monotonic() - killed < 20
    assert f"loadtest: target triton ({triton.grpc_url}) died during 20/s: unavailable for" in stderr
    report = read_report(out)
    assert report["status"] == "partial"
    (result,) = report["results"]
    assert result["ok"] > 20
    assert result["errors_by_kind"]["unavailable"] > 0
    assert result["aborted"].startswith("unavailable for ")
    assert stdout.strip() == str(out)


def test_sigterm_stops_the_run_with_its_workers_and_a_partial_report(
    emotion_triton, tiny_package, tmp_path, command
):
    out = tmp_path / "report"
    options = "--rate 20,40 --duration 2s --warmup 0s --workers 2 --max-lag 1s"
    argv = _run_argv(command, emotion_triton.grpc_url, tiny_package, options, out)
    run = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (out / "report.json").exists() and time.monotonic() < deadline:  # the first level is done
            time.sleep(0.2)
        workers = [p for p in psutil.Process(run.pid).children() if p.name() == "loadtest-engine"]
        assert len(workers) == 2
        run.terminate()
        stopped = time.monotonic()
        stdout, stderr = run.communicate(timeout=30)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130
    assert time.monotonic() - stopped < 10
    assert stderr.strip().splitlines()[-1] == "loadtest: interrupted"
    assert stdout.strip() == str(out)
    report = read_report(out)
    assert (report["status"], report["exit_code"], report["problems"]) == ("partial", 130, ["interrupted"])
    assert [r["value"] for r in report["results"]] == [20]
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_smoke_passes_against_a_correct_server(emotion_triton, tiny_package, loadtest, protocol):
    url = emotion_triton.grpc_url if protocol == "grpc" else emotion_triton.http_url
    run = loadtest("smoke", "--target", f"triton={url}", "--protocol", protocol, "--package", tiny_package)
    assert run.code == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith(f"triton emotion ({protocol}): 12 sentences, max drift from the reference ")
    assert lines[-1] == (
        "smoke: ok: 1 target(s) x tokens, text x 12 sentences agree with the reference and with each other "
        "within 0.001"
    )


def test_smoke_fails_in_one_line_on_wrong_answers(emotion_triton, odd_triton, tiny_package, loadtest):
    run = loadtest(
        "smoke",
        "--target",
        f"good={emotion_triton.grpc_url}",
        "--target",
        f"odd={odd_triton.grpc_url}",
        "--package",
        tiny_package,
    )
    assert run.code == ExitCode.SMOKE
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("loadtest: smoke: odd emotion: sentence ")
    assert "good and odd disagree on the tokens model" not in line  # the first problem only, then a count
    assert line.endswith(" more)")


def test_smoke_from_the_bucket(emotion_triton, tiny_package, loadtest, s3_server, bucket_name):
    client = s3_server.client()
    client.make_bucket(bucket_name)
    for path in sorted(p for p in tiny_package.rglob("*") if p.is_file()):
        client.fput_object(bucket_name, path.relative_to(tiny_package).as_posix(), str(path))
    run = loadtest(
        "smoke",
        "--target",
        f"triton={emotion_triton.grpc_url}",
        "--package",
        f"s3://{bucket_name}",
        "--endpoint",
        s3_server.endpoint,
        "--input",
        "tokens",
        "--sentences",
        "6",
        env={**os.environ, **s3_server.env()},
    )
    assert run.code == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1].startswith("smoke: ok: 1 target(s) x tokens x 6 sentences")


def test_an_in_cluster_run_keeps_its_report_in_the_bucket_once(
    emotion_triton, tiny_package, loadtest, s3_server, bucket_name, tmp_path
):
    """`--keep-report RUN` (what the in-cluster Job runs): the report and its plots under
    reports/<name>/RUN/, report.json last; the same RUN again is refused before any load (exit 8), and
    the kept report reads back byte for byte."""
    from loadtest.kept import fetch_report
    from loadtest.package import open_store

    client = s3_server.client()
    client.make_bucket(bucket_name)
    for path in sorted(p for p in tiny_package.rglob("*") if p.is_file()):
        client.fput_object(bucket_name, path.relative_to(tiny_package).as_posix(), str(path))
    env = {**os.environ, **s3_server.env()}
    argv = [
        "run", "--target", f"triton={emotion_triton.grpc_url}", "--package", f"s3://{bucket_name}",
        "--endpoint", s3_server.endpoint, "--concurrency", "1", "--duration", "1s", "--warmup", "0s",
        "--max-lag", "1s", "--workers", "1", "--path", "in-cluster", "--keep-report", "run-1",
    ]  # fmt: skip
    first = loadtest(*argv, "--output", tmp_path / "first", env=env)
    assert first.code == 0, first.stderr
    kept = sorted(o.object_name for o in client.list_objects(bucket_name, prefix="reports/", recursive=True))
    assert "reports/emotion/run-1/report.json" in kept
    assert "reports/emotion/run-1/report.md" in kept
    assert any(k.startswith("reports/emotion/run-1/plots/") and k.endswith(".png") for k in kept)
    assert not any("/inputs/" in k for k in kept)  # the prepared-inputs cache stays local
    report_md = (tmp_path / "first" / "report.md").read_text()
    assert "path: in the cluster: a Job next to the servers, through their Services" in report_md

    for name, value in s3_server.env().items():
        os.environ[name] = value
    try:
        store = open_store(f"s3://{bucket_name}", s3_endpoint=s3_server.endpoint)
        fetched = fetch_report(store, name="emotion", run="run-1", folder=tmp_path / "fetched")
    finally:
        for name in s3_server.env():
            os.environ.pop(name, None)
    assert {p.relative_to(tmp_path / "fetched").as_posix() for p in fetched} == {
        k.removeprefix("reports/emotion/run-1/") for k in kept
    }
    for path in fetched:
        relative = path.relative_to(tmp_path / "fetched")
        assert path.read_bytes() == (tmp_path / "first" / relative).read_bytes(), relative

    again = loadtest(*argv, "--output", tmp_path / "again", env=env)
    assert again.code == ExitCode.CONFLICT, again.stderr
    assert again.stderr.strip().splitlines()[-1] == (
        "loadtest: --keep-report run-1: the bucket holds a report under reports/emotion/run-1/; "
        "name another run"
    )
    assert not (tmp_path / "again").exists()  # refused before the load: nothing written


def test_keep_report_needs_a_bucket_and_a_plain_run_name(tiny_package, loadtest, tmp_path):
    base = ["run", "--target", "a=127.0.0.1:9", "--concurrency", "1", "--output", tmp_path / "out"]
    local = loadtest(*base, "--package", tiny_package, "--keep-report", "run-1")
    assert local.code == ExitCode.BAD_INPUT
    assert local.stderr.strip().splitlines()[-1] == (
        f"loadtest: --keep-report run-1: the package must be in a bucket (s3://), not {tiny_package}"
    )


def test_smoke_checks_the_version_a_model_request_was_published_as(
    emotion_triton, tiny_package, tmp_path, loadtest
):
    """`--request R` (what the chart's clients pass when the servers are unpinned) reads the version
    from manifests/<name>/requests/R.json, not READY's; a request never recorded is named."""
    package = Path(shutil.copytree(tiny_package, tmp_path / "package"))
    record = {"request": "0123456789abcdef", "version": 1, "fingerprint": "sha256:x", "recorded": "now"}
    requests = package / "manifests/emotion/requests"
    requests.mkdir(parents=True)
    (requests / "0123456789abcdef.json").write_text(json.dumps(record))
    base = [
        "smoke",
        "--target",
        f"triton={emotion_triton.grpc_url}",
        "--package",
        package,
        "--sentences",
        "3",
    ]
    run = loadtest(*base, "--input", "tokens", "--request", "0123456789abcdef")
    assert run.code == 0, run.stderr
    # A request recorded as a version READY does not name is followed to that version's manifest.
    (requests / "00000000000000aa.json").write_text(json.dumps({**record, "version": 2}))
    other = loadtest(*base, "--request", "00000000000000aa")
    assert other.code == ExitCode.BAD_INPUT
    assert other.stderr.strip() == f"loadtest: package {package}: manifests/emotion/2.json is missing"
    missing = loadtest(*base, "--request", "fedcba9876543210")
    assert missing.code == ExitCode.BAD_INPUT
    assert missing.stderr.strip() == (
        f"loadtest: package {package}: manifests/emotion/requests/fedcba9876543210.json is missing"
    )
    both = loadtest(*base, "--request", "0123456789abcdef", "--version", "1")
    assert both.code == ExitCode.USAGE


def test_smoke_fails_when_a_file_of_the_version_is_missing(emotion_triton, tiny_package, tmp_path, loadtest):
    """Every object the manifest lists for the version is looked at, OVMS's IR too, before a request."""
    package = Path(shutil.copytree(tiny_package, tmp_path / "package"))
    manifest_path = package / "manifests/emotion/1.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["objects"]["ovms/emotion/1/model.xml"] = {"sha256": "0" * 64, "size": 10}
    raw = json.dumps(manifest).encode()
    manifest_path.write_bytes(raw)
    ready_path = package / "manifests/emotion/READY"
    ready = {**json.loads(ready_path.read_text()), "sha256": hashlib.sha256(raw).hexdigest()}
    ready_path.write_text(json.dumps(ready))
    run = loadtest("smoke", "--target", f"triton={emotion_triton.grpc_url}", "--package", package)
    assert run.code == ExitCode.SMOKE, run.stderr
    assert run.stderr.strip() == f"loadtest: smoke: package {package} v1: ovms/emotion/1/model.xml is missing"


def test_compare_tells_a_slower_server_from_noise(
    emotion_triton, odd_triton, tiny_package, tmp_path, loadtest
):
    """The same level against the fast model, then against the sleeping one under the same name."""
    for name, url, served in (
        ("old", emotion_triton.grpc_url, "emotion"),
        ("new", odd_triton.grpc_url, "sleepy"),
    ):
        run = loadtest(
            "run",
            "--target",
            f"server={url}",
            "--package",
            tiny_package,
            "--served-model",
            served,
            "--rate",
            "30",
            "--duration",
            "3s",
            "--workers",
            "1",
            *SHORT,
            "--output",
            tmp_path / name,
        )
        assert run.code == 0, run.stderr
    slower = loadtest("compare", tmp_path / "old", tmp_path / "new" / "report.json")
    assert slower.code == ExitCode.REGRESSION, slower.stdout + slower.stderr
    rows = {
        line.split(" | ")[2]: line for line in slower.stdout.splitlines() if line.startswith("| server |")
    }
    assert sorted(rows) == ["error rate", "mismatch rate", "p50 ms", "p99 ms", "req/s"]
    assert rows["p50 ms"].endswith("| **worse** |")
    assert rows["error rate"].endswith("| same |")
    assert (
        slower.stderr.strip()
        == f"loadtest: {sum('**worse**' in r for r in rows.values())} figure(s) worse beyond noise"
    )

    same = loadtest("compare", tmp_path / "old", tmp_path / "old")
    assert same.code == 0
    assert same.stdout.count("| same |") == 5


def test_make_loadtest_forwards_the_release_services_and_prints_the_report_folder(
    emotion_triton, tiny_package, tmp_path
):
    """`make loadtest` with kubectl replaced by a stand-in (no cluster here): the Services come from the real
    chart rendered by helm, the port-forwards point at the local Triton."""
    standin = tmp_path / "kubectl"
    standin.write_text(
        f'#!/bin/sh\nexec {sys.executable} {Path(__file__).parent / "kubectl_standin.py"} "$@"\n'
    )
    standin.chmod(0o755)
    log = tmp_path / "kubectl.log"
    ports = {
        8001: emotion_triton.grpc_port,
        8000: emotion_triton.http_port,
        8002: emotion_triton.metrics_port,
    }
    env = {
        **os.environ,
        "STANDIN_LOG": str(log),
        "STANDIN_HELM": str(tool("helm")),
        "STANDIN_CHART": str(REPO_ROOT / "charts" / "emotion-serving"),
        "STANDIN_SET": "ovms.enabled=false",
        "STANDIN_PORTS": ",".join(f"{remote}={local}" for remote, local in ports.items()),
    }
    out = tmp_path / "report"
    run_options = (
        f"--package {tiny_package} --concurrency 1 --duration 1s --warmup 0s --max-lag 1s --workers 1"
    )
    make = [
        "make",
        "-s",
        "--no-print-directory",
        "loadtest",
        f"KUBECTL={standin}",
        "RELEASE=rel",
        "NAMESPACE=ns",
        "LOADTEST_MODE=port-forward",
        f"LOADTEST_OUTPUT={out}",
        f"LOADTEST_ARGS={run_options}",
    ]
    done = subprocess.run(
        make, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(out)
    report = read_report(out)
    assert report["config"]["targets"] == [
        {
            "name": "triton",
            "url": f"127.0.0.1:{emotion_triton.grpc_port}",
            "metrics_url": f"http://127.0.0.1:{emotion_triton.metrics_port}/metrics",
        }
    ]
    assert report["results"][0]["server"]["server"] == "triton"
    # The cost section's resources: one Triton pod's reservation as the chart renders it.
    assert report["config"]["resources"] == {"triton": {"cpu": 2.0, "gpu": 1.0}}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    selector = "app.kubernetes.io/name=emotion-serving,app.kubernetes.io/instance=rel"
    assert calls[0]["argv"] == ["get", "services", "-n", "ns", "-l", selector, "-o", "json"]
    assert calls[1]["argv"] == ["get", "deployments", "-n", "ns", "-l", selector, "-o", "json"]
    forwards = calls[2:]
    forward = ["port-forward", "-n", "ns", "--address", "127.0.0.1", "svc/rel-emotion-serving-triton"]
    assert [c["argv"] for c in forwards] == [[*forward, ":8001", ":8000", ":8002"]]
    for call in forwards:  # stopped with the run
        with pytest.raises(ProcessLookupError):
            os.kill(call["pid"], 0)


def _run_argv(command, grpc_url: str, package: Path, options: str, out: Path) -> list[str]:
    """`loadtest run` against one Triton target over gRPC, with the test package and `options`."""
    return command(
        "run", "--target", f"triton={grpc_url}", "--package", package, *options.split(), "--output", out
    )
