"""One canonical graph: PyTorch -> ONNX once (torch.onnx), OpenVINO IR from that ONNX (openvino).

The exported graph returns the logits and the probabilities (the activation applied in the graph),
so every server answers with both and clients need no post-processing.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotion_contract.documents import OUTPUTS, TOKEN_INPUTS
from emotion_contract.errors import BadInput
from model_packager.source import Source, check_token_ids

ACTIVATIONS = ("sigmoid", "softmax")
PRECISIONS = ("fp32", "fp16", "int8")
ONNX_OPSET = 18
# Shapes for tracing: two rows of different lengths, so no dimension is specialised to 1.
_EXAMPLE_TEXTS = ("Привет!", "Это пример второго, более длинного предложения для трассировки.")


def resolve_activation(config: dict[str, Any], requested: str) -> str:
    """sigmoid for multi-label models, softmax otherwise, unless the user says which."""
    if requested != "auto":
        if requested not in ACTIVATIONS:
            raise BadInput(f"activation must be auto, sigmoid or softmax, not {requested!r}")
        return requested
    return "sigmoid" if config.get("problem_type") == "multi_label_classification" else "softmax"


@dataclass
class Loaded:
    model: Any  # transformers PreTrainedModel, in eval mode
    tokenizer: Any  # transformers tokenizer
    inputs: tuple[str, ...]  # the subset of TOKEN_INPUTS the model's forward() takes


def load(source: Source) -> Loaded:
    """The model and its tokenizer; source.resolve has checked the files, this catches the rest
    (pytorch_model.bin weights, SentencePiece vocabularies) as bad input too."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        model = AutoModelForSequenceClassification.from_pretrained(source.path).eval()
        tokenizer = AutoTokenizer.from_pretrained(source.path)
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise BadInput(f"cannot load {source.id}: {str(err).splitlines()[0]}") from err
    except RuntimeError as err:
        if "ignore_mismatched_sizes" not in str(err):
            raise
        raise BadInput(
            f"cannot load {source.id}: its weights do not have the shapes config.json gives "
            "(the load report above names them)"
        ) from err
    accepted = inspect.signature(model.forward).parameters
    inputs = tuple(name for name in TOKEN_INPUTS if name in accepted)
    if "input_ids" not in inputs:
        raise BadInput(f"{source.id} does not take input_ids: not a text classifier")
    check_token_ids(source.id, max(tokenizer.get_vocab().values(), default=None), model.config.vocab_size)
    return Loaded(model=model, tokenizer=tokenizer, inputs=inputs)


def tokenize(loaded: Loaded, texts: Sequence[str], *, max_length: int) -> dict[str, Any]:
    """numpy int64 arrays for the model's inputs, padded to the longest text."""
    import numpy as np

    encoded = loaded.tokenizer(
        list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="np"
    )
    batch = {}
    for name in loaded.inputs:
        value = encoded.get(name)
        batch[name] = (np.zeros_like(encoded["input_ids"]) if value is None else value).astype(np.int64)
    return batch


def export_onnx(*, loaded: Loaded, activation: str, path: Path) -> None:
    """Export to a single ONNX file with dynamic batch and sequence axes."""
    import onnx
    import torch

    class WithActivation(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            logits = self.model(**dict(zip(loaded.inputs, tensors, strict=True))).logits
            probabilities = (
                torch.sigmoid(logits) if activation == "sigmoid" else torch.softmax(logits, dim=-1)
            )
            return logits, probabilities

    example = tokenize(loaded, _EXAMPLE_TEXTS, max_length=64)
    args = tuple(torch.from_numpy(example[name]) for name in loaded.inputs)
    batch = torch.export.Dim("batch")
    sequence = torch.export.Dim("sequence", max=loaded.model.config.max_position_embeddings)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch notes that the axis names we give are merged with its own names for the same axes.
        warnings.filterwarnings(
            "ignore", message=r"# The axis name: .* will not be used", category=UserWarning
        )
        torch.onnx.export(
            WithActivation(loaded.model).eval(),
            args,
            str(path),
            dynamo=True,
            input_names=list(loaded.inputs),
            output_names=list(OUTPUTS),
            # forward(*tensors): one spec for the varargs, a tuple with one entry per tensor.
            dynamic_shapes=(({0: batch, 1: sequence},) * len(args),),
            external_data=False,
            opset_version=ONNX_OPSET,
        )
    onnx.checker.check_model(str(path))


def convert_ir(*, onnx_path: Path, xml: Path, precision: str, calibration: Sequence[dict[str, Any]]) -> Path:
    """OpenVINO IR (model.xml + model.bin) from the ONNX file, at the given weight precision."""
    import openvino as ov

    if precision not in PRECISIONS:
        raise BadInput(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    model = ov.convert_model(str(onnx_path))
    if precision == "int8":
        import nncf

        model = nncf.quantize(
            model,
            nncf.Dataset(list(calibration)),
            model_type=nncf.ModelType.TRANSFORMER,
            subset_size=len(calibration),
        )
    xml.parent.mkdir(parents=True, exist_ok=True)
    # save_model compresses weights to FP16 unless told not to: keep FP32 unless asked.
    ov.save_model(model, str(xml), compress_to_fp16=precision == "fp16")
    return xml


def fuse_text_model(*, loaded: Loaded, classifier_xml: Path, max_length: int, xml: Path) -> Path:
    """An IR that takes strings: the tokenizer (openvino-tokenizers) connected to the classifier.

    openvino-tokenizers 2026.3 does not truncate unless asked, names the string input
    automatically, and connect_models drops the tokenizer's stateful sinks (REFERENCE.md): all three
    are handled here.
    """
    import openvino as ov
    from openvino_tokenizers import connect_models, convert_tokenizer

    tokenizer_model = convert_tokenizer(loaded.tokenizer, with_detokenizer=False, max_length=max_length)
    tokenizer_model.inputs[0].get_tensor().set_names({"text"})
    classifier = ov.Core().read_model(str(classifier_xml))
    fused = connect_models(tokenizer_model, classifier)
    if tokenizer_model.get_sinks() and not fused.get_sinks():
        fused = ov.Model(
            fused.outputs, tokenizer_model.get_sinks(), fused.get_parameters(), "text-classifier"
        )
    unexpected = {tuple(o.get_names()) for o in fused.outputs} - {("logits",), ("probabilities",)}
    if unexpected or [i.get_any_name() for i in fused.inputs] != ["text"]:
        raise BadInput(f"the tokenizer of this model does not connect to its inputs {loaded.inputs}")
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(fused, str(xml), compress_to_fp16=False)
    return xml
