"""Worker processes: each runs one asyncio event loop that sends prebuilt requests and records them.

The runner starts the workers with the `spawn` method, so each begins with a fresh interpreter: its gRPC
channel and HTTP connections are opened in the worker (never inherited across a fork). A worker answers
three commands over its pipe: `setup` (load the prepared inputs, build and serialize the requests, connect),
`level` (run one load level and send back histograms and counters) and `close`.

Timing: loop.time() is CLOCK_MONOTONIC, shared by every process, so the runner gives one start time to all.
Closed loop: each of `concurrency` users sends, awaits the answer, sends again; latency is answer minus
send. Open loop: requests are due at intended times (fixed spacing or Poisson) whatever the answers do;
latency is measured from the intended time (no coordinated omission), service time from the actual send.
A request waits for a free slot when --max-in-flight requests are out; the time the client itself was late
(the event loop woke late, not a slot missing) is the schedule lag that marks a run invalid. A request that
times out counts in the latency figures too, at its time to the deadline (at least --timeout).

Test hook: LOADTEST_TEST_STALL (docs/loadtest.md) makes a worker block its own event loop on purpose, so that
the tests can make the client fall behind on any machine. Only the workers read it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import re
import signal
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import stats
from loadtest.lifetime import die_with_parent
from loadtest.prepare import RequestData, load_prepared, requests_for
from loadtest.protocol import Sender, SendError, make_sender

#: An open-loop scheduler asks to wake this much before a request is due: the event loop rounds its sleep up
#: to the next millisecond (selectors.EpollSelector), so it wakes within a millisecond before the due time and
#: sends a little early rather than late; latency then counts from the actual send.
EARLY_S = 0.001
#: How often a closed-loop worker checks that its event loop is responsive.
HEARTBEAT_S = 0.01
MAX_EXAMPLES = 5
TIMEOUT = "timeout"
#: The test hook: `MS:EVERY` blocks the worker's event loop for MS milliseconds before every EVERY-th request
#: of a level (warmup included). Unset in any real run; a run where it is set says so in its problems.
STALL_HOOK = "LOADTEST_TEST_STALL"


def stall_hook() -> tuple[float, int] | None:
    """The test hook's (seconds, every) from the environment, or None when it is unset."""
    value = os.environ.get(STALL_HOOK)
    if value is None:
        return None
    match = re.fullmatch(r"([1-9]\d*):([1-9]\d*)", value)
    if not match:
        raise ValueError(f"{STALL_HOOK}={value!r}: expected MS:EVERY, two whole numbers above 0")
    return int(match[1]) / 1000.0, int(match[2])


@dataclass(frozen=True)
class Setup:
    key: str
    url: str
    protocol: str
    model: str
    text: bool
    inputs: str
    batch_size: int
    tolerance: float
    connect_timeout: float = 10.0


@dataclass(frozen=True)
class Share:
    """This worker's part of one level."""

    key: str
    index: int  # of this worker among those running the level
    workers: int
    closed: bool
    concurrency: int  # closed loop: users in this worker
    rate: float  # open loop: the level's total rate; this worker takes every `workers`-th request
    poisson: bool
    max_in_flight: int
    start_at: float
    warmup: float
    duration: float
    timeout: float
    interval: float
    seed: int
    abort_after: float


