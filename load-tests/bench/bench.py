"""Benchmark (not a test): the load tester's own efficiency next to ghz (gRPC) and vegeta (HTTP).

Against one local Triton serving the test suite's `emotion` model (python backend running a tiny ONNX
graph), it measures, in rounds that alternate the tools:

- saturation: a closed loop of --concurrency requests in flight for --duration; requests per second and
  requests per client CPU-second (loadtest: its worker processes' CPU over the measured window; ghz and
  vegeta: the whole process, from getrusage of the child);
- a fixed rate below saturation: p50 and p99 from each tool (loadtest times from the intended send,
  ghz and vegeta from the actual send; below saturation they should agree).

It prints the medians over the rounds as a Markdown table, and the ratios loadtest / peer.
Run with `make bench-loadtest` (which builds ghz and vegeta first).
"""

from __future__ import annotations

import argparse
import base64
import json
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from devstack.triton import TritonServer
from loadtest.corpus import load_corpus
from loadtest.package import open_package
from loadtest.prepare import prepare_inputs, requests_for
from loadtest.protocol import GrpcSender, HttpSender

TESTS = Path(__file__).resolve().parents[1] / "tests"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_child(argv: list[str]) -> tuple[str, float]:
    """stdout of a command and the CPU seconds it used (user + system, its threads and children)."""
    before = child_cpu()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    return done.stdout, child_cpu() - before


def loadtest(args: list[str], output: Path) -> dict[str, Any]:
    argv = [sys.executable, "-m", "loadtest", "run", *args, "--output", str(output)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 4, 5):
        raise SystemExit(f"loadtest failed ({done.returncode}): {done.stderr}")
    (result,) = json.loads((output / "report.json").read_text())["results"]
    return {
        "rps": result["throughput_rps"],
        "per_cpu": result["client_cpu"]["requests_per_cpu_second"],
        "p50": result["latency_ms"]["p50"],
        "p99": result["latency_ms"]["p99"],
        "errors": result["errors"],
        "valid": result["valid"],
    }


def ghz(binary: str, protoset: Path, payload: Path, url: str, extra: list[str]) -> dict[str, Any]:
    call = "inference.GRPCInferenceService/ModelInfer"
    argv = [
        binary,
        "--insecure",
        "--protoset",
        str(protoset),
        "--call",
        call,
        "--binary",
        "--binary-file",
        str(payload),
        "--cpus",
        "1",
        "--format",
        "json",
        *extra,
        url,
    ]
    out, cpu = run_child(argv)
    report = json.loads(out)
    latency = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"]}
    return {
        "rps": report["rps"],
        "per_cpu": report["count"] / cpu,
        "p50": latency[50],
        "p99": latency[99],
        "errors": sum(report.get("errorDistribution", {}).values()),
    }


def vegeta(binary: str, targets: Path, extra: list[str], scratch: Path) -> dict[str, Any]:
    results = scratch / "vegeta.bin"
    _, cpu = run_child(
        [binary, "attack", "-format=json", f"-targets={targets}", f"-output={results}", *extra]
    )
    report = json.loads(
        subprocess.run(
            [binary, "report", "-type=json", str(results)], capture_output=True, text=True, check=True
        ).stdout
    )
    return {
        "rps": report["throughput"],
        "per_cpu": report["requests"] / cpu,
        "p50": report["latencies"]["50th"] / 1e6,
        "p99": report["latencies"]["99th"] / 1e6,
        "errors": report["requests"] - round(report["success"] * report["requests"]),
    }


def peer_inputs(package: Path, scratch: Path, http_url: str) -> tuple[Path, Path, Path]:
    """ghz's protoset (tritonclient's compiled protos) and request, vegeta's targets: the first sentence."""
    from google.protobuf import descriptor_pb2
    from tritonclient.grpc import model_config_pb2, service_pb2

    files = descriptor_pb2.FileDescriptorSet()
    for module in (model_config_pb2, service_pb2):
        module.DESCRIPTOR.CopyToProto(files.file.add())
    protoset = scratch / "triton.protoset"
    protoset.write_bytes(files.SerializeToString())

    prepared = prepare_inputs(
        package=open_package(source=str(package), name="emotion"),
        corpus=load_corpus(),
        cache_dir=scratch / "inputs",
    )
    requests = requests_for(prepared, batch_size=1, text=False)[:1]
    payload = scratch / "request.bin"
    payload.write_bytes(GrpcSender("unused:1", "emotion", requests).payload(0))
    raw = HttpSender(http_url, "emotion", requests).payload(0)
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = {}
    for line in head.decode().split("\r\n")[1:]:
        name, _, value = line.partition(": ")
        if name.lower() not in {"host", "content-length"}:
            headers[name] = [value]
    target = {
        "method": "POST",
        "url": f"http://{http_url}/v2/models/emotion/infer",
        "body": base64.b64encode(body).decode(),
        "header": headers,
    }
    targets = scratch / "targets.json"
    targets.write_text(json.dumps(target) + "\n")
    return protoset, payload, targets


