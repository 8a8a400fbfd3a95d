"""The packager's own failures; the rest (bad input, refused keys, unavailable, conflict) and the
exit-code space are the contract's (emotion_contract.errors, documented in docs/contracts.md).

The chart's Job stops retrying on the permanent codes (podFailurePolicy FailJob), and retries the others.
"""

from __future__ import annotations

from emotion_contract.errors import ExitCode, ToolError


class ParityFailed(ToolError):
    code = ExitCode.PARITY


class WaitTimeout(ToolError):
    code = ExitCode.TIMEOUT


#: Exit codes that a retry cannot fix: the Job fails at once on these (podFailurePolicy FailJob).
PERMANENT = (ExitCode.BAD_INPUT, ExitCode.PARITY, ExitCode.CREDENTIALS, ExitCode.CONFLICT)
