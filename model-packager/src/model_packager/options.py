"""The build's options, and the Triton files that name a version, with no heavy import: the fetch
image (Dockerfile.packager, target fetch) rebuilds those files for a manifest older than its
`served_files` from here, without PyTorch or numpy. export and parity, which the checks name, are
imported only when options are validated (in the packager image)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from emotion_contract.errors import BadInput
from emotion_contract.layout import Layout
from model_packager.triton_repo import (
    TritonOptions,
    ensemble_config,
    token_model_configs,
    tokenizer_config,
)

if TYPE_CHECKING:
    from model_packager.source import Source

TRITON_DEVICES = ("gpu", "cpu")
TEXT_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class BuildOptions:
    """Everything that shapes the artifacts (and so the fingerprint) besides the source."""

    name: str = "emotion"
    max_length: int = 128
    precision: str = "fp32"
    # What the servers execute (OVMS's INFERENCE_PRECISION_HINT): the parity gate compiles with it.
    inference_precision: str = "f32"
    activation: str = "auto"
    triton_device: str = "gpu"
    text: str = "auto"
    tensorrt: str = "off"
    max_batch_size: int = 32

    def validate(self) -> None:
        from model_packager import export, parity

        if not Layout.valid_name(self.name):
            raise BadInput(f"model name {self.name!r} must be lowercase letters, digits and dashes")
        if not 2 < self.max_length <= 8192:
            raise BadInput(f"max length must be between 3 and 8192, not {self.max_length}")
        if self.precision not in export.PRECISIONS:
            raise BadInput(f"precision must be one of {', '.join(export.PRECISIONS)}, not {self.precision!r}")
        if self.inference_precision not in parity.INFERENCE_PRECISIONS:
            raise BadInput(
                f"inference precision must be one of {', '.join(parity.INFERENCE_PRECISIONS)}, "
                f"not {self.inference_precision!r}"
            )
        if self.activation not in ("auto", *export.ACTIVATIONS):
            raise BadInput(f"activation must be auto, sigmoid or softmax, not {self.activation!r}")
        if self.triton_device not in TRITON_DEVICES:
            raise BadInput(f"triton device must be gpu or cpu, not {self.triton_device!r}")
        if self.text not in TEXT_MODES:
            raise BadInput(f"text must be auto, on or off, not {self.text!r}")
        if self.tensorrt not in ("off", "FP32", "FP16"):
            raise BadInput(f"tensorrt must be off, FP32 or FP16, not {self.tensorrt!r}")
        if self.tensorrt != "off" and self.triton_device != "gpu":
            raise BadInput("tensorrt needs --triton-device gpu")
        if not 1 <= self.max_batch_size <= 1024:
            raise BadInput(f"max batch size must be between 1 and 1024, not {self.max_batch_size}")

    def check_fits(self, source: Source) -> None:
        """What these options ask of this checkpoint, refused before any work when it cannot give it."""
        limit = source.max_tokens
        if limit is not None and self.max_length > limit:
            positions = source.config["max_position_embeddings"]
            of = (
                f"the {positions} positions"
                if limit == positions
                else f"the {limit} tokens ({positions} positions)"
            )
            raise BadInput(
                f"max length {self.max_length} is more than {of} of {source.id} "
                "(max_position_embeddings in config.json)"
            )

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def triton(self) -> TritonOptions:
        return TritonOptions(max_batch_size=self.max_batch_size, tensorrt=self.tensorrt)


def pointer_files(*, manifest: dict[str, Any], version: int) -> dict[str, bytes]:
    """Triton's per-model files that name the served version: rewritten by every publish."""
    options = BuildOptions(**manifest["options"])
    layout = Layout(options.name)
    labels = manifest["labels"]
    configs = token_model_configs(
        model=layout.token_model,
        version=version,
        labels=len(labels),
        max_length=options.max_length,
        options=options.triton(),
        inputs=manifest["models"]["token"]["inputs"],
    )
    files = {
        layout.triton_config(layout.token_model): configs[options.triton_device],
        **{layout.triton_config(layout.token_model, variant): text for variant, text in configs.items()},
        layout.labels: "".join(f"{label}\n" for label in labels),
    }
    if manifest["models"].get("text"):
        files[layout.triton_config(layout.tokenizer_model)] = tokenizer_config(
            model=layout.tokenizer_model, version=version, max_length=options.max_length
        )
        files[layout.triton_config(layout.text_model)] = ensemble_config(
            model=layout.text_model,
            version=version,
            tokenizer=layout.tokenizer_model,
            classifier=layout.token_model,
            labels=len(labels),
        )
    return {key: text.encode() for key, text in files.items()}