class Level:
    """One worker's run of one level: the recording side.

    The hot path appends raw figures to arrays (a fraction of a microsecond each); the histograms
    (overall and per interval) are built from them when the level is over, outside the measured window.
    """

    def __init__(
        self, share: Share, requests: list[RequestData], tolerance: float, texts: tuple[str, ...]
    ) -> None:
        self.share = share
        self.requests = requests
        self.tolerance = tolerance
        self.texts = texts
        self.t_measure = share.start_at + share.warmup
        self.t_end = self.t_measure + share.duration
        # Per answered or timed-out request of the window: latency and its intended time; per answer: service.
        self.latencies = array("d")
        self.services = array("d")
        self.intended = array("d")
        self.lags = array("d")  # the client's own lateness (schedule, or event loop)
        self.answered_at = array("d")  # arrival of every good answer within the window (throughput)
        self.failed_at = array("d")  # intended time of every failed request of the window
        self.requests_measured = 0  # intended (open loop) or sent (closed loop) within the window
        self.ok = 0  # good-shaped answers to the requests of the window
        self.sent_in_window = 0
        self.errors: dict[str, int] = {}
        self.error_examples: dict[str, str] = {}
        self.mismatches = 0
        self.mismatched_sentences = 0
        self.examples: list[dict[str, Any]] = []
        self.max_drift = 0.0
        self.stop = False
        self.aborted: str | None = None
        self.last_ok = share.start_at
        self.cpu_start: float | None = None
        self.cpu_end: float | None = None
        self.stall = stall_hook()
        self.stall_countdown = self.stall[1] if self.stall else 0
        self.stalls = 0
        # Exact answers are the common case (same runtime as the reference): one bytes comparison.
        self._exact = [r.reference.tobytes() for r in requests]

    def outcome(
        self, index: int, answer: np.ndarray | SendError, intended: float, sent: float, done: float
    ) -> None:
        """Record one finished request (intended == sent in closed loop).

        Latency, errors and mismatches belong to the request's intended time (is it in the measured
        window, which interval); throughput to the time its answer arrived. A timeout counts in the latency
        figures at its time to the deadline, never less than the timeout: the answer never came.
        """
        request = self.requests[index]
        if not isinstance(answer, SendError) and answer.shape != request.reference.shape:
            answer = SendError(
                "bad_response", f"{answer.shape} probabilities, expected {request.reference.shape}"
            )
        if isinstance(answer, SendError):
            self._failed(answer, done)
            if intended >= self.t_measure:
                self.failed_at.append(intended)
                self.errors[answer.kind] = self.errors.get(answer.kind, 0) + 1
                self.error_examples.setdefault(answer.kind, answer.detail[:300])
                if answer.kind == TIMEOUT:
                    self.latencies.append(max(done - intended, self.share.timeout))
                    self.intended.append(intended)
            return
        self.last_ok = done
        if self.t_measure <= done < self.t_end:
            self.answered_at.append(done)
        if intended < self.t_measure:
            return
        self.ok += 1
        self.latencies.append(done - (intended if intended < sent else sent))
        self.services.append(done - sent)
        self.intended.append(intended)
        if answer.tobytes() != self._exact[index]:
            self._compare(request, answer)

    def _compare(self, request: RequestData, answer: np.ndarray) -> None:
        rows = np.abs(answer - request.reference).max(axis=1)
        self.max_drift = max(float(rows.max()), self.max_drift)
        bad = (rows > self.tolerance) | (answer.argmax(axis=1) != request.reference_top)
        if not bad.any():
            return
        self.mismatches += 1
        self.mismatched_sentences += int(bad.sum())
        for row in np.nonzero(bad)[0]:
            if len(self.examples) >= MAX_EXAMPLES:
                break
            sentence = request.sentences[row]
            self.examples.append(
                {
                    "sentence": int(sentence),
                    "text": self.texts[sentence],
                    "expected_top": int(request.reference_top[row]),
                    "got_top": int(answer[row].argmax()),
                    "drift": round(float(rows[row]), 6),
                }
            )

    def stall_now(self) -> None:
        """The test hook (STALL_HOOK): before every EVERY-th request, block the event loop for MS ms."""
        self.stall_countdown -= 1
        if self.stall_countdown == 0:
            seconds, self.stall_countdown = self.stall
            time.sleep(seconds)
            self.stalls += 1

    def _failed(self, error: SendError, now: float) -> None:
        if error.kind == "unavailable" and now - self.last_ok > self.share.abort_after and not self.stop:
            self.stop = True
            self.aborted = f"unavailable for {now - self.last_ok:.1f} s: {error.detail[:200]}"

    def result(self) -> dict[str, Any]:
        """Histograms (encoded) and counters for the runner, built from the recorded arrays."""
        cpu = (self.cpu_end or time.process_time()) - (self.cpu_start or time.process_time())
        latencies = np.frombuffer(self.latencies, dtype=np.float64)
        slots = self._slots(self.intended)
        answered_slots, failed_slots = self._slots(self.answered_at), self._slots(self.failed_at)
        size = 1 + int(
            max(slots.max(initial=-1), answered_slots.max(initial=-1), failed_slots.max(initial=-1))
        )
        answered = np.bincount(answered_slots, minlength=size)
        failed = np.bincount(failed_slots, minlength=size)
        intervals = {}
        for slot in range(size):
            mask = slots == slot
            if mask.any() or answered[slot] or failed[slot]:
                histogram = stats.histogram_of(latencies[mask], stats.INTERVAL_DIGITS)
                intervals[slot] = (int(answered[slot]), int(failed[slot]), stats.encode(histogram))
        return {
            "latency": stats.encode(stats.histogram_of(latencies)),
            "service": stats.encode(stats.histogram_of(np.frombuffer(self.services, dtype=np.float64))),
            "lag": stats.encode(stats.histogram_of(np.frombuffer(self.lags, dtype=np.float64))),
            "intervals": intervals,
            "requests": self.requests_measured,
            "sent_in_window": self.sent_in_window,
            "answered_in_window": len(self.answered_at),
            "ok": self.ok,
            "errors": self.errors,
            "error_examples": self.error_examples,
            "mismatches": self.mismatches,
            "mismatched_sentences": self.mismatched_sentences,
            "examples": self.examples,
            "max_drift": self.max_drift,
            "cpu_seconds": cpu,
            "aborted": self.aborted,
            "test_stalls": self.stalls,
        }

    def _slots(self, times: array) -> np.ndarray:
        seconds = np.frombuffer(times, dtype=np.float64)
        return ((seconds - self.t_measure) // self.share.interval).astype(np.int64)


async def run_share(share: Share, sender: Sender, level: Level) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    loop.call_at(level.t_measure, _cpu_mark, level, "cpu_start")
    loop.call_at(level.t_end, _cpu_mark, level, "cpu_end")
    await asyncio.sleep(max(0.0, share.start_at - loop.time()))
    if share.closed:
        users = [_user(share, sender, level, u) for u in range(share.concurrency)]
        await asyncio.gather(_heartbeat(level), *users)
    else:
        await _open_loop(share, sender, level)
    if level.cpu_end is None:
        level.cpu_end = time.process_time()
    return level.result()


def _cpu_mark(level: Level, attribute: str) -> None:
    setattr(level, attribute, time.process_time())


async def _user(share: Share, sender: Sender, level: Level, user: int) -> None:
    loop = asyncio.get_running_loop()
    n = len(level.requests)
    index = (share.index * 7919 + user * 104729) % n
    while not level.stop:
        if level.stall:
            level.stall_now()
        sent = loop.time()
        if sent >= level.t_end:
            return
        try:
            answer: np.ndarray | SendError = await sender.send(index, share.timeout)
        except SendError as err:
            answer = err
        if sent >= level.t_measure:
            level.requests_measured += 1
            level.sent_in_window += 1
        level.outcome(index, answer, sent, sent, loop.time())
        index = (index + 1) % n


async def _heartbeat(level: Level) -> None:
    """Closed loop: how late the event loop wakes, as the client's own lag."""
    loop = asyncio.get_running_loop()
    while not level.stop:
        due = loop.time() + HEARTBEAT_S
        if due >= level.t_end:
            return
        await asyncio.sleep(HEARTBEAT_S)
        if due >= level.t_measure:
            level.lags.append(max(loop.time() - due, 0.0))


def intended_times(share: Share) -> Any:
    """This worker's intended send times: every `workers`-th of a fixed grid, or its own Poisson stream."""
    if share.poisson:
        rng = np.random.default_rng(share.seed + share.index)
        t = share.start_at
        scale = share.workers / share.rate
        while True:
            for gap in rng.exponential(scale, 1024):
                t += gap
                yield t
    else:
        period = 1.0 / share.rate
        for j in range(share.index, 2**62, share.workers):
            yield share.start_at + j * period


async def _open_loop(share: Share, sender: Sender, level: Level) -> None:
    loop = asyncio.get_running_loop()
    n = len(level.requests)
    index = (share.index * 7919) % n
    in_flight = 0
    freed_at = share.start_at
    slot_free = asyncio.Event()
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int, intended: float, sent: float, budget: float) -> None:
        nonlocal in_flight, freed_at
        try:
            answer: np.ndarray | SendError = await sender.send(i, budget)
        except SendError as err:
            answer = err
        done = loop.time()
        in_flight -= 1
        freed_at = done
        slot_free.set()
        level.outcome(i, answer, intended, sent, done)

    for intended in intended_times(share):
        if intended >= level.t_end or level.stop:
            break
        wait = intended - EARLY_S - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if level.stall:
            level.stall_now()
        ready = intended
        while in_flight >= share.max_in_flight and not level.stop:
            slot_free.clear()
            await slot_free.wait()
            ready = max(intended, freed_at)
        now = loop.time()
        measured = intended >= level.t_measure
        if measured:
            level.requests_measured += 1
            level.lags.append(max(now - ready, 0.0))
        budget = share.timeout - max(now - intended, 0.0)
        if level.t_measure <= now < level.t_end and budget > 0:
            level.sent_in_window += 1
        if budget <= 0:
            level.outcome(
                index,
                SendError(TIMEOUT, "still waiting for a free slot at its deadline"),
                intended,
                now,
                now,
            )
        else:
            in_flight += 1
            task = loop.create_task(one(index, intended, now, budget))
            pending.add(task)
            task.add_done_callback(pending.discard)
        index = (index + 1) % n
    if pending:
        await asyncio.wait(pending, timeout=share.timeout + 1.0)


