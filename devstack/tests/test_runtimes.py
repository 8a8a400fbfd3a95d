"""devstack.runtimes.triton_config: the ONNX Runtime side's Triton configs turned into the OpenVINO side's."""

from __future__ import annotations

import json

from devstack.runtimes import triton_config

PYTHON_CONFIG = """name: "emotion"
version_policy: { specific: { versions: [ 1 ] } }
max_batch_size: 32
input [
  { name: "input_ids", data_type: TYPE_INT64, dims: [ -1 ] }
]
output [
  { name: "probabilities", data_type: TYPE_FP32, dims: [ 6 ], label_filename: "labels.txt" }
]
dynamic_batching { max_queue_delay_microseconds: 500 }
backend: "python"
# For Triton builds without the onnxruntime backend: model.py runs model.onnx with onnxruntime.
instance_group [ { kind: KIND_CPU, count: 1 } ]
"""

ENSEMBLE = """name: "emotion-text"
version_policy: { specific: { versions: [ 1 ] } }
platform: "ensemble"
max_batch_size: 0
input [
  { name: "text", data_type: TYPE_STRING, dims: [ -1 ] }
]
output [
  { name: "probabilities", data_type: TYPE_FP32, dims: [ -1, 6 ] }
]
ensemble_scheduling { step [
  { model_name: "emotion-tokenizer", model_version: -1 }
] }
"""

PLUGIN = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
PLUGIN_JSON = json.dumps(PLUGIN, sort_keys=True)
PARAMETER = f"parameters {{ key: \"plugin_config\" value: {{ string_value: '{PLUGIN_JSON}' }} }}"


def test_the_token_config_keeps_batching_and_gains_the_plugin_config() -> None:
    made = triton_config(PYTHON_CONFIG, version=3, plugin=PLUGIN)
    assert "version_policy: { specific: { versions: [ 3 ] } }" in made
    assert "dynamic_batching { max_queue_delay_microseconds: 500 }" in made
    assert 'label_filename: "labels.txt"' in made
    assert made.count('backend: "python"') == 1
    assert made.count("instance_group") == 1
    assert made.rstrip().endswith(PARAMETER)


def test_the_ensemble_becomes_one_python_model() -> None:
    made = triton_config(ENSEMBLE, version=1, plugin=PLUGIN)
    assert "ensemble" not in made
    assert 'backend: "python"' in made
    assert '{ name: "text", data_type: TYPE_STRING, dims: [ -1 ] }' in made
    assert "max_batch_size: 0" in made
    assert made.rstrip().endswith(PARAMETER)
