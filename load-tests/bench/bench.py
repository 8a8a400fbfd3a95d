"""Benchmark (not a test): the load tester's own efficiency and latency next to perf_analyzer, ghz and vegeta.

Against one local Triton serving the test suite's `emotion` model (python backend running a tiny ONNX
graph, so that the client is what is measured), in rounds that alternate the tools, it measures four
scenarios, each with loadtest (one worker), perf_analyzer (Triton's own load generator, C++) and the Go peer
(ghz for gRPC, vegeta for HTTP):

- closed loop at --concurrency requests in flight, gRPC and HTTP: requests per second and requests per
  client CPU-second;
- open loop at a fixed --rate, gRPC and HTTP: p50 and p99 (loadtest times from the intended send, the others
  from the actual send; below saturation they should agree), and requests per client CPU-second.

Requests per client CPU-second: loadtest's from its report (answers in the measured window over its
engine's CPU in that window, the marginal cost); perf_analyzer's, ghz's and vegeta's are the requests the
server counted while the tool ran (Triton's statistics) over the tool's whole CPU (getrusage of the child:
start-up included, which is small for them). loadtest's whole run (Python start-up, the report and its
plots included) is printed too, and its start-up cost: the CPU its processes had used when the server saw
the first request.

It prints the medians over the rounds as a Markdown table, then the ratios loadtest / perf_analyzer (the
acceptance figures of docs/loadtest.md) and loadtest / ghz, vegeta. Run with `make bench-loadtest`.
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import resource
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from devstack.triton import TritonServer
from loadtest.corpus import load_corpus
from loadtest.package import PackageRef
from loadtest.prepare import prepare_inputs, requests_for
from loadtest.protocol import grpc_request, http_request

TESTS = Path(__file__).resolve().parents[1] / "tests"
MODEL = "emotion"


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def served(http_url: str) -> int:
    """Requests the server has answered for the model (Triton's statistics extension)."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{MODEL}/stats", timeout=5) as answer:
        (model,) = json.load(answer)["model_stats"]
    stats = model["inference_stats"]
    return stats["success"]["count"] + stats["fail"]["count"]


def tree_cpu(process: psutil.Process) -> float:
    """CPU of a process, its reaped children and its live descendants."""
    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


class Bench:
    def __init__(
        self, triton: TritonServer, scratch: Path, package: Path, options: argparse.Namespace
    ) -> None:
        self.triton, self.scratch, self.package, self.options = triton, scratch, package, options
        prepared = prepare_inputs(
            package=PackageRef(source=str(package), name=MODEL).open(),
            corpus=load_corpus(),
            cache_dir=scratch / "inputs",
        )
        (self.request,) = requests_for(prepared, batch_size=1, text=False)[:1]

    # -- loadtest ----------------------------------------------------------------------------------------

    def loadtest(self, protocol: str, load: list[str]) -> dict[str, Any]:
        url = self.triton.grpc_url if protocol == "grpc" else self.triton.http_url
        output = self.scratch / "lt"
        d = self.options.duration
        argv = [sys.executable, "-m", "loadtest", "run", "--target", f"t={url}", "--protocol", protocol]
        argv += ["--package", str(self.package), "--workers", "1", "--warmup", "2s", "--duration", f"{d}s"]
        argv += ["--max-lag", "1s", *load, "--output", str(output)]
        before_cpu, before_served = child_cpu(), served(self.triton.http_url)
        process = psutil.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        startup = None
        while process.poll() is None:
            if startup is None:
                cpu = tree_cpu(process)  # read before the count: an upper bound when the count moved
                if served(self.triton.http_url) > before_served:
                    startup = cpu
            time.sleep(0.02)
        stderr = process.stderr.read()
        process.wait()
        if process.returncode not in (0, 4, 5):
            raise SystemExit(f"loadtest failed ({process.returncode}): {stderr}")
        whole_cpu = child_cpu() - before_cpu
        (result,) = json.loads((output / "report.json").read_text())["results"]
        return {
            "rps": result["throughput_rps"],
            "per_cpu": result["client_cpu"]["requests_per_cpu_second"],
            "per_cpu_whole": (served(self.triton.http_url) - before_served) / whole_cpu,
            "startup_cpu": startup,
            "p50": result["latency_ms"]["p50"],
            "p99": result["latency_ms"]["p99"],
            "errors": result["errors"],
            "valid": result["valid"],
        }

    # -- the peers ---------------------------------------------------------------------------------------

    def _child(self, argv: list[str], env: dict[str, str] | None = None) -> tuple[str, float, int]:
        """stdout, CPU seconds (user + system, threads and children) and the requests the server counted."""
        before_cpu, before_served = child_cpu(), served(self.triton.http_url)
        done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{argv[0]} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done.stdout, child_cpu() - before_cpu, served(self.triton.http_url) - before_served

    def perf_analyzer(self, protocol: str, load: list[str]) -> dict[str, Any]:
        binary = Path(self.options.perf_analyzer)
        data = self.scratch / "perf_input.json"
        row = {
            n: {"content": a.reshape(-1).tolist(), "shape": [a.shape[1]]}
            for n, a in self.request.inputs.items()
        }
        data.write_text(json.dumps({"data": [row]}))
        report = self.scratch / "perf.csv"
        url = self.triton.grpc_url if protocol == "grpc" else self.triton.http_url
        # Three windows that make up the duration; any spread counts as stable (the runs are compared, not
        # searched), so perf_analyzer measures duration seconds after its own warm-up window.
        window_ms = int(self.options.duration * 1000 / 3)
        argv = [str(binary), "-m", MODEL, "-u", url, "-i", protocol, "--input-data", str(data)]
        argv += [
            "--measurement-interval",
            str(window_ms),
            "--stability-percentage",
            "999",
            "--max-trials",
            "3",
        ]
        argv += ["-f", str(report), *load]
        env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent / "lib")}
        _, cpu, count = self._child(argv, env)
        with report.open() as handle:
            (figures,) = list(csv.DictReader(handle))
        return {
            "rps": float(figures["Inferences/Second"]),
            "per_cpu": count / cpu,
            "p50": int(figures["p50 latency"]) / 1000,
            "p99": int(figures["p99 latency"]) / 1000,
            "errors": 0,
        }

    def ghz(self, load: list[str]) -> dict[str, Any]:
        from google.protobuf import descriptor_pb2
        from tritonclient.grpc import model_config_pb2, service_pb2

        files = descriptor_pb2.FileDescriptorSet()
        for module in (model_config_pb2, service_pb2):
            module.DESCRIPTOR.CopyToProto(files.file.add())
        protoset = self.scratch / "triton.protoset"
        protoset.write_bytes(files.SerializeToString())
        payload = self.scratch / "request.bin"
        payload.write_bytes(grpc_request(MODEL, self.request))
        argv = [self.options.ghz, "--insecure", "--protoset", str(protoset)]
        argv += [
            "--call",
            "inference.GRPCInferenceService/ModelInfer",
            "--binary",
            "--binary-file",
            str(payload),
        ]
        argv += [
            "--cpus",
            "1",
            "--format",
            "json",
            "-z",
            f"{self.options.duration}s",
            *load,
            self.triton.grpc_url,
        ]
        out, cpu, count = self._child(argv)
        report = json.loads(out)
        latency = {d["percentage"]: d["latency"] / 1e6 for d in report["latencyDistribution"]}
        errors = sum(report.get("errorDistribution", {}).values())
        return {
            "rps": report["rps"],
            "per_cpu": count / cpu,
            "p50": latency[50],
            "p99": latency[99],
            "errors": errors,
        }

    def vegeta(self, load: list[str]) -> dict[str, Any]:
        raw = http_request(self.triton.http_url, MODEL, self.request)
        head, _, body = raw.partition(b"\r\n\r\n")
        headers = {}
        for line in head.decode().split("\r\n")[1:]:
            name, _, value = line.partition(": ")
            if name.lower() not in {"host", "content-length"}:
                headers[name] = [value]
        target = {
            "method": "POST",
            "url": f"http://{self.triton.http_url}/v2/models/{MODEL}/infer",
            "body": base64.b64encode(body).decode(),
            "header": headers,
        }
        targets, results = self.scratch / "targets.json", self.scratch / "vegeta.bin"
        targets.write_text(json.dumps(target) + "\n")
        binary = self.options.vegeta
        _, cpu, count = self._child(
            [
                binary,
                "attack",
                "-format=json",
                f"-targets={targets}",
                f"-output={results}",
                f"-duration={self.options.duration}s",
                *load,
            ]
        )
        report = json.loads(
            subprocess.run(
                [binary, "report", "-type=json", str(results)], capture_output=True, text=True, check=True
            ).stdout
        )
        return {
            "rps": report["throughput"],
            "per_cpu": count / cpu,
            "p50": report["latencies"]["50th"] / 1e6,
            "p99": report["latencies"]["99th"] / 1e6,
            "errors": report["requests"] - round(report["success"] * report["requests"]),
        }

    def plan(self) -> dict[str, Callable[[], dict[str, Any]]]:
        c, r = self.options.concurrency, self.options.rate
        closed = f"closed c={c}"
        rate = f"rate {r}/s"
        return {
            f"{closed} grpc loadtest": lambda: self.loadtest("grpc", ["--concurrency", str(c)]),
            f"{closed} grpc perf_analyzer": lambda: self.perf_analyzer(
                "grpc", ["--concurrency-range", str(c)]
            ),
            f"{closed} grpc ghz": lambda: self.ghz(["-c", str(c)]),
            f"{closed} http loadtest": lambda: self.loadtest("http", ["--concurrency", str(c)]),
            f"{closed} http perf_analyzer": lambda: self.perf_analyzer(
                "http", ["--concurrency-range", str(c)]
            ),
            f"{closed} http vegeta": lambda: self.vegeta(["-rate=0", f"-max-workers={c}", f"-workers={c}"]),
            f"{rate} grpc loadtest": lambda: self.loadtest("grpc", ["--rate", str(r)]),
            f"{rate} grpc perf_analyzer": lambda: self.perf_analyzer(
                "grpc", ["--request-rate-range", str(r), "--request-distribution", "constant"]
            ),
            f"{rate} grpc ghz": lambda: self.ghz(["-c", "16", "--async", "-r", str(r)]),
            f"{rate} http loadtest": lambda: self.loadtest("http", ["--rate", str(r)]),
            f"{rate} http perf_analyzer": lambda: self.perf_analyzer(
                "http", ["--request-rate-range", str(r), "--request-distribution", "constant"]
            ),
            f"{rate} http vegeta": lambda: self.vegeta([f"-rate={r}/s"]),
        }