class WorkerState:
    """What a worker keeps between commands: the prepared requests and an open sender per target."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.targets: dict[str, tuple[Setup, Sender, list[RequestData], tuple[str, ...]]] = {}

    def setup(self, setup: Setup) -> dict[str, Any]:
        old = self.targets.pop(setup.key, None)
        if old is not None:
            self.loop.run_until_complete(old[1].close())
        prepared = load_prepared(Path(setup.inputs))
        requests = requests_for(prepared, batch_size=setup.batch_size, text=setup.text)
        sender = make_sender(setup.protocol, setup.url, setup.model, requests)
        self.targets[setup.key] = (setup, sender, requests, prepared.texts)
        try:
            self.loop.run_until_complete(sender.open(setup.connect_timeout))
        except SendError as err:
            return {"error": err.detail}
        return {"ok": True}

    def level(self, share: Share) -> dict[str, Any]:
        setup, sender, requests, texts = self.targets[share.key]
        level = Level(share, requests, setup.tolerance, texts)
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            return self.loop.run_until_complete(run_share(share, sender, level))
        finally:
            gc.enable()
            gc.unfreeze()

    def close(self) -> None:
        for _, sender, _, _ in self.targets.values():
            self.loop.run_until_complete(sender.close())
        self.loop.close()


def worker_main(conn: Any) -> None:
    """The worker process: answer commands until `close` or until the runner goes away.

    Ctrl-C and SIGTERM reach the whole process group: the runner handles them and closes the workers, which
    ignore them (and die with the runner if it is killed outright).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    die_with_parent()
    state = WorkerState()
    try:
        while True:
            try:
                command, payload = conn.recv()
            except (EOFError, OSError):
                return
            if command == "close":
                return
            handler = state.setup if command == "setup" else state.level
            conn.send(handler(payload))
    finally:
        state.close()


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as whole numbers allow (larger shares first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
