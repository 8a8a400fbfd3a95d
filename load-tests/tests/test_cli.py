"""The command line without load: usage and input errors, the documentation of every command and exit
code, `compare`'s noise test, server metrics of both flavours, and how `release` reads a release."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from devstack.chart import CHART, Render
from devstack.paths import REPO_ROOT
from devstack.process import free_port
from emotion_contract.errors import ExitCode
from loadtest.cli import build_parser, main
from loadtest.compare import compare_reports
from loadtest.release import Service, discover, forwarded, pod_resources, resources_arguments, run_arguments
from loadtest.results import find_stall
from loadtest.servermetrics import parse, server_side

DOCS = REPO_ROOT / "docs" / "loadtest.md"


def run_main(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exit_:  # argparse
        code = int(exit_.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "1", "--rate", "5"], "argument --rate: not allowed with argument --concurrency"),
        (
            ["--rate", "5", "--duration", "3x"],
            "argument --duration: '3x' is not a duration (examples: 30s, 500ms, 2m)",
        ),
        (["--rate", "5", "--slo-search"], "--slo-search needs --rate START and --slo-p99-ms"),
        (["--rate", "5", "--max-error-rate", "2"], "argument --max-error-rate: '2' must be between 0 and 1"),
        (
            ["--rate", "5", "--max-error-rate", "nan"],
            "argument --max-error-rate: 'nan' is not a finite number",
        ),
        # Values that ran for 44 s (nan, inf), were accepted (timeout 0) or crashed a worker (seed -1).
        (["--rate", "nan"], "argument --rate: 'nan' is not a finite number"),
        (["--rate", "inf"], "argument --rate: 'inf' is not a finite number"),
        (["--rate", "5,inf"], "argument --rate: 'inf' is not a finite number"),
        (["--rate", "0"], "argument --rate: '0' must be above 0"),
        (["--rate", "-5"], "argument --rate: '-5' must be above 0"),
        (["--rate", "2e6"], "argument --rate: '2e6' is above 1000000 requests/s"),
        (
            ["--rate", "5", "--slo-search", "--slo-p99-ms", "nan"],
            "argument --slo-p99-ms: 'nan' is not a finite number",
        ),
        (["--rate", "5", "--max-rate", "inf"], "argument --max-rate: 'inf' is not a finite number"),
        (["--rate", "5", "--tolerance", "nan"], "argument --tolerance: 'nan' is not a finite number"),
        (["--concurrency", "0"], "argument --concurrency: '0' must be above 0"),
        (["--concurrency", "1,0"], "argument --concurrency: '0' must be above 0"),
        (["--concurrency", "2.5"], "argument --concurrency: '2.5' is not a whole number"),
        (["--rate", "5", "--duration", "0"], "argument --duration: '0' must be above 0"),
        (["--rate", "5", "--duration", "0s"], "argument --duration: '0s' must be above 0"),
        (["--rate", "5", "--duration", "25h"], "argument --duration: '25h' is longer than a day"),
        (["--rate", "5", "--warmup", "-1s"], "argument --warmup: '-1s' must not be negative"),
        (["--rate", "5", "--warmup=-0.5"], "argument --warmup: '-0.5' must not be negative"),
        (["--rate", "5", "--timeout", "0s"], "argument --timeout: '0s' must be above 0"),
        (
            ["--rate", "5", "--timeout", "11m"],
            "argument --timeout: '11m' is longer than 10m (the latency histograms' range)",
        ),
        (["--rate", "5", "--interval", "0ms"], "argument --interval: '0ms' must be above 0"),
        (["--rate", "5", "--duration", "2s", "--interval", "3s"], "--interval must be at most --duration"),
        (["--rate", "5", "--max-lag", "0"], "argument --max-lag: '0' must be above 0"),
        (["--rate", "5", "--workers", "0"], "argument --workers: '0' must be above 0"),
        (["--rate", "5", "--max-in-flight", "0"], "argument --max-in-flight: '0' must be above 0"),
        (["--rate", "5", "--batch-size", "-1"], "argument --batch-size: '-1' must be above 0"),
        (["--rate", "5", "--seed", "-1"], "argument --seed: '-1' must not be negative"),
        (["--rate", "5", "--stall-share", "1.5"], "argument --stall-share: '1.5' must be between 0 and 1"),
    ],
)
def test_usage_errors_exit_2_in_one_line_and_write_nothing(
    capsys, tmp_path, argv: list[str], message: str
) -> None:
    out = tmp_path / "out"
    code, stdout, err = run_main(
        capsys, "run", "--target", "a=127.0.0.1:1", "--package", tmp_path, "--output", out, *argv
    )
    assert code == ExitCode.USAGE
    assert (stdout, err) == ("", f"loadtest run: error: {message}\n")
    assert not out.exists()


def test_smoke_rejects_a_zero_timeout_in_one_line(capsys, tmp_path) -> None:
    argv = ["smoke", "--target", "a=127.0.0.1:1", "--package", tmp_path, "--timeout", "0"]
    code, _, err = run_main(capsys, *argv)
    assert code == ExitCode.USAGE
    assert err == "loadtest smoke: error: argument --timeout: '0' must be above 0\n"


def _rows(rates: list[float], seconds: float = 1.0) -> list[dict]:
    return [{"start_s": i * seconds, "duration_s": seconds, "throughput_rps": r} for i, r in enumerate(rates)]


@pytest.mark.parametrize(
    ("rows", "share", "median", "judged", "stalled"),
    [
        # The frozen server of issue 13: four seconds of answers, then none; the median of the answering
        # intervals (not of all ten, which is 0) is the base.
        (_rows([337, 414, 358, 13, 0, 0, 0, 0, 0, 0]), 0.1, 347.5, 10, [3, 4, 5, 6, 7, 8, 9]),
        # A dip to a fifth is no stall at 0.1, one at 0.5; share 0 turns the rule off.
        (_rows([400, 410, 80, 395]), 0.1, 397.5, 4, []),
        (_rows([400, 410, 80, 395]), 0.5, 397.5, 4, [2]),
        (_rows([400, 0, 395]), 0.0, 397.5, 0, []),
        # Too few answers per interval to tell a stall from chance (Poisson at 5 per interval): not judged.
        (_rows([5, 0, 7, 4, 0, 6]), 0.1, 5.5, 0, []),
        # A short last interval is judged by its own length: 40/s over 0.5 s promises 20 answers.
        ([*_rows([40, 40]), {"start_s": 2, "duration_s": 0.5, "throughput_rps": 0}], 0.1, 40, 3, [2]),
        ([*_rows([40, 40]), {"start_s": 2, "duration_s": 0.25, "throughput_rps": 0}], 0.1, 40, 2, []),
        # Nothing answered at all: no base (the errors tell that story).
        (_rows([0, 0, 0]), 0.1, None, 0, []),
    ],
)
def test_the_stall_rule(rows, share, median, judged, stalled) -> None:
    assert find_stall(rows, share=share) == {
        "median_rps": median,
        "judged_intervals": judged,
        "stalled": stalled,
    }


NAME_VALUE = "expected NAME=VALUE with a name of letters, digits, . _ -"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--target", "no-equals-sign"], f"--target 'no-equals-sign': {NAME_VALUE}"),
        (
            ["--target", "a=https://h:1"],
            "--target 'https://h:1': expected host:port (plain HTTP/2 or HTTP/1.1, no TLS)",
        ),
        (["--target", "a=h:1", "--metrics", "b=h:2"], "--metrics b: no --target of that name"),
        (["--target", "a=h:1", "--corpus", "/nonexistent.csv"], "corpus /nonexistent.csv: no such file"),
        (["--target", "a=h:1", "--package", "/none"], "--package /none: not a folder (and not s3://bucket)"),
        (
            ["--target", "a=h:1", "--package", "s3://models"],
            "--package s3://models: an s3:// package needs --endpoint",
        ),
    ],
)
def test_bad_input_exits_3_in_one_line(capsys, tiny_package, tmp_path, argv: list[str], message: str) -> None:
    out = tmp_path / "out"
    base = ["run", "--package", tiny_package, "--concurrency", "1", "--output", out]
    code, _, err = run_main(capsys, *base, *argv)
    assert code == ExitCode.BAD_INPUT
    assert err == f"loadtest: {message}\n"
    assert not (out / "report.json").exists()


def test_unreachable_target_exits_6(capsys, tiny_package, tmp_path) -> None:
    port = free_port()
    argv = ["run", "--target", f"a=127.0.0.1:{port}", "--package", tiny_package, "--rate", "5"]
    code, _, err = run_main(capsys, *argv, "--output", tmp_path / "out")
    assert code == ExitCode.UNAVAILABLE
    assert err == f"loadtest: target a (127.0.0.1:{port}, grpc): the server does not answer as live\n"


def test_every_command_option_is_documented() -> None:
    docs = DOCS.read_text(encoding="utf-8")
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name, command in commands.items():
        assert f"loadtest {name}" in docs, name
        for action in command._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in docs, f"{name} {flag} is not in docs/loadtest.md"


def _report(p99_by_interval: list[float], errors: int = 0) -> dict:
    requests = 1000
    return {
        "results": [
            {
                "target": "t",
                "mode": "rate",
                "value": 100.0,
                "arrival": "fixed",
                "throughput_rps": 100.0,
                "latency_ms": {"p50": 2.0, "p99": sum(p99_by_interval) / len(p99_by_interval)},
                "errors": errors,
                "requests": requests,
                "mismatches": 0,
                "ok": requests - errors,
                "intervals": [{"throughput_rps": 100.0, "p50_ms": 2.0, "p99_ms": v} for v in p99_by_interval],
            }
        ]
    }


def test_compare_needs_a_change_beyond_the_interval_noise() -> None:
    steady = _report([10.0, 10.4, 9.8, 10.1, 9.9, 10.2, 10.0, 9.7])

    def verdicts(new: dict) -> dict[str, str]:
        return {c.metric: c.verdict for c in compare_reports(steady, new, min_change=0.05)}

    # 20 % slower in every interval: beyond noise.
    assert verdicts(_report([12.0, 12.3, 11.9, 12.2, 12.1, 11.8, 12.0, 12.4]))["p99 ms"] == "worse"
    assert verdicts(_report([8.0, 8.2, 7.9, 8.1, 8.0, 7.8, 8.3, 8.1]))["p99 ms"] == "better"
    # One spike in an otherwise unchanged run moves the mean by 40 % but not beyond its own noise.
    assert verdicts(_report([10.0, 10.3, 9.9, 42.0, 10.1, 9.8, 10.2, 10.0]))["p99 ms"] == "same"
    # Beyond noise but under --min-change: same.
    assert verdicts(_report([10.3, 10.5, 10.2, 10.4, 10.3, 10.5, 10.4, 10.3]))["p99 ms"] == "same"
    # Three failed requests in a thousand where there were none.
    assert verdicts(_report([10.0] * 8, errors=30))["error rate"] == "worse"
    assert verdicts(_report([10.0] * 8, errors=1))["error rate"] == "same"
    # Too few intervals to know the noise.
    assert verdicts(_report([20.0, 20.0]))["p99 ms"] == "unknown"


def _metrics_text(server: str, count: int, total_us: float) -> str:
    if server == "triton":
        return "\n".join(
            [
                "# HELP nv_inference_request_success Number of successful inference requests",
                "# TYPE nv_inference_request_success counter",
                f'nv_inference_request_success{{model="emotion",version="1"}} {count}',
                f'nv_inference_request_success{{model="other",version="1"}} {count * 7}',
                f'nv_inference_queue_duration_us{{model="emotion",version="1"}} {total_us / 4}',
                f'nv_inference_compute_input_duration_us{{model="emotion",version="1"}} {total_us / 8}',
                f'nv_inference_compute_infer_duration_us{{model="emotion",version="1"}} {total_us / 2}',
                f'nv_inference_compute_output_duration_us{{model="emotion",version="1"}} {total_us / 8}',
                f'nv_inference_request_duration_us{{model="emotion",version="1"}} {total_us}',
                f'nv_inference_count{{model="emotion",version="1"}} {count * 2}',
                f'nv_inference_exec_count{{model="emotion",version="1"}} {count}',
            ]
        )
    # OVMS: docs/metrics.md of openvinotoolkit/model_server (histograms, labels name/version/interface).
    lines = []
    for interface in ("gRPC", "REST"):
        half = count // 2
        infer = f'api="KServe",interface="{interface}",method="ModelInfer",name="emotion",version="1"'
        ready = f'api="KServe",interface="{interface}",method="ModelReady",name="emotion"'
        timed = f'interface="{interface}",name="emotion",version="1"'
        lines += [
            f"ovms_requests_success{{{infer}}} {half}",
            f"ovms_requests_success{{{ready}}} 99",
            f"ovms_request_time_us_count{{{timed}}} {half}",
            f"ovms_request_time_us_sum{{{timed}}} {total_us / 2}",
            f'ovms_request_time_us_bucket{{{timed},le="+Inf"}} {half}',
        ]
    lines += [
        f'ovms_inference_time_us_count{{name="emotion",version="1"}} {count}',
        f'ovms_inference_time_us_sum{{name="emotion",version="1"}} {total_us * 0.75}',
        f'ovms_wait_for_infer_req_time_us_count{{name="emotion",version="1"}} {count}',
        f'ovms_wait_for_infer_req_time_us_sum{{name="emotion",version="1"}} {total_us * 0.125}',
    ]
    return "\n".join(lines)


@pytest.mark.parametrize("server", ["triton", "ovms"])
def test_server_side_times_from_both_metric_schemas(server: str) -> None:
    before = parse(_metrics_text(server, 100, 100_000.0))
    after = parse(_metrics_text(server, 300, 500_000.0))  # 200 requests, 400 ms in all: 2 ms each
    figures = server_side(before, after, "emotion")
    assert figures["server"] == server
    assert figures["requests"] == 200
    assert figures["request_ms"] == 2.0
    if server == "triton":
        assert (figures["queue_ms"], figures["compute_ms"], figures["batch_size"]) == (0.5, 1.5, 2.0)
    else:
        assert (figures["queue_ms"], figures["compute_ms"], figures["batch_size"]) == (0.25, 1.5, None)
    assert server_side(None, after, "emotion") is None


def rendered_services(*values: str) -> str:
    """The chart's Services, rendered by helm, as `kubectl get services -o json` prints them."""
    rendered = Render.template(release="rel", namespace="ns", set_values=values, chart=CHART)
    return json.dumps({"items": rendered.objects("Service")})


