"""The engine's inputs and outputs without a server: the request bytes against tritonclient's, the check of
the answers the engine kept, and the engine's refusal of a malformed test hook."""

from __future__ import annotations

import base64
import json
import os
import subprocess

import numpy as np
import pytest
from tritonclient.grpc import service_pb2
from tritonclient.http import InferenceServerClient, InferInput, InferRequestedOutput
from tritonclient.utils import serialize_byte_tensor

from loadtest.engine import engine_path, level_result
from loadtest.prepare import OUTPUT, RequestData
from loadtest.protocol import grpc_request, http_request
from loadtest.worker import STALL_HOOK

REFERENCE = np.array([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]], dtype=np.float32)


def token_request() -> RequestData:
    ids = np.array([[101, 7, 8, 102], [101, 9, 102, 0]], dtype=np.int64)
    inputs = {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}
    return RequestData(
        sentences=(3, 4), inputs=inputs, reference=REFERENCE, reference_top=REFERENCE.argmax(1)
    )


def text_request() -> RequestData:
    texts = np.array(["Привет".encode(), b"plain"], dtype=np.object_)
    return RequestData(
        sentences=(3, 4), inputs={"text": texts}, reference=REFERENCE, reference_top=np.array([2, 0])
    )


@pytest.mark.parametrize("request_data", [token_request(), text_request()], ids=["tokens", "text"])
def test_grpc_request_is_the_bytes_of_tritonclients_message(request_data):
    message = service_pb2.ModelInferRequest(model_name="emotion")
    for name, array in request_data.inputs.items():
        datatype = "BYTES" if array.dtype == np.object_ else "INT64"
        tensor = message.inputs.add(name=name, datatype=datatype)
        tensor.shape.extend(array.shape)
        data = serialize_byte_tensor(array).item() if array.dtype == np.object_ else array.tobytes()
        message.raw_input_contents.append(data)
    message.outputs.add(name=OUTPUT)
    assert grpc_request("emotion", request_data) == message.SerializeToString()


@pytest.mark.parametrize("request_data", [token_request(), text_request()], ids=["tokens", "text"])
def test_http_request_carries_tritonclients_body(request_data):
    inputs = []
    for name, array in request_data.inputs.items():
        tensor = InferInput(name, list(array.shape), "BYTES" if array.dtype == np.object_ else "INT64")
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    outputs = [InferRequestedOutput(OUTPUT, binary_data=True)]
    body, json_size = InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    head, _, ours = http_request("127.0.0.1:8000", "emotion", request_data).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"POST /v2/models/emotion/infer HTTP/1.1"
    assert f"Inference-Header-Content-Length: {json_size}".encode() in head.split(b"\r\n")
    assert f"Content-Length: {len(body)}".encode() in head.split(b"\r\n")
    assert json.loads(ours[:json_size]) == json.loads(body[:json_size])
    assert ours[json_size:] == body[json_size:]


def engine_answer(answers: list[list]) -> dict:
    """An engine's level answer with the given kept answers and nothing else of note."""
    return {
        "latency": "",
        "service": "",
        "lag": "",
        "intervals": {"0": [3, 0, ""]},
        "requests": 3,
        "sent_in_window": 3,
        "answered_in_window": 3,
        "ok": 3,
        "errors": {},
        "error_examples": {},
        "exact": 3 - sum(a[3] for a in answers),
        "answers": answers,
        "unchecked": 0,
        "cpu_seconds": 0.01,
        "aborted": None,
        "test_stalls": 0,
    }


def kept(array: np.ndarray, count: int, datatype: str = "FP32") -> list:
    return [0, datatype, base64.b64encode(array.tobytes()).decode(), count]


def test_kept_answers_are_checked_against_the_reference_with_the_tolerance():
    wrong = REFERENCE.copy()
    wrong[1] = [0.2, 0.3, 0.5]  # second sentence: another top label
    close = REFERENCE + np.float32(1e-4)
    answer = engine_answer([kept(wrong, 2), kept(close, 1)])
    result = level_result(answer, [token_request()], 1e-3, tuple(f"s{i}" for i in range(5)))
    assert (result["mismatches"], result["mismatched_sentences"]) == (2, 2)
    assert result["max_drift"] == pytest.approx(0.3, abs=1e-6)
    (example,) = result["examples"]
    assert example == {"sentence": 4, "text": "s4", "expected_top": 0, "got_top": 2, "drift": 0.3}
    assert result["intervals"] == {0: (3, 0, "")}


def test_an_fp16_answer_within_the_tolerance_is_no_mismatch():
    answer = engine_answer([kept(REFERENCE.astype(np.float16), 3, "FP16")])
    result = level_result(answer, [token_request()], 1e-3, ("a",) * 5)
    assert (result["mismatches"], result["examples"]) == (0, [])
    assert 0 < result["max_drift"] < 1e-3


@pytest.mark.parametrize("value", ["300", "0:5", "x:1", "1:2:3"])
def test_a_malformed_stall_hook_stops_the_engine(value):
    done = subprocess.run(
        [engine_path()],
        input=b"",
        capture_output=True,
        check=False,
        env={**os.environ, STALL_HOOK: value},
        timeout=30,
    )
    assert done.returncode == 1
    assert done.stderr.decode().strip() == (
        f'loadtest-engine: {STALL_HOOK}="{value}": expected MS:EVERY, two whole numbers above 0'
    )
