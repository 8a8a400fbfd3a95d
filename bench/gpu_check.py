"""The exported ONNX model on a GPU: ONNX Runtime's CUDA provider against its CPU provider.

Run on a machine with an NVIDIA GPU, onnxruntime-gpu and PyTorch (not part of `make test`):

    PYTHONPATH=model-packager/src python bench/gpu_check.py --out gpu.json

It builds a random-weight model of the default model's shape, exports it with the packager's own
exporter (model_packager.export.export_onnx), then reports:
- parity: max |Δlogit| and identical label decisions, CUDA vs CPU provider, on 64 batches of mixed
  shapes (what Triton's onnxruntime backend on GPU would answer vs the CPU path);
- speed: latency at batch 1 x 32 tokens and throughput at 32 x 32 for the CUDA provider, PyTorch
  eager FP32 and FP16 on the GPU, and the CPU provider, as ratios to the CPU provider;
- whether the TensorRT provider can start (it needs TensorRT's libraries on the machine).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np


class _RandomIds:
    """Stands in for a tokenizer during export: random ids of the right vocabulary, padded rows."""

    def __init__(self, vocab: int, seed: int = 0) -> None:
        self.vocab = vocab
        self.rng = np.random.default_rng(seed)

    def __call__(self, texts: list[str], **_: Any) -> dict[str, np.ndarray]:
        lengths = [max(3, min(64, len(t) // 3)) for t in texts]
        return batch(self.rng, self.vocab, len(texts), max(lengths), lengths)


def batch(
    rng: np.random.Generator, vocab: int, rows: int, width: int, lengths: list[int] | None = None
) -> dict:
    lengths = lengths or [int(x) for x in rng.integers(3, width + 1, rows)]
    ids = rng.integers(5, vocab, (rows, width), dtype=np.int64)
    mask = np.zeros((rows, width), dtype=np.int64)
    for row, length in enumerate(lengths):
        mask[row, :length] = 1
        ids[row, length:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def timed(run: Any, repeat: int) -> dict[str, float]:
    for _ in range(10):
        run()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"p50_ms": statistics.median(samples), "p99_ms": samples[int(0.99 * (len(samples) - 1))]}


def parity(cpu: Any, cuda: Any, vocab: int) -> dict[str, float]:
    rng = np.random.default_rng(1)
    worst, same, total = 0.0, 0, 0
    for _ in range(64):
        feeds = batch(rng, vocab, int(rng.integers(1, 33)), int(rng.integers(4, 129)))
        expected = cpu.run(["logits"], feeds)[0]
        found = cuda.run(["logits"], feeds)[0]
        worst = max(worst, float(np.max(np.abs(found - expected))))
        same += int(np.sum(np.all((found > 0) == (expected > 0), axis=1)))
        total += len(found)
    return {"max_abs_logit_diff": worst, "label_agreement": same / total, "rows": total}


def speed(
    *, sessions: tuple[Any, Any], models: dict[str, Any], vocab: int, rows: int, width: int
) -> dict[str, Any]:
    import torch

    cpu, cuda = sessions
    fp32, fp16 = models["fp32"], models["fp16"]
    feeds = batch(np.random.default_rng(2), vocab, rows, width, [width] * rows)
    tensors = {k: torch.from_numpy(v).cuda() for k, v in feeds.items()}

    def eager(model: Any) -> None:
        with torch.no_grad():
            model(**tensors).logits.cpu()

    figures: dict[str, Any] = {
        "ort_cpu": timed(lambda: cpu.run(["logits"], feeds), 50),
        "ort_cuda": timed(lambda: cuda.run(["logits"], feeds), 300),
        "torch_cuda_fp32": timed(lambda: eager(fp32), 300),
        "torch_cuda_fp16": timed(lambda: eager(fp16), 300),
    }
    base = figures["ort_cpu"]["p50_ms"]
    for entry in figures.values():
        entry["rows_per_s"] = rows * 1000 / entry["p50_ms"]
        entry["speedup_vs_ort_cpu"] = base / entry["p50_ms"]
    with torch.no_grad():
        drift = torch.sigmoid(fp16(**tensors).logits.float()) - torch.sigmoid(fp32(**tensors).logits)
    figures["fp16_max_probability_drift"] = float(drift.abs().max())
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--work", type=Path, default=Path("gpu-check"))
    args = parser.parse_args()

    import onnxruntime
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from model_packager.export import Loaded, export_onnx
    from model_packager.standin import DEFAULT_LABELS, SHAPE

    if hasattr(onnxruntime, "preload_dlls"):  # CUDA and cuDNN from the nvidia-* wheels PyTorch brought
        onnxruntime.preload_dlls()
    report: dict[str, Any] = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "providers": onnxruntime.get_available_providers(),
    }
    torch.manual_seed(0)
    config = BertConfig(**SHAPE, num_labels=len(DEFAULT_LABELS), problem_type="multi_label_classification")
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():  # a confident head, as a trained model's (see model-packager/tests/test_build.py)
        model.classifier.bias.copy_(torch.tensor([4.0, -4.0, 3.0, -3.0, 5.0, -5.0]))
    loaded = Loaded(
        model=model,
        tokenizer=_RandomIds(SHAPE["vocab_size"]),
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    )
    onnx_path = args.work / "model.onnx"
    export_onnx(loaded=loaded, activation="sigmoid", path=onnx_path)

    cpu = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    cuda = onnxruntime.InferenceSession(
        str(onnx_path), providers=["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    report["cuda_session_providers"] = cuda.get_providers()
    report["parity_cuda_vs_cpu"] = parity(cpu, cuda, SHAPE["vocab_size"])
    half = BertForSequenceClassification(config).eval().half()
    half.load_state_dict(model.state_dict())
    models = {"fp32": model.cuda(), "fp16": half.cuda()}
    report["speed"] = {
        name: speed(sessions=(cpu, cuda), models=models, vocab=SHAPE["vocab_size"], rows=rows, width=width)
        for name, (rows, width) in {"b1_s32": (1, 32), "b32_s32": (32, 32)}.items()
    }
    # onnxruntime falls back to the CPU provider (printing why) when TensorRT cannot start.
    trt = onnxruntime.InferenceSession(str(onnx_path), providers=["TensorrtExecutionProvider"])
    report["tensorrt_session_providers"] = trt.get_providers()
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
