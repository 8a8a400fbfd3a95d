"""What was published answers as it should: Triton from s3:// and the IR as OVMS's runtime compiles it.

This Triton build (nvidia-pytriton) has no onnxruntime backend, so it serves the published
model.onnx through configs/python.pbtxt (the same file, run by onnxruntime inside the python
backend); the text ensemble and its tokenizer step are served as published.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime
import openvino as ov
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from transformers import AutoTokenizer

from devstack.s3 import S3Server
from devstack.triton import s3_repository_url
from model_packager.manifest import LocalTree
from model_packager.parity import LOGIT_BOUND

# What the chart renders into OVMS's plugin_config by default (charts/emotion-serving/charts/ovms);
# the end-to-end test (tests/e2e) compiles with the rendered one.
PLUGIN_CONFIG = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}


@pytest.fixture(scope="module")
def published(tree: LocalTree, s3_server: S3Server) -> str:
    """The tree published once to a bucket of this module's own."""
    import os
    import subprocess
    import sys

    bucket = "serving"
    subprocess.run(
        [sys.executable, "-m", "model_packager", "publish", str(tree.root), "--endpoint", s3_server.endpoint,
         "--bucket", bucket],
        env={**os.environ, **s3_server.env()},
        check=True,
        capture_output=True,
    )  # fmt: skip
    return bucket


@pytest.fixture(scope="module")
def token_batch(stand_in: Path, sample: list[str]) -> dict[str, np.ndarray]:
    tokenizer = AutoTokenizer.from_pretrained(stand_in)
    encoded = tokenizer(sample, padding=True, truncation=True, max_length=128, return_tensors="np")
    return {k: encoded[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}


@pytest.fixture(scope="module")
def reference(tree: LocalTree, token_batch: dict[str, np.ndarray]) -> np.ndarray:
    """ONNX Runtime on the built model.onnx: probabilities for the sample."""
    session = onnxruntime.InferenceSession(str(tree.root / "triton/emotion/1/model.onnx"))
    return session.run(["probabilities"], token_batch)[0]


def _download(s3: S3Server, bucket: str, prefix: str, target: Path) -> Path:
    client = s3.client()
    for obj in client.list_objects(bucket, prefix=prefix, recursive=True):
        client.fget_object(bucket, obj.object_name, str(target / obj.object_name))
    return target / prefix


def test_triton_serves_the_published_tree_from_s3(
    published, s3_server, triton_factory, tree, token_batch, reference, sample
) -> None:
    triton = triton_factory(
        s3_repository_url(s3_server.host_port, published, "triton"),
        args=["--model-config-name=python"],
        env=s3_server.env(),
    )
    for model in ("emotion", "emotion-tokenizer", "emotion-text"):
        assert triton.model_ready(model), model

    http = httpclient.InferenceServerClient(triton.http_url)
    grpc = grpcclient.InferenceServerClient(triton.grpc_url)
    token_answers, text_answers, labels = [], [], []
    for rows in (slice(0, 32), slice(32, 64)):  # max_batch_size is 32
        inputs = []
        for name, value in token_batch.items():
            tensor = httpclient.InferInput(name, list(value[rows].shape), "INT64")
            tensor.set_data_from_numpy(value[rows])
            inputs.append(tensor)
        token_answers.append(http.infer("emotion", inputs).as_numpy("probabilities"))
        top = [httpclient.InferRequestedOutput("probabilities", class_count=1)]
        labels.extend(http.infer("emotion", inputs, outputs=top).as_numpy("probabilities")[:, 0])
        text = grpcclient.InferInput("text", [32], "BYTES")
        text.set_data_from_numpy(np.array([s.encode() for s in sample[rows]], dtype=np.object_))
        text_answers.append(grpc.infer("emotion-text", [text]).as_numpy("probabilities"))

    np.testing.assert_array_equal(np.concatenate(token_answers), reference)  # the same file and runtime
    text_answer = np.concatenate(text_answers)
    assert text_answer.shape == reference.shape
    # Server-side tokens, same model. Relative: the stand-in's probabilities saturate, and an absolute
    # 1e-6 near 1 would let logits differ by 3e-3; rtol 1e-5 holds the small ones to 1e-5 in logits.
    np.testing.assert_allclose(text_answer, reference, rtol=1e-5, atol=0)
    names = tree.manifest["labels"]
    assert [label.decode().split(":")[2] for label in labels] == [
        names[i] for i in np.argmax(reference, axis=1)
    ]


def test_published_ir_compiled_as_ovms_does_answers_like_the_local_run(
    published, s3_server, tree, token_batch, sample, tmp_path
) -> None:
    core = ov.Core()
    token_dir = _download(s3_server, published, "ovms/emotion/1/", tmp_path)
    served = core.compile_model(str(token_dir / "model.xml"), "CPU", PLUGIN_CONFIG)
    local = core.compile_model(str(tree.root / "ovms/emotion/1/model.xml"), "CPU", PLUGIN_CONFIG)
    served_answer = served(token_batch)["logits"]
    np.testing.assert_array_equal(served_answer, local(token_batch)["logits"])
    onnx = onnxruntime.InferenceSession(str(tree.root / "triton/emotion/1/model.onnx"))
    assert np.max(np.abs(served_answer - onnx.run(["logits"], token_batch)[0])) <= LOGIT_BOUND

    text_dir = _download(s3_server, published, "ovms/emotion-text/1/", tmp_path)
    text_model = core.compile_model(str(text_dir / "model.xml"), "CPU", PLUGIN_CONFIG)
    text_answer = text_model([np.array(sample)])["logits"]
    assert (
        np.max(np.abs(text_answer - served_answer)) <= LOGIT_BOUND
    )  # issue #7: text path = token path at f32
