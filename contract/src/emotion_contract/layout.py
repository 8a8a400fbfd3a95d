"""The bucket layout: the one place that names every key the packager writes and the servers read.

    ovms/<name>/<N>/model.bin, model.xml               OpenVINO IR; token ids in (OVMS base_path)
    ovms/<name>-text/<N>/model.bin, model.xml          IR with the tokenizer fused in; strings in
    triton/<name>/config.pbtxt                         onnxruntime backend, GPU (TensorRT optional)
    triton/<name>/configs/cpu.pbtxt                    onnxruntime on CPU (--model-config-name=cpu)
    triton/<name>/configs/python.pbtxt                 python backend running the same ONNX file, for Triton
                                                       builds without onnxruntime (--model-config-name=python)
    triton/<name>/labels.txt                           label names, for Triton's classification extension
    triton/<name>/<N>/model.onnx, model.py, tokenizer.json (the HuggingFace tokenizer, for clients)
    triton/<name>-tokenizer/config.pbtxt, <N>/...      dependency-free WordPiece step (python backend)
    triton/<name>-text/config.pbtxt, <N>/README.md     ensemble: tokenizer, then the ONNX classifier
    manifests/<name>/<N>.claim                         who publishes version N (a conditional create)
    manifests/<name>/<N>.json                          sha256 + size of every object, source, options, parity
    manifests/<name>/READY                             the newest complete version; written last
    manifests/<name>/requests/<R>.json                 the version a release's model request R was
                                                       published as (written once, after READY)
    reports/<name>/<run>/report.json, report.md, plots/*.png
                                                       a load test's report, kept by an in-cluster run
                                                       (`loadtest run --keep-report RUN`); written once

Callers get whole keys from Layout (never fragments to append to); file names live here only.
The same N appears in both servers' trees. Version folders are written once and never overwritten.
Within a version folder the entry file (the one a server looks for) is uploaded last, and OVMS's
entry files last of all (upload_order), so a killed publish leaves a folder that no server treats
as a model version: OVMS needs the .xml and .bin pair,
and each Triton config.pbtxt names the one version it serves (`version_policy: specific`), which is
rewritten only after every file of that version is uploaded and verified. config.pbtxt, labels.txt
and READY are pointers that each publish rewrites; nothing under a version number ever changes.
Manifests live outside triton/, where Triton would take every folder for a model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from emotion_contract.servers import Server

# Model names become S3 keys and Triton/OVMS model names: keep them plain.
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")

MANIFESTS = "manifests"
REPORTS = "reports"
#: A load-test run's name in the bucket: what a Kubernetes object name allows, and nothing that nests.
_RUN = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
ONNX_FILE = "model.onnx"
IR_FILE = "model.xml"  # OpenVINO IR; its weights are IR_WEIGHTS beside it
IR_WEIGHTS = "model.bin"
PYTHON_MODEL = "model.py"  # a Triton python-backend model
TOKENIZER_FILE = "tokenizer.json"
CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
NOTE_FILE = "README.md"  # an ensemble's version folder holds only this note
#: Entry files per kind of version folder: uploaded after every other file of the folder.
ENTRY_FILES = (IR_FILE, ONNX_FILE, PYTHON_MODEL, NOTE_FILE)


@dataclass(frozen=True)
class Layout:
    """Keys for the models published under one name (default `emotion`)."""

    name: str

    @staticmethod
    def valid_name(name: str) -> bool:
        return bool(_NAME.match(name)) and not name.endswith(("-text", "-tokenizer"))

    @property
    def token_model(self) -> str:
        return self.name

    @property
    def text_model(self) -> str:
        return f"{self.name}-text"

    @property
    def tokenizer_model(self) -> str:
        return f"{self.name}-tokenizer"

    @staticmethod
    def model_dir(server: Server, model: str) -> str:
        return f"{server.value}/{model}"

    @classmethod
    def version_dir(cls, server: Server, model: str, version: int) -> str:
        return f"{cls.model_dir(server, model)}/{version}"

    # -- files of a version --------------------------------------------------------------------------

    def onnx(self, version: int) -> str:
        """The ONNX classifier Triton serves, and the source of every other artifact."""
        return f"{self.version_dir(Server.TRITON, self.token_model, version)}/{ONNX_FILE}"

    def onnx_runner(self, version: int) -> str:
        """The python-backend model that runs the ONNX file (Triton builds without onnxruntime)."""
        return f"{self.version_dir(Server.TRITON, self.token_model, version)}/{PYTHON_MODEL}"

    def tokenizer(self, version: int) -> str:
        """The HuggingFace tokenizer clients use to build token requests."""
        return f"{self.version_dir(Server.TRITON, self.token_model, version)}/{TOKENIZER_FILE}"

    def ir(self, model: str, version: int) -> str:
        """An OVMS model's IR (.xml; its weights beside it, IR_WEIGHTS)."""
        return f"{self.version_dir(Server.OVMS, model, version)}/{IR_FILE}"

    def ensemble_note(self, version: int) -> str:
        return f"{self.version_dir(Server.TRITON, self.text_model, version)}/{NOTE_FILE}"

    # -- pointers -----------------------------------------------------------------------------------

    def triton_config(self, model: str, variant: str | None = None) -> str:
        """A Triton model's config.pbtxt, or one of its variants under configs/."""
        folder = self.model_dir(Server.TRITON, model)
        return f"{folder}/{CONFIG_FILE}" if variant is None else f"{folder}/configs/{variant}.pbtxt"

    @property
    def labels(self) -> str:
        return f"{self.model_dir(Server.TRITON, self.token_model)}/{LABELS_FILE}"

    # -- manifests ------------------------------------------------------------------------------------

    def manifest(self, version: int) -> str:
        return f"{MANIFESTS}/{self.name}/{version}.json"

    def claim(self, version: int) -> str:
        return f"{MANIFESTS}/{self.name}/{version}.claim"

    def request(self, request: str) -> str:
        """The record of model request `request` (the chart's hash of the model values): its version."""
        return f"{MANIFESTS}/{self.name}/requests/{request}.json"

    @property
    def requests_prefix(self) -> str:
        return f"{MANIFESTS}/{self.name}/requests/"

    @property
    def ready(self) -> str:
        return f"{MANIFESTS}/{self.name}/READY"

    @property
    def manifests_prefix(self) -> str:
        return f"{MANIFESTS}/{self.name}/"

    # -- load-test reports ----------------------------------------------------------------------------

    @staticmethod
    def valid_run(run: str) -> bool:
        return bool(_RUN.match(run))

    def report_prefix(self, run: str) -> str:
        """The folder of run `run`'s report: its files keep their paths inside the report folder."""
        return f"{REPORTS}/{self.name}/{run}/"


def version_of(key: str) -> int | None:
    """The version number in a key under a server tree (`ovms/emotion/3/model.xml` -> 3), if any."""
    parts = key.split("/")
    if len(parts) >= 4 and parts[0] in {s.value for s in Server} and parts[2].isdigit():
        return int(parts[2])
    return None


def upload_order(keys: list[str]) -> list[str]:
    """Version-folder files with each folder's entry file last (model.xml after model.bin...), and
    OVMS's entry files after everything else: OVMS serves any complete version folder (there is no
    pointer for it to wait on), so they go once Triton's files (a 117 MB model.onnx) are all in,
    leaving only the pointers and READY between OVMS seeing a version and the rest naming it."""

    def rank(key: str) -> tuple[bool, bool, str]:
        entry = key.rsplit("/", 1)[-1] in ENTRY_FILES
        return entry, entry and key.startswith(f"{Server.OVMS.value}/"), key

    return sorted(keys, key=rank)
