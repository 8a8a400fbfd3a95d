"""`loadtest run`: drive every target through the same levels and collect one report.

Order: for each level, every target in turn (so slow drift of the machine touches all targets alike), or,
in SLO-search mode, one search per target. Each level: the workers get their shares and a common start
time; the runner scrapes each server's /metrics when the warmup ends and again after the level, merges the
workers' histograms and counters into one figure per interval of the window (empty ones too), and judges
the level (valid; thresholds, a throughput stall among them). The report is rewritten
after every level, so a run that is stopped or loses a server still leaves a complete, partial report.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emotion_contract.errors import BadInput, ExitCode, ToolError, Unavailable
from emotion_contract.logs import log
from loadtest.columns import level_name, summary_line
from loadtest.package import Package, PackageRef
from loadtest.pool import WorkerPool
from loadtest.prepare import Prepared
from loadtest.results import Tally, find_stall, level_json, stall_breach
from loadtest.servermetrics import scrape, server_side
from loadtest.targets import Target, check_ready, is_live
from loadtest.worker import STALL_HOOK, Setup, Share, split

#: Workers get their command this long before the level starts.
START_DELAY_S = 0.3
#: Stop a worker's level after the server has refused connections for this long.
ABORT_AFTER_S = 2.0
#: SLO search: stop bisecting when the bracket is this narrow (relative).
SEARCH_PRECISION = 0.05
MISMATCH = "mismatch"


@dataclass(frozen=True)
class RunConfig:
    targets: tuple[Target, ...]
    protocol: str
    model: str | None  # the served model; None: the package's (emotion, or emotion-text for raw text)
    text: bool
    closed: bool  # concurrency levels (closed loop) or rates (open loop)
    levels: tuple[float, ...]
    poisson: bool
    slo_search: bool
    max_rate: float
    search_steps: int
    duration: float
    warmup: float
    timeout: float
    interval: float
    max_lag_ms: float
    batch_size: int
    workers: int
    max_in_flight: int
    tolerance: float
    slo_p99_ms: float | None
    max_error_rate: float
    max_mismatch_rate: float
    stall_share: float
    seed: int
    #: Per target: what serving it costs per hour (USD) and its CPUs and GPUs (loadtest.cost); no default.
    prices: dict[str, float] = field(default_factory=dict)
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    #: How the client reaches the servers (report.PATHS): what the latencies include besides the servers.
    path: str = "direct"

    def describe(self) -> dict[str, Any]:
        described = asdict(self)
        described["targets"] = [asdict(t) for t in self.targets]
        described["mode"] = "concurrency" if self.closed else "rate"
        described["arrival"] = None if self.closed else ("poisson" if self.poisson else "fixed")
        return described


class Run:
    """One run: its configuration, inputs, the results so far, and where the report goes."""

    def __init__(
        self,
        config: RunConfig,
        *,
        package: Package,
        prepared: Prepared,
        corpus_source: str,
        write: Callable[[dict[str, Any], bool], None],
        progress: Callable[[str], None] = log,
    ) -> None:
        self.config = config
        self.prepared = prepared
        self.write = write
        self.progress = progress
        self.results: list[dict[str, Any]] = []
        self.searches: dict[str, dict[str, Any]] = {}
        self.report: dict[str, Any] = {
            "schema": "loadtest-report/1",
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "finished": None,
            "status": "running",
            "exit_code": None,
            "problems": [],
            "config": config.describe(),
            "inputs": {
                "package": package.describe(),
                "corpus": {"source": corpus_source, "sentences": len(prepared)},
                "requests": len(prepared),
                "labels": list(prepared.label_names),
            },
            "client": _client_info(),
            "results": self.results,
            "slo_search": self.searches,
        }

    # -- the whole run -------------------------------------------------------------------------------------

    def execute(self) -> ExitCode:
        config = self.config
        for target in config.targets:
            check_ready(target, protocol=config.protocol, model=config.model)
        try:
            with WorkerPool(config.workers) as pool:
                for target in config.targets:
                    self._setup(pool, target)
                if config.slo_search:
                    for target in config.targets:
                        self._search(pool, target)
                else:
                    for value in config.levels:
                        for target in config.targets:
                            self._level(pool, target, value)
        except Unavailable as err:
            return self._finish(ExitCode.UNAVAILABLE, str(err), partial=True)
        except KeyboardInterrupt:
            return self._finish(ExitCode.INTERRUPTED, "interrupted", partial=True)
        except ToolError as err:
            return self._finish(err.code, err.message, partial=True)
        return self._finish(self._verdict(), None, partial=False)

    def _verdict(self) -> ExitCode:
        if any(not r["valid"] for r in self.results):
            return ExitCode.INVALID
        if any(_counted_breaches(r) for r in self.results):
            return ExitCode.THRESHOLD
        if any(s["max_rate"] is None for s in self.searches.values()):
            return ExitCode.THRESHOLD
        return ExitCode.OK

    def _finish(self, code: ExitCode, problem: str | None, *, partial: bool) -> ExitCode:
        if problem:
            self.report["problems"].append(problem)
        for result in self.results:
            self.report["problems"].extend(
                f"{result['target']} {level_name(result)}: {b}" for b in result["breaches"]
            )
            if not result["valid"]:
                self.report["problems"].append(
                    f"{result['target']} {level_name(result)}: {result['invalid_reason']}"
                )
        for name, search in self.searches.items():
            if search["max_rate"] is None:
                self.report["problems"].append(
                    f"{name}: no rate met the SLO (lowest probed {search['lowest']} req/s)"
                )
        for result in self.results:
            if result.get("unchecked"):
                self.report["problems"].append(
                    f"{result['target']} {level_name(result)}: {result['unchecked']} answers differed from "
                    "the reference in more ways than the engine keeps (65,536 distinct): not checked"
                )
        stalled = sum(r["test_stalls"] for r in self.results)
        if stalled:
            self.report["problems"].append(
                f"test hook {STALL_HOOK} is set: the workers stalled their event loop {stalled} times "
                "on purpose"
            )
        self.report["status"] = "partial" if partial else _STATUS[code]
        self.report["exit_code"] = int(code)
        self.report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.write(self.report, True)
        return code

    # -- targets and levels --------------------------------------------------------------------------------

    def _setup(self, pool: WorkerPool, target: Target) -> None:
        config = self.config
        setup = Setup(
            key=target.name,
            url=target.url,
            protocol=config.protocol,
            model=config.model,
            text=config.text,
            inputs=str(self.prepared.path),
            batch_size=config.batch_size,
            tolerance=config.tolerance,
        )
        for answer in pool.setup(setup, timeout=60.0):
            if "error" in answer:
                raise Unavailable(f"target {target.name} ({target.url}): {answer['error']}")

    def _level(
        self, pool: WorkerPool, target: Target, value: float, *, probe: bool = False
    ) -> dict[str, Any]:
        config = self.config
        if not is_live(target, protocol=config.protocol):
            raise Unavailable(f"target {target.name} ({target.url}) is down before level {value:g}")
        shares = self._shares(pool.size, target, value)
        conns = pool.start_level(shares)
        start_at = shares[0].start_at
        measure_at = start_at + config.warmup
        time.sleep(max(0.0, measure_at - time.monotonic()))
        before = scrape(target.metrics_url) if target.metrics_url else None
        deadline = measure_at + config.duration + config.timeout + 30.0
        answers = pool.finish_level(conns, deadline=deadline)
        after = scrape(target.metrics_url) if target.metrics_url else None
        result = self._merge(target, value, answers, len(shares))
        result["server"] = server_side(before, after, config.model) if target.metrics_url else None
        result["probe"] = probe
        self._judge(result)
        self.results.append(result)
        self.progress(_progress_line(result))
        self.write(self.report, False)
        if result["aborted"] and not is_live(target, protocol=config.protocol):
            raise Unavailable(
                f"target {target.name} ({target.url}) died during {level_name(result)}: {result['aborted']}"
            )
        return result

    def _shares(self, available: int, target: Target, value: float) -> list[Share]:
        config = self.config
        if config.closed:
            counts = [c for c in split(int(value), min(available, int(value))) if c]
            in_flight = [0] * len(counts)
        else:
            workers = max(1, min(available, config.max_in_flight))
            counts = [0] * workers
            in_flight = split(config.max_in_flight, workers)
        start_at = time.monotonic() + START_DELAY_S
        return [
            Share(
                key=target.name,
                index=i,
                workers=len(counts),
                closed=config.closed,
                concurrency=counts[i],
                rate=0.0 if config.closed else value,
                poisson=config.poisson,
                max_in_flight=in_flight[i],
                start_at=start_at,
                warmup=config.warmup,
                duration=config.duration,
                timeout=config.timeout,
                interval=config.interval,
                seed=config.seed + 1000 * len(self.results),
                abort_after=ABORT_AFTER_S,
            )
            for i in range(len(counts))
        ]

    def _merge(
        self, target: Target, value: float, answers: list[dict[str, Any]], workers: int
    ) -> dict[str, Any]:
        """The level's entry of report.json, from the workers' tallies merged (loadtest.results)."""
        config = self.config
        return level_json(
            Tally.merged(answers),
            target=target.name,
            value=value,
            workers=workers,
            closed=config.closed,
            poisson=config.poisson,
            duration=config.duration,
            interval=config.interval,
            batch_size=config.batch_size,
            labels=self.prepared.label_names,
        )

    def _judge(self, result: dict[str, Any]) -> None:
        config = self.config
        lag_p99 = result["lag_ms"]["p99"]
        reason = None
        if result["requests"] == 0:
            reason = "no request was sent in the measured window"
        elif lag_p99 is not None and lag_p99 > config.max_lag_ms:
            reason = (
                f"the client fell behind: p99 {result['lag_kind']} lag {lag_p99:g} ms > --max-lag "
                f"{config.max_lag_ms:g} ms (use more --workers, a lower rate, or a less busy client machine)"
            )
        result["valid"] = reason is None
        result["invalid_reason"] = reason
        breaches = []
        p99 = result["latency_ms"]["p99"]
        if config.slo_p99_ms is not None and (p99 is None or p99 > config.slo_p99_ms):
            breaches.append(f"p99 {p99} ms > --slo-p99-ms {config.slo_p99_ms:g}")
        if result["error_rate"] is not None and result["error_rate"] > config.max_error_rate:
            breaches.append(
                f"error rate {result['error_rate']:g} > --max-error-rate {config.max_error_rate:g}"
            )
        if result["mismatch_rate"] is not None and result["mismatch_rate"] > config.max_mismatch_rate:
            rate, bound = result["mismatch_rate"], config.max_mismatch_rate
            breaches.append(f"{MISMATCH} rate {rate:g} > --max-mismatch-rate {bound:g}")
        result["stall"] = find_stall(result["intervals"], share=config.stall_share)
        if result["stall"]["stalled"]:
            breaches.append(stall_breach(result["stall"], result["intervals"], config.stall_share))
        result["breaches"] = breaches

    # -- SLO search ----------------------------------------------------------------------------------------

    def _search(self, pool: WorkerPool, target: Target) -> None:
        """The highest open-loop rate whose p99 stays under --slo-p99-ms (and errors under their bound):
        double from the first --rate until a probe fails (or --max-rate), halve down when the first fails,
        then bisect the bracket for --search-steps probes or until it is within 5 %."""
        config = self.config
        search: dict[str, Any] = {"max_rate": None, "lowest": None, "probes": []}
        self.searches[target.name] = search

        def passes(rate: float) -> bool:
            result = self._level(pool, target, round(rate, 3), probe=True)
            search["probes"].append({"rate": result["value"], "p99_ms": result["latency_ms"]["p99"]})
            search["lowest"] = min(search["lowest"] or rate, rate)
            if not result["valid"]:
                raise _SearchInvalid
            return not [b for b in result["breaches"] if not b.startswith(MISMATCH)]

        good, bad = None, None
        rate = config.levels[0]
        try:
            if passes(rate):
                good = rate
                while good < config.max_rate:
                    rate = min(good * 2, config.max_rate)
                    if not passes(rate):
                        bad = rate
                        break
                    good = rate
            else:
                bad = rate
                for _ in range(config.search_steps):
                    rate = bad / 2
                    if passes(rate):
                        good = rate
                        break
                    bad = rate
            steps = 0
            while good is not None and bad is not None and steps < config.search_steps:
                if (bad - good) / good <= SEARCH_PRECISION:
                    break
                middle = (good + bad) / 2
                if passes(middle):
                    good = middle
                else:
                    bad = middle
                steps += 1
        except _SearchInvalid:
            search["stopped"] = "a probe was invalid: the client could not offer that rate"
        search["max_rate"] = None if good is None else round(good, 3)
        search["first_failing_rate"] = None if bad is None else round(bad, 3)


class _SearchInvalid(Exception):
    pass


def _counted_breaches(result: dict[str, Any]) -> list[str]:
    """A level's breaches that decide the exit code: all of them, or a search probe's mismatches only
    (a probe that misses the latency bound is how the search finds its answer)."""
    if result["probe"]:
        return [b for b in result["breaches"] if b.startswith(MISMATCH)]
    return list(result["breaches"])


_STATUS = {
    ExitCode.OK: "ok",
    ExitCode.THRESHOLD: "threshold_breached",
    ExitCode.INVALID: "invalid",
}


def _progress_line(result: dict[str, Any]) -> str:
    flags = [] if result["valid"] else ["INVALID"]
    flags.extend(result["breaches"])
    if result["aborted"]:
        flags.append(f"aborted: {result['aborted']}")
    return summary_line(result) + (f"  [{'; '.join(flags)}]" if flags else "")


def _client_info() -> dict[str, Any]:
    import os
    import platform

    return {
        "host": platform.node(),
        "cpus": len(os.sched_getaffinity(0)),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def default_workers() -> int:
    import os

    return max(1, min(8, len(os.sched_getaffinity(0))))


def run_load(
    *, config: RunConfig, package: PackageRef, corpus: Path | None, output: Path
) -> tuple[ExitCode, dict[str, Any]]:
    """Check the inputs, prepare the requests, run every level; the report is in `output`."""
    from loadtest.corpus import load_corpus
    from loadtest.prepare import prepare_inputs
    from loadtest.report import write_report

    sentences = load_corpus(corpus)
    opened = package.open()
    if config.text:
        opened.require_text_model()
    if not config.model:  # the name the manifest records for the model the servers serve
        config = dataclasses.replace(config, model=opened.served_name(text=config.text))
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise BadInput(f"--output {output}: {err.strerror}") from None
    prepared = prepare_inputs(package=opened, corpus=sentences, cache_dir=output / "inputs")
    run = Run(
        config,
        package=opened,
        prepared=prepared,
        corpus_source=sentences.source,
        write=lambda report, final: write_report(report, output, final=final),
    )
    code = run.execute()
    return code, run.report
