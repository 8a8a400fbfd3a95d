"""The parity gate: PyTorch vs ONNX Runtime vs OpenVINO (token and text models) vs the Triton tokenizer.

The gate checks what will serve: OpenVINO compiles both IRs with the inference precision the
servers are configured with (the chart passes OVMS's INFERENCE_PRECISION_HINT; f32 by default), not
with whatever the CPU that runs the build prefers. Bounds:
- FP32: max |Δlogit| <= 1e-4 against PyTorch, for ONNX Runtime and for OpenVINO executing f32,
  the text model too. Logits, not probabilities: a confident model's sigmoid or softmax saturates,
  and near 0 or 1 a bound on probabilities lets logits drift by a hundred times as much.
- FP16/INT8 weights, or a reduced inference precision (bf16, f16): >= 99 % identical label
  decisions, with the worst probability drift reported.
- Triton's dependency-free tokenizer: the same ids as the HuggingFace tokenizer for every sentence.

The build CPU's own default precision (bf16 on CPUs with AVX-512 bf16 or AMX) is reported
(`cpu_default_precision`), and where it differs from what serves, its figures too, for information:
it gates nothing, unless the servers run without a hint (`default`).
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
AGREEMENT_BOUND = 0.99
#: Values of the servers' INFERENCE_PRECISION_HINT; `default` leaves it out (the CPU's own choice).
INFERENCE_PRECISIONS = ("f32", "bf16", "f16", "default")
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
    inference_precision: str,
    max_length: int,
) -> dict[str, Any]:
    """Run every backend on `sentences`; return the figures, or raise ParityFailed naming the worst check.

    `precision` is the IR's weights (fp32, fp16, int8); `inference_precision` what the servers
    execute (INFERENCE_PRECISION_HINT, or `default` for the CPU's own choice).
    """
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
    onnx = _compare("onnxruntime", run(lambda b: session.run(["logits"], b)[0]), reference, activation)
    checked = [(onnx, _bound(onnx, "max_abs_logit_diff", LOGIT_BOUND))]

    core = ov.Core()
    served = Compiled.of(core, artifacts.ir, inference_precision)
    exact = precision == "fp32" and served.executes == "f32"
    token = _compare(served.backend(), run(lambda b: served.model(b)["logits"]), reference, activation)
    checked.append((token, _bound(token, "max_abs_logit_diff", LOGIT_BOUND) if exact else _agreement(token)))
    # What this CPU runs without a hint: compiled and reported only when it is not what serves.
    cpu_default = core.get_property("CPU", "INFERENCE_PRECISION_HINT").get_type_name()
    if cpu_default != served.executes:
        cpu = Compiled.of(core, artifacts.ir, "default")
        info = _compare(
            cpu.backend("cpu-default"), run(lambda b: cpu.model(b)["logits"]), reference, activation
        )
        info["gate"] = f"none (information: the servers execute {served.executes})"
        checked.append((info, None))
    if artifacts.text_ir is not None:
        text = Compiled.of(core, artifacts.text_ir, inference_precision)
        logits = np.concatenate([text.model([np.array(list(b))])["logits"] for b in _batches(sentences)])
        result = _compare(text.backend("text"), logits, reference, activation)
        gate = _bound(result, "max_abs_logit_diff", LOGIT_BOUND) if exact else _agreement(result)
        checked.append((result, gate))
    if artifacts.char_table is not None:
        result = _tokenizer_parity(loaded, artifacts.char_table, sentences, max_length)
        checked.append((result, _agreement(result, bound=1.0)))
    return _verdict(
        checked, sentences=len(sentences), precision=precision, served=served, cpu_default=cpu_default
    )


def _verdict(
    checked: list[tuple[dict[str, Any], str | None]],
    *,
    sentences: int,
    precision: str,
    served: Compiled,
    cpu_default: str,
) -> dict[str, Any]:
    failed = [gate for _, gate in checked if gate is not None]
    report = {
        "sentences": sentences,
        "precision": precision,
        "inference_precision": served.requested,
        "executed_precision": served.executes,
        "cpu_default_precision": cpu_default,
        "results": [result for result, _ in checked],
        "passed": not failed,
    }
    if served.requested not in ("default", served.executes):
        report["note"] = (
            f"this CPU executes inference precision {served.requested} as {served.executes}: "
            f"the gate checked {served.executes}, a server CPU with {served.requested} may differ"
        )
    if failed:
        raise ParityFailed(f"parity gate failed: {failed[0]}; nothing was published", details=report)
    return report


@dataclass(frozen=True)
class Compiled:
    """An IR compiled for the CPU as a server would: with a precision hint, or with the CPU's default."""

    model: Any  # openvino.CompiledModel
    requested: str  # an INFERENCE_PRECISIONS value
    executes: str  # the precision OpenVINO chose: f32, bf16, f16

    @classmethod
    def of(cls, core: Any, xml: Path, requested: str) -> Compiled:
        config = {} if requested == "default" else {"INFERENCE_PRECISION_HINT": requested}
        model = core.compile_model(core.read_model(str(xml)), "CPU", config)
        executes = model.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        return cls(model=model, requested=requested, executes=executes)

    def backend(self, kind: str = "") -> str:
        """openvino-f32, openvino-text-bf16, openvino-cpu-default-bf16: the precision that ran."""
        return "-".join(part for part in ("openvino", kind, self.executes) if part)


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
