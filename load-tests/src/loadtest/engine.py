"""The compiled load engine (load-tests/engine, Go): where its binary is, the request file it reads, and how
its answer for a level becomes the worker result the runner merges.

The engine sends, times and records (HDR histograms, intended-time scheduling); it keeps every answer that
is not byte-identical to the reference, one entry per distinct answer with its count, and Python checks
those here after the level against the reference with the tolerance (`level_result`), outside the measured
window. Identical bytes, the usual case, are counted by the engine.
"""

from __future__ import annotations

import base64
import os
import shutil
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np

from loadtest.prepare import RequestData

#: Overrides where the engine binary is (a path).
ENGINE_VARIABLE = "LOADTEST_ENGINE"
ENGINE_NAME = "loadtest-engine"
MAX_EXAMPLES = 5
_MAGIC = b"LTE1"
_DTYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64}


def engine_path() -> str:
    """The engine binary: $LOADTEST_ENGINE, on PATH, beside this Python (a venv's or the image's bin), or the
    repository's .tools/bin (what `make setup` builds)."""
    override = os.environ.get(ENGINE_VARIABLE)
    if override:
        return override
    candidates = [
        shutil.which(ENGINE_NAME),
        str(Path(sys.prefix) / "bin" / ENGINE_NAME),
        str(Path(__file__).resolve().parents[3] / ".tools" / "bin" / ENGINE_NAME),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"{ENGINE_NAME} not found (on PATH, in {sys.prefix}/bin or .tools/bin): run `make setup`, "
        f"or name it with {ENGINE_VARIABLE}"
    )


def write_requests(path: Path, payloads: list[bytes], requests: list[RequestData]) -> None:
    """The engine's request file: every request's bytes, the expected output's shape and the reference."""
    parts = [_MAGIC, struct.pack("<I", len(payloads))]
    for payload, request in zip(payloads, requests, strict=True):
        reference = np.ascontiguousarray(request.reference, dtype="<f4")
        parts += [struct.pack("<I", len(payload)), payload, struct.pack("<I", reference.ndim)]
        parts += [struct.pack("<q", d) for d in reference.shape]
        parts += [struct.pack("<I", reference.nbytes), reference.tobytes()]
    path.write_bytes(b"".join(parts))


def level_result(
    answer: dict[str, Any], requests: list[RequestData], tolerance: float, texts: tuple[str, ...]
) -> dict[str, Any]:
    """The engine's answer as the worker result the runner merges (mismatches checked here)."""
    mismatches = mismatched_sentences = 0
    max_drift = 0.0
    examples: list[dict[str, Any]] = []
    for index, datatype, data, count in answer["answers"]:
        request = requests[index]
        got = np.frombuffer(base64.b64decode(data), dtype=_DTYPES[datatype]).astype(np.float32)
        got = got.reshape(request.reference.shape)
        rows = np.abs(got - request.reference).max(axis=1)
        max_drift = max(float(rows.max()), max_drift)
        bad = (rows > tolerance) | (got.argmax(axis=1) != request.reference_top)
        if not bad.any():
            continue
        mismatches += count
        mismatched_sentences += count * int(bad.sum())
        for row in np.nonzero(bad)[0]:
            if len(examples) >= MAX_EXAMPLES:
                break
            sentence = request.sentences[row]
            examples.append(
                {
                    "sentence": int(sentence),
                    "text": texts[sentence],
                    "expected_top": int(request.reference_top[row]),
                    "got_top": int(got[row].argmax()),
                    "drift": round(float(rows[row]), 6),
                }
            )
    return {
        "latency": answer["latency"],
        "service": answer["service"],
        "lag": answer["lag"],
        "intervals": {int(slot): tuple(entry) for slot, entry in answer["intervals"].items()},
        "requests": answer["requests"],
        "sent_in_window": answer["sent_in_window"],
        "answered_in_window": answer["answered_in_window"],
        "ok": answer["ok"],
        "errors": answer["errors"],
        "error_examples": answer["error_examples"],
        "mismatches": mismatches,
        "mismatched_sentences": mismatched_sentences,
        "examples": examples,
        "max_drift": max_drift,
        "cpu_seconds": answer["cpu_seconds"],
        "aborted": answer["aborted"],
        "test_stalls": answer["test_stalls"],
        # Added: answers beyond the engine's 65536 distinct non-identical ones, which nobody checked.
        "unchecked": answer["unchecked"],
    }