def test_release_services_are_found_by_the_charts_labels_and_port_names() -> None:
    services = discover(rendered_services(), release="rel")
    assert services == {
        "minio": Service("rel-emotion-serving-minio", "minio", {"api": 9000}),
        "ovms": Service("rel-emotion-serving-ovms", "ovms", {"grpc": 9000, "http": 8000}),
        "triton": Service(
            "rel-emotion-serving-triton", "triton", {"grpc": 8001, "http": 8000, "metrics": 8002}
        ),
    }
    local = {"ovms": {"grpc": 5001, "http": 5002}, "triton": {"grpc": 5003, "http": 5004, "metrics": 5005}}
    local["minio"] = {"api": 5006}
    assert run_arguments(local, protocol="http", bucket="models", with_package=False) == [
        "--protocol", "http",
        "--target", "ovms=127.0.0.1:5002", "--metrics", "ovms=http://127.0.0.1:5002/metrics",
        "--target", "triton=127.0.0.1:5004", "--metrics", "triton=http://127.0.0.1:5005/metrics",
        "--package", "s3://models", "--endpoint", "http://127.0.0.1:5006",
    ]  # fmt: skip


def test_release_pod_resources_are_one_pods_reservation_as_the_chart_renders_it() -> None:
    """Each server container's CPU request and its GPUs, for the cost section; the example's values."""
    rendered = Render.template(
        release="rel", namespace="ns", chart=CHART,
        values=[str(CHART.parents[1] / "examples" / "values" / "onprem-nfd-gpu.yaml")],
        set_values=("ovms.resources.requests.cpu=1500m", "triton.gpu.resourceName=nvidia.com/mig-3g.40gb"),
    )  # fmt: skip
    reserved = pod_resources(json.dumps({"items": rendered.objects("Deployment")}), release="rel")
    assert reserved == {"ovms": {"cpu": 1.5}, "triton": {"cpu": 2.0, "gpu": 1.0}}  # a MIG slice is a GPU
    assert resources_arguments(reserved) == [
        "--resources",
        "ovms=cpu:1.5",
        "--resources",
        "triton=cpu:2,gpu:1",
    ]
    cpu_only = Render.template(
        release="rel", namespace="ns", chart=CHART, set_values=("triton.gpu.enabled=false",)
    )
    assert (
        "gpu"
        not in pod_resources(json.dumps({"items": cpu_only.objects("Deployment")}), release="rel")["triton"]
    )
    assert pod_resources(json.dumps({"items": rendered.objects("Deployment")}), release="other") == {}
    # Inside the cluster the Service reaches every ready replica (the status: OVMS's HPA sets its count).
    deployments = rendered.objects("Deployment")
    for deployment, ready in zip(deployments, (3, 2), strict=True):
        deployment["status"] = {"readyReplicas": ready}
    whole = pod_resources(json.dumps({"items": deployments}), release="rel", replicas=True)
    assert whole == {"ovms": {"cpu": 4.5}, "triton": {"cpu": 4.0, "gpu": 2.0}}


