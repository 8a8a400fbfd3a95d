"""The documents of the bucket, with one parser each: READY (which version is complete and newest) and a
version's manifest (what it holds, where it came from). model-packager writes them; every reader (the
packager's publish, audit and wait, the load tester) parses them here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from emotion_contract.errors import BadInput, ToolError
from emotion_contract.layout import Layout

SCHEMA = 1


def dump(document: Mapping[str, Any]) -> bytes:
    """A manifest, READY or claim document as published: indented JSON, UTF-8, one final newline."""
    return (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _load(data: bytes | Mapping[str, Any], where: str, error: type[ToolError]) -> Mapping[str, Any]:
    if isinstance(data, Mapping):
        return data
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise error(f"{where} is not valid JSON ({err})") from None
    if not isinstance(document, dict):
        raise error(f"{where} is not a JSON object")
    return document


def _version(document: Mapping[str, Any]) -> int:
    """A document's `version`: a positive whole number (KeyError or ValueError otherwise)."""
    version = document["version"]
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version {version!r} is not a positive whole number")
    return version


@dataclass(frozen=True)
class Ready:
    """READY: the newest complete version, its manifest's key and that manifest's sha256."""

    version: int
    manifest: str
    sha256: str

    @classmethod
    def of(cls, layout: Layout, version: int, manifest_bytes: bytes) -> Ready:
        return cls(version, layout.manifest(version), hashlib.sha256(manifest_bytes).hexdigest())

    @classmethod
    def parse(
        cls, data: bytes | Mapping[str, Any], *, where: str = "READY", error: type[ToolError] = BadInput
    ) -> Ready:
        document = _load(data, where, error)
        try:
            return cls(_version(document), str(document["manifest"]), str(document.get("sha256", "")))
        except (KeyError, ValueError) as err:
            raise error(f"{where} is malformed ({err})") from None

    def dump(self) -> bytes:
        return dump({"version": self.version, "manifest": self.manifest, "sha256": self.sha256})


@dataclass(frozen=True)
class Record:
    """What a model request (the chart's hash of the model values) was published as:
    manifests/<name>/requests/<R>.json, written once by the packager Job."""

    request: str
    version: int
    fingerprint: str

    @classmethod
    def parse(
        cls, data: bytes | Mapping[str, Any], *, where: str, error: type[ToolError] = BadInput
    ) -> Record:
        document = _load(data, where, error)
        try:
            return cls(str(document["request"]), _version(document), str(document["fingerprint"]))
        except (KeyError, ValueError) as err:
            raise error(f"{where} is malformed ({err})") from None


@dataclass(frozen=True)
class Entry:
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    """A version's manifest. `document` is the whole JSON; the fields are what readers rely on."""

    document: Mapping[str, Any]

    @classmethod
    def parse(
        cls, data: bytes | Mapping[str, Any], *, where: str = "manifest", error: type[ToolError] = BadInput
    ) -> Manifest:
        document = _load(data, where, error)
        try:
            objects = document["objects"]
            for key, entry in objects.items():
                if not isinstance(entry, Mapping) or not {"sha256", "size"} <= entry.keys():
                    raise ValueError(f"object {key} lacks its sha256 or size")
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise error(f"{where} is malformed ({err})") from None
        return cls(document)

    @property
    def version(self) -> int:
        return int(self.document["version"])

    @property
    def fingerprint(self) -> str:
        return str(self.document["fingerprint"])

    @property
    def objects(self) -> dict[str, Entry]:
        return {k: Entry(str(v["sha256"]), int(v["size"])) for k, v in self.document["objects"].items()}

    @property
    def labels(self) -> list[str]:
        return list(self.document.get("labels", []))

    @property
    def models(self) -> Mapping[str, Any]:
        """token, text (None when not built) and tokenizer: each model's name, inputs and outputs."""
        return self.document.get("models") or {}

    @property
    def max_length(self) -> int:
        return int(self.document["options"]["max_length"])

    @property
    def tokenizer_key(self) -> str | None:
        tokenizer = self.models.get("tokenizer") or {}
        return tokenizer.get("key")

    def served_name(self, kind: str) -> str | None:
        """The name a server serves the `token` or `text` model under (None when not built)."""
        model = self.models.get(kind)
        return None if not model else str(model["name"])


#: The token model's inputs, in the order the ONNX graph takes them (a checkpoint may lack the last).
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
#: The classifier's output tensors, on every model and server (the manifest's models.*.outputs).
OUTPUTS = ("logits", "probabilities")
#: The raw-text models' one input: a batch of UTF-8 strings.
TEXT_INPUT = "text"