def median(rows: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ghz", required=True)
    parser.add_argument("--vegeta", required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=int, default=200, help="the fixed rate for the latency comparison")
    options = parser.parse_args()

    builders = runpy.run_path(str(TESTS / "conftest.py"))
    with tempfile.TemporaryDirectory(prefix="bench-loadtest-") as tmp:
        scratch = Path(tmp)
        package = builders["build_tiny_package"](scratch / "package")
        repository = builders["build_repository"](scratch / "repo", package, {"emotion": {}})
        with TritonServer(
            root=scratch / "triton", repository=str(repository), env=builders["triton_env"]()
        ) as triton:
            protoset, payload, targets = peer_inputs(package, scratch, triton.http_url)
            d, c, r = options.duration, options.concurrency, options.rate
            common = [
                "--package",
                str(package),
                "--workers",
                "1",
                "--warmup",
                "2s",
                "--duration",
                f"{d}s",
                "--max-lag",
                "1s",
            ]
            rows: dict[str, list[dict[str, Any]]] = {}
            plan = {
                "saturation grpc loadtest": lambda: loadtest(
                    ["--target", f"t={triton.grpc_url}", "--concurrency", str(c), *common], scratch / "lt"
                ),
                "saturation grpc ghz": lambda: ghz(
                    options.ghz, protoset, payload, triton.grpc_url, ["-c", str(c), "-z", f"{d}s"]
                ),
                "saturation http loadtest": lambda: loadtest(
                    [
                        "--target",
                        f"t={triton.http_url}",
                        "--protocol",
                        "http",
                        "--concurrency",
                        str(c),
                        *common,
                    ],
                    scratch / "lt",
                ),
                "saturation http vegeta": lambda: vegeta(
                    options.vegeta,
                    targets,
                    ["-rate=0", f"-max-workers={c}", f"-workers={c}", f"-duration={d}s"],
                    scratch,
                ),
                f"rate {r}/s grpc loadtest": lambda: loadtest(
                    ["--target", f"t={triton.grpc_url}", "--rate", str(r), *common], scratch / "lt"
                ),
                f"rate {r}/s grpc ghz": lambda: ghz(
                    options.ghz,
                    protoset,
                    payload,
                    triton.grpc_url,
                    ["-c", str(c), "--async", "-r", str(r), "-z", f"{d}s"],
                ),
                f"rate {r}/s http loadtest": lambda: loadtest(
                    ["--target", f"t={triton.http_url}", "--protocol", "http", "--rate", str(r), *common],
                    scratch / "lt",
                ),
                f"rate {r}/s http vegeta": lambda: vegeta(
                    options.vegeta, targets, [f"-rate={r}/s", f"-duration={d}s"], scratch
                ),
            }
            for round_ in range(options.rounds):
                for name, measure in plan.items():
                    started = time.monotonic()
                    rows.setdefault(name, []).append(measure())
                    seconds = time.monotonic() - started
                    print(f"round {round_ + 1}: {name}: {rows[name][-1]} ({seconds:.0f} s)", file=sys.stderr)

    print(
        f"Medians of {options.rounds} rounds, {options.duration} s each, concurrency {options.concurrency}:\n"
    )
    print("| measurement | req/s | req per client CPU-s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, results in rows.items():
        rps, per_cpu, p50, p99, errors = (
            median(results, k) for k in ("rps", "per_cpu", "p50", "p99", "errors")
        )
        print(f"| {name} | {rps:.0f} | {per_cpu:.0f} | {p50:.2f} | {p99:.2f} | {errors:.0f} |")
    print()
    for protocol, peer in (("grpc", "ghz"), ("http", "vegeta")):
        ours, theirs = rows[f"saturation {protocol} loadtest"], rows[f"saturation {protocol} {peer}"]
        ratio = median(ours, "per_cpu") / median(theirs, "per_cpu")
        print(f"- {protocol}: loadtest does {ratio:.0%} of {peer}'s requests per client CPU-second")
        rate = f"rate {options.rate}/s {protocol}"
        ours, theirs = rows[f"{rate} loadtest"], rows[f"{rate} {peer}"]
        p50 = f"p50 {median(ours, 'p50'):.2f} vs {median(theirs, 'p50'):.2f} ms"
        p99 = f"p99 {median(ours, 'p99'):.2f} vs {median(theirs, 'p99'):.2f} ms"
        print(f"- {protocol} at {options.rate}/s: {p50}, {p99} (loadtest vs {peer})")


if __name__ == "__main__":
    main()