def test_release_without_servers_and_kubectl_lines() -> None:
    from emotion_contract.errors import BadInput

    with pytest.raises(BadInput) as err:
        discover(rendered_services("ovms.enabled=false", "triton.enabled=false"), release="rel")
    assert err.value.message == "release rel: no ovms or triton Service with the chart's labels"
    assert forwarded("Forwarding from 127.0.0.1:41235 -> 8001\n") == (8001, 41235)
    assert forwarded("Handling connection for 41235") is None


def test_in_cluster_runs_are_named_by_release_and_time_and_leave_the_jobs_options_to_the_chart() -> None:
    from emotion_contract.errors import BadInput
    from loadtest.incluster import check_run_args, run_name

    assert run_name("emotion", now=1796184000.0) == "emotion-20261202-040000"
    assert run_name("Prod.Serving", now=1796184000.0) == "prod.serving-20261202-040000"
    assert len(run_name("x" * 80, now=1796184000.0)) == 63
    check_run_args(["--concurrency", "1,4", "--price", "triton=2.9"])
    for owned in ("--target=a=b:1", "--output", "--keep-report=x", "--package", "--endpoint=http://x"):
        with pytest.raises(BadInput) as err:
            check_run_args(["--concurrency", "1", owned])
        assert (
            err.value.message == f"{owned.split('=')[0]}: the chart's load-test Job sets it from the release"
        )


