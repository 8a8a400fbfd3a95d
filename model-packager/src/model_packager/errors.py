"""The packager's one error type and its exit codes (documented in model-packager/README.md).

The chart's Job stops retrying on the bad-input codes (podFailurePolicy), and retries the others.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    BUG = 1  # an unexpected error: a traceback follows
    USAGE = 2  # argparse: unknown flag, missing argument
    BAD_INPUT = 3  # unknown model, not a classifier, a broken checkpoint, bad options, endpoint or region
    PARITY = 4  # the conversions disagree beyond the gate: nothing was published
    CREDENTIALS = 5  # the S3 server refused the keys, or the bucket name is invalid
    UNAVAILABLE = 6  # the S3 server or the hub could not be reached within the retry budget
    TIMEOUT = 7  # `wait`: the wanted version was not published in time
    CONFLICT = 8  # the bucket holds something this publish would have to overwrite


#: Exit codes that a retry cannot fix: the Job fails at once on these (podFailurePolicy FailJob).
PERMANENT = (ExitCode.BAD_INPUT, ExitCode.PARITY, ExitCode.CREDENTIALS, ExitCode.CONFLICT)


class PackagerError(Exception):
    """An expected failure: the CLI prints `model-packager: <message>` and exits with `code`."""

    code: ExitCode = ExitCode.BUG

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadInput(PackagerError):
    code = ExitCode.BAD_INPUT


class ParityFailed(PackagerError):
    code = ExitCode.PARITY


class CredentialsRefused(PackagerError):
    code = ExitCode.CREDENTIALS


class Unavailable(PackagerError):
    code = ExitCode.UNAVAILABLE


class WaitTimeout(PackagerError):
    code = ExitCode.TIMEOUT


class Conflict(PackagerError):
    code = ExitCode.CONFLICT
