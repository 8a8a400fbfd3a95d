"""Triton python-backend model: UTF-8 texts in, BERT token ids out (published as model.py).

The tokenizer is wordpiece.py in the same version folder, driven by char_table.json; the
maximum length comes from the model configuration's `max_length` parameter.
"""

import json
import os
import sys
from pathlib import Path

# Triton builds whose stub ignores PYTHONPATH (the nvidia-pytriton wheel) find numpy through this.
sys.path[:0] = [p for p in os.environ.get("EMOTION_SERVING_PYTHONPATH", "").split(os.pathsep) if p]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        folder = Path(args["model_repository"]) / args["model_version"]
        sys.path.insert(0, str(folder))
        from wordpiece import WordPiece

        config = json.loads(args["model_config"])
        max_length = int(config["parameters"]["max_length"]["string_value"])
        self.tokenizer = WordPiece.from_file(folder / "char_table.json", max_length=max_length)

    def execute(self, requests):
        return [self._one(request) for request in requests]

    def _one(self, request):
        raw = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
        try:
            texts = [item.decode("utf-8") if isinstance(item, bytes) else str(item) for item in raw]
        except UnicodeDecodeError as err:
            # Raised, not returned as an error response: Triton counts only raised errors as failures
            # (nv_inference_request_failure), so bad input shows in the error-ratio alert.
            raise pb_utils.TritonModelException(f"text is not valid UTF-8: {err}") from err
        ids, mask, types = self.tokenizer.encode_batch(texts)
        return pb_utils.InferenceResponse(
            [
                pb_utils.Tensor("input_ids", np.asarray(ids, dtype=np.int64).reshape(len(texts), -1)),
                pb_utils.Tensor("attention_mask", np.asarray(mask, dtype=np.int64).reshape(len(texts), -1)),
                pb_utils.Tensor("token_type_ids", np.asarray(types, dtype=np.int64).reshape(len(texts), -1)),
            ]
        )
