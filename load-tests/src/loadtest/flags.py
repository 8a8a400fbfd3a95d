"""The load tester's flag values: argparse types that read durations, rates, fractions and lists, and the
parser whose usage errors fit on one line (exit 2, USAGE)."""

from __future__ import annotations

import argparse
import math
import re
from typing import Any, NoReturn

from emotion_contract.errors import ExitCode

_DURATION = re.compile(r"^(-?)(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
#: The longest duration any option takes: a day (a level, its warmup, a timeout or an interval beyond that is
#: a typo, and the clocks' sleeps overflow long before a year).
MAX_DURATION_S = 86400.0
#: The longest --timeout: the latency histograms reach 10 minutes, and a timeout counts in them.
MAX_TIMEOUT_S = 600.0
#: The highest --rate: far beyond what the client can offer (a few thousand requests/s per worker), and a
#: grid finer than this would be a typo.
MAX_RATE = 1_000_000.0


class Parser(argparse.ArgumentParser):
    """argparse's parser with its usage errors on one line (`loadtest run: error: ...`), exit 2, and negative
    durations (`--warmup -1s`) taken as values, so that the type check names them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # argparse's own pattern for "a negative number, not an option" (private, stable since Python 3.2),
        # widened to durations with a unit; no option of ours looks like one.
        self._negative_number_matcher = re.compile(r"^-\d+(?:\.\d+)?(?:ms|s|m|h)?$|^-\d*\.\d+$")

    def error(self, message: str) -> NoReturn:
        self.exit(int(ExitCode.USAGE), f"{self.prog}: error: {message}\n")


def duration(text: str) -> float:
    """`30s`, `500ms`, `2m`, `1h` or plain seconds; 0 or more, at most a day."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (examples: 30s, 500ms, 2m)")
    if match.group(1):
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    value = float(match.group(2)) * _UNITS[match.group(3)]
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than a day")
    return value


def positive_duration(text: str) -> float:
    value = duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def timeout(text: str) -> float:
    value = positive_duration(text)
    if value > MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"{text!r} is longer than 10m (the latency histograms' range)")
    return value


def _number(kind: type, text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a {'whole ' if kind is int else ''}number"
        ) from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def _positive(kind: type, text: str) -> float:
    value = _number(kind, text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be above 0")
    return value


def positive_int(text: str) -> int:
    return int(_positive(int, text))


def positive_float(text: str) -> float:
    return _positive(float, text)


def non_negative_int(text: str) -> int:
    value = int(_number(int, text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must not be negative")
    return value


def rate(text: str) -> float:
    value = positive_float(text)
    if value > MAX_RATE:
        raise argparse.ArgumentTypeError(f"{text!r} is above {MAX_RATE:.0f} requests/s")
    return value


def fraction(text: str) -> float:
    value = _number(float, text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be between 0 and 1")
    return value


def int_list(text: str) -> tuple[float, ...]:
    return tuple(float(positive_int(part)) for part in text.split(","))


def rate_list(text: str) -> tuple[float, ...]:
    return tuple(rate(part) for part in text.split(","))


def input_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(part.strip() for part in text.split(",")))
    if not kinds or any(k not in {"tokens", "text"} for k in kinds):
        raise argparse.ArgumentTypeError(f"{text!r}: expected tokens, text or tokens,text")
    return kinds
