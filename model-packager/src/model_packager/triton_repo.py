"""Triton model configurations (config.pbtxt) for the token model, the tokenizer step and the text ensemble.

Sources of the keys: Triton's model_configuration.md (version_policy, dynamic_batching,
instance_group, label_filename, ensemble_scheduling) and the onnxruntime backend README (the
TensorRT accelerator's parameters, trt_profile_* shape profiles, engine cache).
"""

from __future__ import annotations

from dataclasses import dataclass

from emotion_contract.documents import OUTPUTS, TEXT_INPUT, TOKEN_INPUTS
from emotion_contract.layout import LABELS_FILE, ONNX_FILE


@dataclass(frozen=True)
class TritonOptions:
    max_batch_size: int = 32
    max_queue_delay_us: int = 500
    # TensorRT through the onnxruntime backend on GPU: off, FP32 or FP16. Engines build on first load
    # (minutes), so the chart's startup budget must cover it; the cache survives in the pod's emptyDir.
    tensorrt: str = "off"
    trt_cache_path: str = "/tmp/trt-cache"  # noqa: S108 (in the pod's own emptyDir at /tmp)


def _tensor(name: str, dtype: str, dims: str, extra: str = "") -> str:
    return f'  {{ name: "{name}", data_type: {dtype}, dims: [ {dims} ]{extra} }}'


def _io(inputs: list[str], outputs: list[str]) -> str:
    return "input [\n" + ",\n".join(inputs) + "\n]\noutput [\n" + ",\n".join(outputs) + "\n]\n"


def _policy(version: int) -> str:
    # Triton serves exactly the version the last complete publish named (layout.py).
    return f"version_policy: {{ specific: {{ versions: [ {version} ] }} }}\n"


def token_model_configs(
    *, model: str, version: int, labels: int, max_length: int, options: TritonOptions, inputs: list[str]
) -> dict[str, str]:
    """The token model's configuration per variant: gpu, cpu (onnxruntime backend) and python."""
    io = _io(
        [_tensor(name, "TYPE_INT64", "-1") for name in inputs],
        [
            _tensor("logits", "TYPE_FP32", str(labels)),
            _tensor("probabilities", "TYPE_FP32", str(labels), f', label_filename: "{LABELS_FILE}"'),
        ],
    )
    head = (
        f'name: "{model}"\n'
        + _policy(version)
        + f"max_batch_size: {options.max_batch_size}\n"
        + io
        + f"dynamic_batching {{ max_queue_delay_microseconds: {options.max_queue_delay_us} }}\n"
    )
    onnx = f'backend: "onnxruntime"\ndefault_model_filename: "{ONNX_FILE}"\n'
    gpu = head + onnx + "instance_group [ { kind: KIND_GPU, count: 1 } ]\n" + _tensorrt(max_length, options)
    cpu = head + onnx + "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
    python = (
        head
        + 'backend: "python"\n'
        + "# For Triton builds without the onnxruntime backend: model.py runs model.onnx with onnxruntime.\n"
        + "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
    )
    return {"gpu": gpu, "cpu": cpu, "python": python}


def _tensorrt(max_length: int, options: TritonOptions) -> str:
    if options.tensorrt == "off":
        return ""
    if options.tensorrt not in {"FP32", "FP16"}:
        raise ValueError(f"tensorrt must be off, FP32 or FP16, not {options.tensorrt!r}")

    def shapes(batch: int, sequence: int) -> str:
        return ",".join(f"{name}:{batch}x{sequence}" for name in TOKEN_INPUTS)

    # One optimisation profile covering every shape the batcher can form, so that no request
    # triggers an engine rebuild: 1x1 up to max_batch_size x max_length.
    params = {
        "precision_mode": options.tensorrt,
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": options.trt_cache_path,
        "trt_profile_min_shapes": shapes(1, 1),
        "trt_profile_opt_shapes": shapes(max(1, options.max_batch_size // 2), min(64, max_length)),
        "trt_profile_max_shapes": shapes(options.max_batch_size, max_length),
    }
    lines = "\n".join(f'      parameters {{ key: "{k}", value: "{v}" }}' for k, v in params.items())
    return (
        "optimization { execution_accelerators {\n"
        '  gpu_execution_accelerator: [ {\n    name: "tensorrt"\n' + lines + "\n  } ]\n} }\n"
    )


def tokenizer_config(*, model: str, version: int, max_length: int) -> str:
    return (
        f'name: "{model}"\n'
        + _policy(version)
        + 'backend: "python"\n'
        + "max_batch_size: 0\n"
        + _io(
            [_tensor(TEXT_INPUT, "TYPE_STRING", "-1")],
            [_tensor(name, "TYPE_INT64", "-1, -1") for name in TOKEN_INPUTS],
        )
        + f'parameters {{ key: "max_length", value: {{ string_value: "{max_length}" }} }}\n'
        + "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
    )


def ensemble_config(*, model: str, version: int, tokenizer: str, classifier: str, labels: int) -> str:
    token_map = "\n".join(f'      input_map {{ key: "{n}", value: "{n}" }}' for n in TOKEN_INPUTS)
    token_out = "\n".join(f'      output_map {{ key: "{n}", value: "{n}" }}' for n in TOKEN_INPUTS)
    outputs = "\n".join(f'      output_map {{ key: "{n}", value: "{n}" }}' for n in OUTPUTS)
    return (
        f'name: "{model}"\n'
        + _policy(version)
        + 'platform: "ensemble"\n'
        + "# Requests carry one batch of texts: at most the classifier's max_batch_size of them.\n"
        + "max_batch_size: 0\n"
        + _io(
            [_tensor(TEXT_INPUT, "TYPE_STRING", "-1")],
            [
                _tensor("logits", "TYPE_FP32", f"-1, {labels}"),
                # No label_filename: for a model without a batch dimension Triton's classification
                # ranks the whole [batch, labels] tensor at once. Names come from the manifest.
                _tensor("probabilities", "TYPE_FP32", f"-1, {labels}"),
            ],
        )
        + "ensemble_scheduling { step [\n"
        + f'  {{ model_name: "{tokenizer}", model_version: -1,\n'
        + f'      input_map {{ key: "{TEXT_INPUT}", value: "{TEXT_INPUT}" }}\n'
        + token_out
        + " },\n"
        + f'  {{ model_name: "{classifier}", model_version: -1,\n'
        + token_map
        + "\n"
        + outputs
        + " }\n] }\n"
    )
