import os
import sys

# The nvidia-pytriton stub ignores PYTHONPATH; see devstack.triton.
sys.path[:0] = [p for p in os.environ.get("EMOTION_SERVING_PYTHONPATH", "").split(os.pathsep) if p]

import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("Y", x * 2)]))
        return responses
