"""What a worker is told: the target it sets up and its share of each level.

A worker is one process of the compiled load engine (load-tests/engine, driven by pool.py): it sends the
prebuilt requests, times them and records them in HDR histograms. Timing: every worker reads
CLOCK_MONOTONIC, the clock of Python's time.monotonic(), so the runner gives one start time to all. Closed
loop: each of `concurrency` users sends, waits for the answer, sends again; latency is answer minus send.
Open loop: requests are due at intended times (fixed spacing or Poisson) whatever the answers do; latency
is measured from the intended time (no coordinated omission), service time from the actual send. A request
waits for a free slot when --max-in-flight requests are out; the time the client itself was late (it woke
late, not a slot missing) is the schedule lag that marks a run invalid. A request that times out counts in
the latency figures too, at its time to the deadline (at least --timeout).

Test hook: LOADTEST_TEST_STALL (docs/loadtest.md) makes a worker stop on purpose, so that the tests can make
the client fall behind on any machine. Only the workers (the engine) read it.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The test hook: `MS:EVERY` stops the worker for MS milliseconds before every EVERY-th request of a level
#: (warmup included). Unset in any real run; a run where it is set says so in its problems.
STALL_HOOK = "LOADTEST_TEST_STALL"


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


def split(total: int, parts: int) -> list[int]:
    """`total` spread over `parts` as evenly as whole numbers allow (larger shares first)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
