"""The packager's benchmark (not a test): build and publish cost, and the backends' speed on this CPU.

    .venv/bin/python bench/packager.py [--work DIR]        (or: make bench-packager)

1. `model-packager stand-in`, `build` and `publish` (to the real local S3 gateway) as the Job runs
   them: wall time and peak RSS of each.
2. The built model at batch 1 x 32 tokens (latency) and 32 x 32 (throughput) in PyTorch eager,
   ONNX Runtime, and OpenVINO with INFERENCE_PRECISION_HINT f32 and bf16 and with INT8 weights
   (NNCF): p50 latency, rows per second, and each as a ratio to PyTorch eager. On a CPU without
   bf16 OpenVINO runs the bf16 hint in f32; the report says which precision it ran.

Figures go to stdout as a Markdown table and to <work>/bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPEATS = {1: 200, 32: 30}


def run_measured(argv: list[str], env: dict[str, str]) -> dict[str, float]:
    """Wall time and peak RSS of one child process."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as stderr:
        child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own resource usage
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode:
            stderr.seek(0)
            raise SystemExit(
                f"bench: {' '.join(argv[3:5])} failed ({child.returncode}): {stderr.read()[-2000:]}"
            )
    return {"seconds": round(time.monotonic() - started, 1), "peak_rss_mib": round(usage.ru_maxrss / 1024)}


def timed(run: Any, repeat: int) -> float:
    for _ in range(5):
        run()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def inputs(rows: int, width: int, vocab: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    ids = rng.integers(5, vocab, (rows, width), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}


def backends(tree: Path, checkpoint: Path, sample: list[str]) -> dict[str, Any]:
    import onnxruntime
    import openvino as ov
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from model_packager.export import Loaded, convert_ir, tokenize

    model = AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    loaded = Loaded(
        model=model,
        tokenizer=AutoTokenizer.from_pretrained(checkpoint),
        inputs=("input_ids", "attention_mask", "token_type_ids"),
    )
    onnx_path = tree / "triton/emotion/1/model.onnx"
    int8_xml = convert_ir(
        onnx_path=onnx_path,
        xml=tree.parent / "int8" / "model.xml",
        precision="int8",
        calibration=[tokenize(loaded, [s], max_length=128) for s in sample],
    )
    core = ov.Core()
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    compiled = {
        "openvino f32": core.compile_model(
            str(tree / "ovms/emotion/1/model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
        ),
        "openvino bf16 hint": core.compile_model(
            str(tree / "ovms/emotion/1/model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "bf16"}
        ),
        "openvino int8": core.compile_model(str(int8_xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}),
    }
    vocab = model.config.vocab_size
    figures: dict[str, Any] = {}
    for rows in (1, 32):
        feeds = inputs(rows, 32, vocab)
        tensors = {k: torch.from_numpy(v) for k, v in feeds.items()}

        def eager(t: dict[str, Any] = tensors) -> None:
            with torch.no_grad():
                model(**t)

        runs = {"pytorch eager": eager, "onnxruntime": lambda f=feeds: session.run(["logits"], f)}
        runs.update({name: (lambda c=c, f=feeds: c(f)) for name, c in compiled.items()})
        for name, run in runs.items():
            ms = timed(run, REPEATS[rows])
            figures.setdefault(name, {})[f"b{rows}_s32_ms"] = round(ms, 2)
            figures[name][f"b{rows}_s32_rows_per_s"] = round(rows * 1000 / ms, 1)
    base = figures["pytorch eager"]
    for entry in figures.values():
        entry["latency_ratio_vs_eager"] = round(entry["b1_s32_ms"] / base["b1_s32_ms"], 2)
        entry["throughput_ratio_vs_eager"] = round(
            entry["b32_s32_rows_per_s"] / base["b32_s32_rows_per_s"], 2
        )
    for name, c in compiled.items():
        figures[name]["ran_as"] = c.get_property("INFERENCE_PRECISION_HINT").get_type_name()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-packager-"))
    work.mkdir(parents=True, exist_ok=True)

    from devstack import S3Server
    from model_packager.sentences import default_sample

    packager = [sys.executable, "-m", "model_packager", "--log-format", "json"]
    report: dict[str, Any] = {"cpu": os.cpu_count(), "steps": {}}
    with S3Server(root=work / "s3") as s3:
        env = {**os.environ, **s3.env()}
        publish = [*packager, "publish", str(work / "tree"), "--endpoint", s3.endpoint, "--bucket", "bench"]
        steps = {
            "stand-in": [*packager, "stand-in", "--output", str(work / "stand-in")],
            "build": [*packager, "build", "--model", str(work / "stand-in"), "--output", str(work / "tree")],
            "publish": publish,
            "publish again": publish,
        }
        for name, argv in steps.items():
            report["steps"][name] = run_measured(argv, env)
    report["sizes_mib"] = {
        key: round(entry["size"] / 2**20, 1)
        for key, entry in json.loads((work / "tree/manifests/emotion/1.json").read_text())["objects"].items()
        if entry["size"] > 2**20
    }
    report["backends"] = backends(work / "tree", work / "stand-in", default_sample())
    (work / "bench.json").write_text(json.dumps(report, indent=2))

    print(f"# model-packager benchmark ({os.cpu_count()} CPUs)\n")
    print("| step | seconds | peak RSS (MiB) |\n| --- | --- | --- |")
    for name, entry in report["steps"].items():
        print(f"| {name} | {entry['seconds']} | {entry['peak_rss_mib']} |")
    print(
        "\n| backend | b1/s32 p50 ms | x eager | b32/s32 rows/s | x eager |\n| --- | --- | --- | --- | --- |"
    )
    for name, entry in report["backends"].items():
        label = f"{name} (ran {entry['ran_as']})" if "ran_as" in entry else name
        cells = [
            entry[k]
            for k in (
                "b1_s32_ms",
                "latency_ratio_vs_eager",
                "b32_s32_rows_per_s",
                "throughput_ratio_vs_eager",
            )
        ]
        print(f"| {label} | " + " | ".join(str(c) for c in cells) + " |")
    print(f"\nfull figures: {work / 'bench.json'}")


if __name__ == "__main__":
    main()
