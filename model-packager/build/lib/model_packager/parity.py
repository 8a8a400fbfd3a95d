"""The parity gate: PyTorch vs ONNX Runtime vs OpenVINO (token and text models) vs the Triton tokenizer.

Bounds (issue #3 and #7):
- FP32: max |Δlogit| <= 1e-4 against PyTorch, for ONNX Runtime and for OpenVINO with
  INFERENCE_PRECISION_HINT=f32; the text model: max |Δprobability| <= 1e-4.
- FP16/INT8 weights, and OpenVINO's default precision on the CPU it runs on (bf16 where the CPU
  has it): >= 99 % identical label decisions, with the worst probability drift reported.
- Triton's dependency-free tokenizer: the same ids as the HuggingFace tokenizer for every sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model_packager.errors import ParityFailed
from model_packager.export import Loaded, tokenize

LOGIT_BOUND = 1e-4
PROBABILITY_BOUND = 1e-4
AGREEMENT_BOUND = 0.99
_BATCH = 16


@dataclass(frozen=True)
class Artifacts:
    onnx: Path
    ir: Path  # model.xml of the token model
    text_ir: Path | None  # model.xml of the text model
    char_table: Path | None  # Triton tokenizer step's table


def decisions(probabilities: np.ndarray, activation: str) -> list[tuple[int, ...]]:
    """The labels a client would report: all above 0.5 (multi-label) or the most likely one."""
    if activation == "sigmoid":
        return [tuple(np.flatnonzero(row > 0.5)) for row in probabilities]
    return [(int(np.argmax(row)),) for row in probabilities]


def _activate(logits: np.ndarray, activation: str) -> np.ndarray:
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _batches(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i : i + _BATCH] for i in range(0, len(items), _BATCH)]


def _compare(name: str, logits: np.ndarray, reference: np.ndarray, activation: str) -> dict[str, Any]:
    probabilities, expected = _activate(logits, activation), _activate(reference, activation)
    agree = np.mean(
        [
            a == b
            for a, b in zip(
                decisions(probabilities, activation), decisions(expected, activation), strict=True
            )
        ]
    )
    return {
        "backend": name,
        "max_abs_logit_diff": float(np.max(np.abs(logits - reference))),
        "max_abs_probability_diff": float(np.max(np.abs(probabilities - expected))),
        "label_agreement": float(agree),
    }


def check(
    *,
    loaded: Loaded,
    artifacts: Artifacts,
    sentences: Sequence[str],
    activation: str,
    precision: str,
    max_length: int,
) -> dict[str, Any]:
    """Run every backend on `sentences`; return the figures, or raise ParityFailed naming the worst check."""
    import onnxruntime
    import openvino as ov
    import torch

    batches = [tokenize(loaded, b, max_length=max_length) for b in _batches(sentences)]

    def run(infer: Any) -> np.ndarray:
        return np.concatenate([infer(batch) for batch in batches])

    with torch.no_grad():
        reference = run(
            lambda b: loaded.model(**{k: torch.from_numpy(v) for k, v in b.items()}).logits.numpy()
        )
    session = onnxruntime.InferenceSession(str(artifacts.onnx), providers=["CPUExecutionProvider"])
    core = ov.Core()
    f32 = core.compile_model(str(artifacts.ir), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    default = core.compile_model(str(artifacts.ir), "CPU")
    default_precision = default.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    results = [
        _compare("onnxruntime", run(lambda b: session.run(["logits"], b)[0]), reference, activation),
        _compare("openvino-f32", run(lambda b: f32(b)["logits"]), reference, activation),
        _compare(
            f"openvino-default-{default_precision}",
            run(lambda b: default(b)["logits"]),
            reference,
            activation,
        ),
    ]
    gates = [
        _bound(results[0], "max_abs_logit_diff", LOGIT_BOUND),
        _bound(results[1], "max_abs_logit_diff", LOGIT_BOUND)
        if precision == "fp32"
        else _agreement(results[1]),
        _bound(results[2], "max_abs_logit_diff", LOGIT_BOUND)
        if precision == "fp32" and default_precision == "f32"
        else _agreement(results[2]),
    ]
    if artifacts.text_ir is not None:
        text = core.compile_model(
            core.read_model(str(artifacts.text_ir)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        )
        text_logits = np.concatenate([text([np.array(list(b))])["logits"] for b in _batches(sentences)])
        results.append(_compare("openvino-text-f32", text_logits, reference, activation))
        gates.append(
            _bound(results[-1], "max_abs_probability_diff", PROBABILITY_BOUND)
            if precision == "fp32"
            else _agreement(results[-1])
        )
    if artifacts.char_table is not None:
        results.append(_tokenizer_parity(loaded, artifacts.char_table, sentences, max_length))
        gates.append(_agreement(results[-1], bound=1.0))

    failed = [g for g in gates if g is not None]
    report = {"sentences": len(sentences), "precision": precision, "results": results, "passed": not failed}
    if failed:
        raise ParityFailed(f"parity gate failed: {failed[0]}; nothing was published", details=report)
    return report


def _bound(result: dict[str, Any], key: str, bound: float) -> str | None:
    result["gate"] = f"{key} <= {bound:g}"
    if result[key] <= bound:
        return None
    return f"{result['backend']} {key.replace('_', ' ')} {result[key]:.3g} > {bound:g}"


def _agreement(result: dict[str, Any], bound: float = AGREEMENT_BOUND) -> str | None:
    result["gate"] = f"label_agreement >= {bound:g}"
    if result["label_agreement"] >= bound:
        return None
    return f"{result['backend']} label agreement {result['label_agreement']:.1%} < {bound:.0%}"


def _tokenizer_parity(
    loaded: Loaded, table: Path, sentences: Sequence[str], max_length: int
) -> dict[str, Any]:
    from model_packager.triton_models.wordpiece import WordPiece

    step = WordPiece.from_file(table, max_length=max_length)
    expected = loaded.tokenizer(list(sentences), truncation=True, max_length=max_length)["input_ids"]
    same = [step.encode(s) == list(e) for s, e in zip(sentences, expected, strict=True)]
    return {
        "backend": "triton-tokenizer",
        "identical_ids": int(sum(same)),
        "label_agreement": float(np.mean(same)),
    }