def median(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(values) if values else None


def report(rows: dict[str, list[dict[str, Any]]], options: argparse.Namespace) -> None:
    c, r = options.concurrency, options.rate
    print(f"Medians of {options.rounds} rounds, {options.duration} s each:\n")
    print("| measurement | req/s | req per client CPU-s | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, results in rows.items():
        rps, per_cpu, p50, p99, errors = (
            median(results, k) for k in ("rps", "per_cpu", "p50", "p99", "errors")
        )
        print(f"| {name} | {rps:.0f} | {per_cpu:.0f} | {p50:.2f} | {p99:.2f} | {errors:.0f} |")
    print()
    loadtests = [row for name, results in rows.items() if name.endswith(" loadtest") for row in results]
    startup = [x["startup_cpu"] for x in loadtests if x["startup_cpu"] is not None]
    print(
        f"- loadtest start-up: {statistics.median(startup):.2f} CPU-s before the first request (median of "
        f"{len(startup)} runs, max {max(startup):.2f}); its whole runs (start-up, warmup, report and plots "
        f"included): {median(loadtests, 'per_cpu_whole'):.0f} req/CPU-s"
    )
    for scenario in (f"closed c={c}", f"rate {r}/s"):
        for protocol, peer in (("grpc", "ghz"), ("http", "vegeta")):
            ours = rows[f"{scenario} {protocol} loadtest"]
            for other in ("perf_analyzer", peer):
                theirs = rows[f"{scenario} {protocol} {other}"]
                ratio = median(ours, "per_cpu") / median(theirs, "per_cpu")
                line = f"- {scenario} {protocol}: {ratio:.0%} of {other}'s requests per client CPU-second"
                if scenario.startswith("rate"):
                    p50 = median(ours, "p50") / median(theirs, "p50") - 1
                    p99 = median(ours, "p99") / median(theirs, "p99") - 1
                    line += f"; p50 {p50:+.0%}, p99 {p99:+.0%}"
                print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--perf-analyzer", required=True)
    parser.add_argument("--ghz", required=True)
    parser.add_argument("--vegeta", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rate", type=int, default=300, help="the fixed rate for the latency comparison")
    parser.add_argument("--only", default="", help="run only the measurements whose name contains this")
    options = parser.parse_args()

    builders = runpy.run_path(str(TESTS / "conftest.py"))
    with tempfile.TemporaryDirectory(prefix="bench-loadtest-") as tmp:
        scratch = Path(tmp)
        package = builders["build_tiny_package"](scratch / "package")
        repository = builders["build_repository"](scratch / "repo", package, {MODEL: {}})
        with TritonServer(
            root=scratch / "triton", repository=str(repository), env=builders["triton_env"]()
        ) as triton:
            bench = Bench(triton, scratch, package, options)
            plan = {k: v for k, v in bench.plan().items() if options.only in k}
            rows: dict[str, list[dict[str, Any]]] = {}
            for round_ in range(options.rounds):
                for name, measure in plan.items():
                    started = time.monotonic()
                    rows.setdefault(name, []).append(measure())
                    seconds = time.monotonic() - started
                    print(f"round {round_ + 1}: {name}: {rows[name][-1]} ({seconds:.0f} s)", file=sys.stderr)
    if options.only:
        for name, results in rows.items():
            print(name, {k: median(results, k) for k in results[0] if k != "valid"})
        return
    report(rows, options)


if __name__ == "__main__":
    main()
