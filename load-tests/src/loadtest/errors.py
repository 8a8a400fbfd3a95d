"""The load tester's own failures; the rest (bad input, unavailable) and the exit-code space are the
contract's (emotion_contract.errors, documented in docs/contracts.md)."""

from __future__ import annotations

from emotion_contract.errors import ExitCode, ToolError


class SmokeFailed(ToolError):
    code = ExitCode.SMOKE
