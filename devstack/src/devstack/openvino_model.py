"""Triton python-backend model: the OpenVINO IR beside it, compiled for CPU under a plugin_config.

devstack.runtimes copies this file, as model.py, next to the IR that OVMS serves (model.xml and
model.bin) and passes the chart's rendered OVMS plugin_config as the model's `plugin_config`
parameter (JSON), so that the local Triton runs the OpenVINO runtime with OVMS's settings. It is
not imported by devstack itself: it runs inside Triton's python-backend stub.
"""

import json
import os
import sys
from pathlib import Path

# The nvidia-pytriton stub ignores PYTHONPATH: numpy<2 and openvino come from this folder.
sys.path[:0] = [p for p in os.environ.get("EMOTION_SERVING_PYTHONPATH", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import openvino as ov  # noqa: E402
import openvino_tokenizers  # noqa: E402, F401 (registers the string operations of the text IR, as OVMS does)
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        plugin = json.loads(config["parameters"]["plugin_config"]["string_value"])
        xml = Path(args["model_repository"]) / args["model_version"] / "model.xml"
        # OVMS passes plugin_config values to the CPU plugin as strings.
        compiled = ov.Core().compile_model(str(xml), "CPU", {k: str(v) for k, v in plugin.items()})
        self.request = compiled.create_infer_request()
        self.inputs = [(t["name"], t["data_type"] == "TYPE_STRING") for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            feeds = {}
            for name, text in self.inputs:
                value = pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                # Triton hands BYTES as an object array; OpenVINO's string tensors take bytes_ arrays.
                feeds[name] = value.astype(np.bytes_) if text else value
            results = self.request.infer(feeds)
            responses.append(
                pb_utils.InferenceResponse([pb_utils.Tensor(n, results[n]) for n in self.outputs])
            )
        return responses