def test_text_input_from_a_package_without_the_text_model(
    capsys: pytest.CaptureFixture[str], tiny_package: Path, tmp_path: Path
) -> None:
    """`--input text` against a package built with `--text off`: exit 3, one line, before any target is
    asked or anything is written; `smoke --input text` says the same."""
    package = tmp_path / "package"
    shutil.copytree(tiny_package, package)
    ready_path = package / "manifests/emotion/READY"
    ready = json.loads(ready_path.read_text())
    manifest_path = package / ready["manifest"]
    manifest = json.loads(manifest_path.read_text())
    manifest["models"]["text"] = None
    manifest_path.write_text(json.dumps(manifest))
    ready["sha256"] = hashlib.sha256(manifest_path.read_bytes()).hexdigest()
    ready_path.write_text(json.dumps(ready))
    message = (
        f"--input text: package emotion v{ready['version']} has no raw-text model (its manifest says so)"
    )
    output = tmp_path / "report"
    target = f"t=127.0.0.1:{free_port()}"
    for argv in (
        [
            "run",
            "--target",
            target,
            "--package",
            package,
            "--input",
            "text",
            "--rate",
            "5",
            "--output",
            output,
        ],
        ["smoke", "--target", target, "--package", package, "--input", "text"],
    ):
        code, out, err = run_main(capsys, "--log-format", "text", *argv)
        assert (code, out, err.splitlines()) == (ExitCode.BAD_INPUT, "", [f"loadtest: {message}"])
    assert not output.exists()
