"""What every CLI of the project shares: the error boundary, SIGTERM, the log set-up and the common flags.

Each tool's `main` parses and validates its arguments, then calls `boundary(tool, call)`: the one place
where a ToolError becomes `<tool>: <message>` on stderr and its exit code, and where SIGTERM (a pod
deleted, `timeout`) stops the tool as Ctrl-C does, with exit 130 after the tool has written what it had.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emotion_contract.errors import ExitCode, ToolError
from emotion_contract.logs import LOG_FORMATS, configure


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def boundary(tool: str, call: Callable[[], int], *, log_format: str = "auto") -> int:
    """Run `call` (which returns an exit code) with the tool's logs set up, errors and signals handled."""
    configure(tool=tool, log_format=log_format)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return int(call())
    except ToolError as err:
        print(f"{tool}: {err.message}", file=sys.stderr)
        if err.details:
            print(json.dumps({"error": err.message, **err.details}, default=str), file=sys.stderr)
        return int(err.code)
    except KeyboardInterrupt:
        print(f"{tool}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_codes_epilog(*codes: ExitCode) -> str:
    """`--help`'s line on exit codes: those the tool returns, from the one table."""
    names = ", ".join(f"{int(c)} {c.name.lower().replace('_', ' ')}" for c in codes)
    return f"Exit codes: {names} (docs/contracts.md)."


Options = argparse._ActionsContainer  # a parser or an argument group


class _OldSpelling(argparse.Action):
    """A flag's previous name, kept working for one release: it warns and sets the new one's value."""

    def __init__(self, *args: Any, new: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.new = new

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:  # fmt: skip
        print(f"{parser.prog}: {option_string} is deprecated, use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_old_spelling(parser: Options, old: str, new: str, *, dest: str, type: Any = None) -> None:
    parser.add_argument(old, dest=dest, type=type, action=_OldSpelling, new=new, help=argparse.SUPPRESS)


def add_log_format(parser: Options) -> None:
    parser.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="auto",
        help="log lines on stderr (auto: json unless a terminal)",
    )


def add_s3_options(parser: Options, *, required: bool = True) -> None:
    """The S3 location, spelled the same in every tool: --endpoint URL, --bucket NAME, --ca-bundle FILE."""
    parser.add_argument(
        "--endpoint", required=required, metavar="URL", help="S3 endpoint, http(s)://host:port"
    )
    parser.add_argument("--bucket", required=required, metavar="NAME", help="the model bucket")
    parser.add_argument(
        "--ca-bundle", type=Path, metavar="FILE", help="CA certificates for an https endpoint"
    )
