"""Logs of every tool: readable lines on a terminal, one JSON object per line otherwise (a Job's pod).

Logging is configured here and nowhere else (`configure`, called by each CLI); libraries report through
`Reporter` (timed steps, figures) or `log` (one line).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

LOG = logging.getLogger("emotion_serving")
_TOOL = {"name": "emotion-serving"}


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "tool": _TOOL["name"],
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(entry, ensure_ascii=False, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", {})
        extra = " ".join(f"{k}={v}" for k, v in fields.items() if k not in {"step", "status"})
        return f"{_TOOL['name']}: {record.getMessage()}" + (f" ({extra})" if extra else "")


LOG_FORMATS = ("auto", "text", "json")


def configure(*, tool: str, log_format: str = "auto", stream: TextIO | None = None) -> bool:
    """Send the tool's log to `stream` (stderr), as JSON lines unless it is a terminal."""
    stream = stream or sys.stderr
    _TOOL["name"] = tool
    json_lines = log_format == "json" or (log_format == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_JsonFormatter() if json_lines else _TextFormatter())
    LOG.handlers[:] = [handler]
    LOG.setLevel(logging.INFO)
    LOG.propagate = False
    if json_lines:  # no progress bars from the hub client in a log
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return json_lines


def log(message: str, **fields: Any) -> None:
    """One line in the tool's log (stderr): `tool: message (k=v ...)`, or a JSON object."""
    LOG.info(message, extra={"fields": fields})


class Reporter:
    """Timed steps and byte counts, logged as `step` records."""

    def info(self, message: str, **fields: Any) -> None:
        log(message, **fields)

    @contextlib.contextmanager
    def step(self, name: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Log the start and end of a step with its duration; the body may add fields to the end record."""
        result: dict[str, Any] = {}
        LOG.info("%s ...", name, extra={"fields": {"step": name, "status": "started", **fields}})
        started = time.monotonic()
        try:
            yield result
        except BaseException:
            seconds = round(time.monotonic() - started, 2)
            LOG.info(
                "%s failed", name, extra={"fields": {"step": name, "status": "failed", "seconds": seconds}}
            )
            raise
        seconds = round(time.monotonic() - started, 2)
        LOG.info(
            "%s done in %.1f s",
            name,
            seconds,
            extra={"fields": {"step": name, "status": "done", "seconds": seconds, **result}},
        )

    @staticmethod
    @contextlib.contextmanager
    def quiet_stdout() -> Iterator[None]:
        """Libraries that print to stdout (torch.onnx) write to stderr instead, off the JSON log."""
        with contextlib.redirect_stdout(sys.stderr):
            yield
