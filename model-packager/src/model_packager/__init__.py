"""model-packager: a HuggingFace sequence classifier to ONNX (Triton) and OpenVINO IR (OVMS), proven equal,
published atomically for both servers. The command line is model_packager.cli; the bucket layout is
emotion_contract.layout."""

from importlib import metadata

try:
    __version__ = metadata.version("model-packager")
except metadata.PackageNotFoundError:  # run from a source checkout without installing
    __version__ = "0+source"
