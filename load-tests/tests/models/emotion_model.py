import os
import sys

# The nvidia-pytriton stub ignores PYTHONPATH; see devstack.triton.
sys.path[:0] = [p for p in os.environ.get("EMOTION_SERVING_PYTHONPATH", "").split(os.pathsep) if p]

import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TritonPythonModel:
    """The load tester's test model: runs the package's model.onnx with ONNX Runtime (as the packager's
    python-backend config does), for token ids or for raw text (tokenized with the package's tokenizer.json).

    Parameters in config.pbtxt: `sleep_ms` (sleep once per execute call, i.e. per batch) and `wrong_every`
    (rotate the probabilities of every sentence whose token ids sum to a multiple of it: a wrong top label).
    """

    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.sleep = float(params.get("sleep_ms", "0")) / 1000
        self.wrong_every = int(params.get("wrong_every", "0"))
        folder = os.path.join(args["model_repository"], args["model_version"])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(os.path.join(folder, "model.onnx"), options)
        self.text = any(i["name"] == "text" for i in config["input"])
        if self.text:
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(os.path.join(folder, "tokenizer.json"))
            self.tokenizer.enable_truncation(max_length=int(params["max_length"]))
            self.tokenizer.enable_padding(pad_id=self.tokenizer.token_to_id("[PAD]"))

    def execute(self, requests):
        if self.sleep:
            time.sleep(self.sleep)
        responses = []
        for request in requests:
            if self.text:
                texts = pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)
                encodings = self.tokenizer.encode_batch([t.decode() for t in texts])
                feed = {
                    "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
                    "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
                    "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
                }
            else:
                feed = {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in TOKEN_INPUTS}
            logits, probabilities = self.session.run(["logits", "probabilities"], feed)
            if self.wrong_every:
                sums = (feed["input_ids"] * feed["attention_mask"]).sum(axis=1)
                for row in np.nonzero(sums % self.wrong_every == 0)[0]:
                    probabilities[row] = np.roll(probabilities[row], 1)
            outputs = [pb_utils.Tensor("probabilities", probabilities.astype(np.float32))]
            if not self.text:
                outputs.append(pb_utils.Tensor("logits", logits.astype(np.float32)))
            responses.append(pb_utils.InferenceResponse(outputs))
        return responses
