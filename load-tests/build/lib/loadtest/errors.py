"""The load tester's one error type and its exit codes (documented in docs/loadtest.md).

Every expected failure is a `LoadTestError` with its exit code; the CLI catches it at one place,
prints `loadtest: <message>` on one line and exits with the code. Anything else is a bug.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    BUG = 1  # an unexpected error: a traceback follows
    USAGE = 2  # argparse: unknown flag, missing argument, malformed value
    BAD_INPUT = 3  # unreadable corpus or package, a target that does not serve the model, bad report file
    THRESHOLD = 4  # a threshold was breached: p99 above --slo-p99-ms, errors or mismatches above the bound
    INVALID = 5  # the client could not keep up with its schedule: the figures are not trustworthy
    UNAVAILABLE = 6  # a target could not be reached, or died during the run (a partial report is written)
    SMOKE = (
        7  # `smoke`: a target answered with a wrong shape, or disagreed with the reference or another target
    )
    REGRESSION = 8  # `compare`: the new run is worse than the old one beyond run-to-run noise


class LoadTestError(Exception):
    """An expected failure: the CLI prints `loadtest: <message>` and exits with `code`."""

    code: ExitCode = ExitCode.BUG

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadInput(LoadTestError):
    code = ExitCode.BAD_INPUT


class Unavailable(LoadTestError):
    code = ExitCode.UNAVAILABLE


class SmokeFailed(LoadTestError):
    code = ExitCode.SMOKE
