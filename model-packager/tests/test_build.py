"""build: the layout, the manifest's checksums and the parity figures, for each precision."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from model_packager.build import BuildOptions, build
from model_packager.manifest import LocalTree
from model_packager.parity import LOGIT_BOUND
from model_packager.progress import Reporter
from model_packager.source import file_sha256, resolve

EXPECTED_KEYS = {
    "ovms/emotion/1/model.xml",
    "ovms/emotion/1/model.bin",
    "ovms/emotion-text/1/model.xml",
    "ovms/emotion-text/1/model.bin",
    "triton/emotion/config.pbtxt",
    "triton/emotion/configs/gpu.pbtxt",
    "triton/emotion/configs/cpu.pbtxt",
    "triton/emotion/configs/python.pbtxt",
    "triton/emotion/labels.txt",
    "triton/emotion/1/model.onnx",
    "triton/emotion/1/model.py",
    "triton/emotion/1/tokenizer.json",
    "triton/emotion-tokenizer/config.pbtxt",
    "triton/emotion-tokenizer/1/model.py",
    "triton/emotion-tokenizer/1/wordpiece.py",
    "triton/emotion-tokenizer/1/char_table.json",
    "triton/emotion-text/config.pbtxt",
    "triton/emotion-text/1/README.md",
}


def test_tree_has_the_bucket_layout(tree: LocalTree) -> None:
    files = {p.relative_to(tree.root).as_posix() for p in tree.root.rglob("*") if p.is_file()}
    assert files == EXPECTED_KEYS | {"manifests/emotion/1.json", "manifests/emotion/READY"}
    ready = json.loads((tree.root / "manifests/emotion/READY").read_text())
    assert ready["version"] == 1
    assert ready["manifest"] == "manifests/emotion/1.json"


def test_manifest_lists_every_object_with_its_checksum(tree: LocalTree) -> None:
    objects = tree.manifest["objects"]
    assert set(objects) == EXPECTED_KEYS
    for key, entry in objects.items():
        path = tree.root / key
        assert entry == {"sha256": file_sha256(path), "size": path.stat().st_size}, key
    assert tree.verify() == []


def test_manifest_records_source_labels_activation_and_options(tree: LocalTree, stand_in: Path) -> None:
    manifest = tree.manifest
    assert manifest["source"]["id"] == str(stand_in)
    assert manifest["source"]["stand_in"] is True
    assert manifest["source"]["stand_in_for"] == "seara/rubert-tiny2-cedr-russian-emotion"
    assert manifest["labels"] == ["no_emotion", "joy", "sadness", "surprise", "fear", "anger"]
    assert manifest["activation"] == "sigmoid"  # problem_type multi_label_classification
    assert manifest["options"] == BuildOptions().as_dict()
    assert manifest["models"]["token"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["fingerprint"].startswith("sha256:")
    assert (tree.root / "triton/emotion/labels.txt").read_text().split() == manifest["labels"]


def test_fp32_parity_figures_are_within_the_gate(tree: LocalTree) -> None:
    parity = tree.manifest["parity"]
    results = {r["backend"]: r for r in parity["results"]}
    assert parity["passed"] is True
    assert parity["sentences"] == 64
    for backend in ("onnxruntime", "openvino-f32"):
        assert results[backend]["max_abs_logit_diff"] <= LOGIT_BOUND
    default = next(name for name in results if name.startswith("openvino-default-"))
    assert results[default]["label_agreement"] >= 0.99
    assert results["openvino-text-f32"]["max_abs_probability_diff"] <= 1e-4
    assert results["triton-tokenizer"]["identical_ids"] == 64


def test_triton_configs_pin_the_version_and_pick_the_device(tree: LocalTree) -> None:
    root = tree.root / "triton"
    gpu = (root / "emotion/configs/gpu.pbtxt").read_text()
    assert (root / "emotion/config.pbtxt").read_text() == gpu
    assert "version_policy: { specific: { versions: [ 1 ] } }" in gpu
    assert 'backend: "onnxruntime"' in gpu
    assert "KIND_GPU" in gpu
    assert "tensorrt" not in gpu
    assert "KIND_CPU" in (root / "emotion/configs/cpu.pbtxt").read_text()
    assert 'backend: "python"' in (root / "emotion/configs/python.pbtxt").read_text()
    assert 'platform: "ensemble"' in (root / "emotion-text/config.pbtxt").read_text()


def _decisive_stand_in(stand_in: Path, target: Path) -> Path:
    """The stand-in with a confident head: random weights put every probability near 0.5, where
    any quantisation noise flips a decision; a trained model's logits sit far from 0."""
    model = AutoModelForSequenceClassification.from_pretrained(stand_in)
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([4.0, -4.0, 3.0, -3.0, 5.0, -5.0]))
    model.save_pretrained(target)
    for name in ("tokenizer.json", "tokenizer_config.json", "STAND_IN.json"):
        (target / name).write_bytes((stand_in / name).read_bytes())
    return target


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_compressed_precisions_pass_on_label_agreement(
    precision: str, stand_in: Path, sample: list[str], tmp_path: Path
) -> None:
    checkpoint = _decisive_stand_in(stand_in, tmp_path / "decisive")
    built = build(
        source=resolve(model=str(checkpoint)),
        options=BuildOptions(precision=precision, text="off"),
        output=tmp_path / "tree",
        version=1,
        sentences=sample,
        reporter=Reporter(),
    )
    results = {r["backend"]: r for r in built.manifest["parity"]["results"]}
    assert results["openvino-f32"]["gate"] == "label_agreement >= 0.99"
    assert results["openvino-f32"]["label_agreement"] >= 0.99
    assert results["onnxruntime"]["max_abs_logit_diff"] <= LOGIT_BOUND  # ONNX stays FP32
    assert 0 < results["openvino-f32"]["max_abs_probability_diff"] < 0.05  # reported, and small
    assert "ovms/emotion-text/1/model.xml" not in built.manifest["objects"]  # --text off
    assert built.manifest["models"]["tokenizer"] == {"key": "triton/emotion/1/tokenizer.json"}  # always there
    ir_size = built.manifest["objects"]["ovms/emotion/1/model.bin"]["size"]
    onnx_size = built.manifest["objects"]["triton/emotion/1/model.onnx"]["size"]
    assert ir_size < onnx_size * (0.6 if precision == "fp16" else 0.4)
