"""Triton python-backend model that runs model.onnx with onnxruntime (published as model.py).

Only used with configs/python.pbtxt, by Triton builds without the onnxruntime backend (such as
the one in the nvidia-pytriton wheel); the default config.pbtxt loads model.onnx directly.
"""

import json
import os
import sys
from pathlib import Path

# Triton builds whose stub ignores PYTHONPATH (the nvidia-pytriton wheel) find numpy and
# onnxruntime through this.
sys.path[:0] = [p for p in os.environ.get("EMOTION_SERVING_PYTHONPATH", "").split(os.pathsep) if p]

import onnxruntime  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        config = json.loads(args["model_config"])
        self.inputs = [tensor["name"] for tensor in config["input"]]
        self.outputs = [tensor["name"] for tensor in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy() for name in self.inputs
            }
            results = self.session.run(self.outputs, feeds)
            responses.append(
                pb_utils.InferenceResponse(
                    [pb_utils.Tensor(n, r) for n, r in zip(self.outputs, results, strict=True)]
                )
            )
        return responses
