"""devstack: run the chart's release on this machine (`devstack demo`, what `make demo` runs)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from devstack import demo
from emotion_contract.cli import add_log_format, add_old_spelling, boundary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="devstack", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "demo", help="render the chart, run its release on loopback, load-test it, report"
    )
    run.add_argument("--output", type=Path, default=Path(".cache/demo"), help="working folder and report")
    add_old_spelling(run, "--out", "--output", dest="output", type=Path)
    add_log_format(parser)
    run.add_argument(
        "--model", default=demo.DEFAULT_MODEL, help="hub id the packager Job builds when the hub answers"
    )
    run.add_argument("--duration", default="10s", help="load-test time per level")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return boundary(
        "devstack",
        lambda: demo.main(args.output.resolve(), model=args.model, duration=args.duration),
        log_format=args.log_format,
    )


if __name__ == "__main__":
    sys.exit(main())
