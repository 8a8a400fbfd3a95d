"""One exit-code space for every tool of the project (model-packager, loadtest, devstack).

Each code means the same thing whichever tool returns it, so a Job's podFailurePolicy, a CI gate or a
shell script reads them without knowing the tool. The table is documented once, in docs/contracts.md
(tests/charts/test_cli_contract.py checks that the table there and this enum agree).

Every expected failure is a `ToolError` with its code; each CLI catches it at one place (`cli.boundary`),
prints `<tool>: <message>` on one line and exits with the code. Anything else is a bug (1).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    OK = 0
    BUG = 1  # an unexpected error: a traceback follows
    USAGE = 2  # a flag is unknown, missing or malformed (argparse)
    BAD_INPUT = 3  # an input is wrong: model, checkpoint, options, corpus, package, endpoint, region
    PARITY = 4  # model-packager: the conversions disagree beyond the gate; nothing was published
    CREDENTIALS = 5  # the S3 server refused the keys, or the bucket name is invalid
    UNAVAILABLE = 6  # a server (S3, hub, a load-test target) could not be reached within its budget
    TIMEOUT = 7  # model-packager wait: the wanted version was not published in time
    CONFLICT = 8  # the bucket holds something this publish would have to overwrite
    THRESHOLD = 9  # loadtest: a threshold was breached (p99 above the SLO, errors, mismatches, stalls)
    INVALID = 10  # loadtest: the client could not keep up with its schedule; the figures are not trustworthy
    SMOKE = 11  # loadtest smoke: a wrong answer, or disagreement with the reference or another target
    REGRESSION = 12  # loadtest compare: the new run is worse than the old one beyond run-to-run noise
    INTERRUPTED = 130  # SIGINT or SIGTERM: stopped; what was finished is written (a partial report)


class ToolError(Exception):
    """An expected failure: the CLI prints `<tool>: <message>` and exits with `code`."""

    code: ExitCode = ExitCode.BUG

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class BadInput(ToolError):
    code = ExitCode.BAD_INPUT


class CredentialsRefused(ToolError):
    code = ExitCode.CREDENTIALS


class Unavailable(ToolError):
    code = ExitCode.UNAVAILABLE


class Conflict(ToolError):
    code = ExitCode.CONFLICT
