"""Read a packaged model (what the model-packager publishes) from a local folder or an S3 bucket.

Both hold the same keys, named by the packager's model_packager.layout (docs/contracts.md):

    manifests/<name>/READY                      {"version", "manifest": "manifests/<name>/N.json", "sha256"}
    manifests/<name>/<N>.json                   labels, activation, options.max_length, sha256 of every object
    triton/<name>/<N>/tokenizer.json            HuggingFace `tokenizers` file (models.tokenizer.key)
    triton/<name>/<N>/model.onnx                the ONNX graph both servers were built from

Only READY and the manifest are read up front; the tokenizer and the ONNX file are read when the prepared
inputs are not cached yet.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from loadtest.errors import BadInput, Unavailable
from model_packager.layout import Layout, Server, version_of

S3_SCHEME = "s3://"
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class Store(Protocol):
    location: str

    def read(self, key: str) -> bytes: ...

    def stat(self, key: str) -> tuple[int, str | None] | None:
        """(size, sha256 if the store records it) of an object, or None when it is missing."""
        ...


@dataclass(frozen=True)
class LocalStore:
    root: Path

    @property
    def location(self) -> str:
        return str(self.root)

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except FileNotFoundError:
            raise BadInput(f"package {self.root}: {key} is missing") from None
        except OSError as err:
            raise BadInput(f"package {self.root}: {key}: {err.strerror}") from None

    def stat(self, key: str) -> tuple[int, str | None] | None:
        path = self.root / key
        return (path.stat().st_size, None) if path.is_file() else None


@dataclass
class S3Store:
    """A bucket (and optional prefix) on an S3 endpoint, read through the packager's own client
    (model_packager.s3.Bucket: AWS_* keys, AWS_CA_BUNDLE, retries with a time budget)."""

    endpoint: str
    bucket: str
    prefix: str = ""
    _bucket: Any = field(default=None, init=False, repr=False)

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/") + f" on {self.endpoint}"

    def read(self, key: str) -> bytes:
        data = self._call(lambda bucket: bucket.read(self._full(key)))
        if data is None:
            raise BadInput(f"package {self.location}: {key} is missing")
        return data

    def stat(self, key: str) -> tuple[int, str | None] | None:
        found = self._call(lambda bucket: bucket.stat(self._full(key)))
        return None if found is None else (int(found["size"]), found["sha256"])

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, operation: Any) -> Any:
        from model_packager.errors import PackagerError
        from model_packager.errors import Unavailable as PackagerUnavailable
        from model_packager.s3 import Bucket, Endpoint

        try:
            if self._bucket is None:
                url = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
                self._bucket = Bucket(Endpoint(url=url, bucket=self.bucket, budget=30.0))
            return operation(self._bucket)
        except PackagerUnavailable as err:
            raise Unavailable(f"package {self.location}: {err.message}") from None
        except PackagerError as err:
            raise BadInput(f"package {self.location}: {err.message}") from None


def open_store(source: str, *, s3_endpoint: str | None) -> Store:
    """A local folder, or `s3://bucket[/prefix]` on `s3_endpoint`."""
    if source.startswith(S3_SCHEME):
        bucket, _, prefix = source[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise BadInput(f"--package {source!r}: expected s3://bucket[/prefix]")
        if not s3_endpoint:
            raise BadInput(f"--package {source}: an s3:// package needs --s3-endpoint")
        return S3Store(endpoint=s3_endpoint, bucket=bucket, prefix=prefix.strip("/"))
    root = Path(source)
    if not root.is_dir():
        raise BadInput(f"--package {source}: not a folder (and not s3://bucket)")
    return LocalStore(root)


@dataclass(frozen=True)
class Package:
    """One published version: its manifest, and where to read its tokenizer and ONNX graph."""

    store: Store
    name: str
    version: int
    manifest: dict[str, Any]
    manifest_sha256: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.manifest["labels"])

    @property
    def activation(self) -> str:
        return str(self.manifest.get("activation", ""))

    @property
    def max_length(self) -> int:
        return int(self.manifest["options"]["max_length"])

    @property
    def tokenizer_key(self) -> str:
        """The manifest's models.tokenizer.key: the packager always publishes the tokenizer there."""
        listed = (self._models.get("tokenizer") or {}).get("key")
        if not listed:
            raise BadInput(f"manifest {self.version} of {self.name} names no tokenizer (models.tokenizer)")
        return str(listed)

    @property
    def has_text_model(self) -> bool:
        """False when the manifest says the raw-text models were not built (models.text is null)."""
        return self._models.get("text", True) is not None

    @property
    def token_inputs(self) -> tuple[str, ...]:
        """The token model's inputs (the manifest's models.token.inputs; a BERT's three by default)."""
        listed = (self._models.get("token") or {}).get("inputs")
        return tuple(listed) if listed else TOKEN_INPUTS

    @property
    def _models(self) -> dict[str, Any]:
        models = self.manifest.get("models")
        return models if isinstance(models, dict) else {}

    @property
    def onnx_key(self) -> str:
        layout = Layout(self.name)
        return f"{Layout.version_dir(Server.TRITON, layout.token_model, self.version)}/model.onnx"

    def read_verified(self, key: str) -> bytes:
        """The object's bytes, checked against the manifest's sha256 where the manifest lists the key."""
        data = self.store.read(key)
        expected = _listed_sha256(self.manifest, key)
        if expected is not None and hashlib.sha256(data).hexdigest() != expected:
            raise BadInput(f"package {self.store.location}: {key} does not match the sha256 in its manifest")
        return data

    def problems(self) -> list[str]:
        """Objects of this version (both servers' folders: OVMS's IR too) that are missing, or whose
        size or recorded sha256 differ from the manifest's: a look at each, nothing downloaded."""
        found = []
        for key, entry in sorted((self.manifest.get("objects") or {}).items()):
            if version_of(key) != self.version or not isinstance(entry, dict):
                continue
            stat = self.store.stat(key)
            if stat is None:
                found.append(f"{key} is missing")
            elif stat[0] != entry.get("size") or stat[1] not in (None, entry.get("sha256")):
                found.append(f"{key} differs from its manifest entry")
        return found

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.store.location,
            "name": self.name,
            "version": self.version,
            "manifest_sha256": self.manifest_sha256,
            "labels": list(self.labels),
            "activation": self.activation,
            "max_length": self.max_length,
            "token_inputs": list(self.token_inputs),
        }


def open_package(
    *, source: str, name: str, version: int | None = None, s3_endpoint: str | None = None
) -> Package:
    """READY (or the manifest of `version`), checked: its sha256 and the fields the tester needs."""
    store = open_store(source, s3_endpoint=s3_endpoint)
    layout = Layout(name)
    ready_key = layout.ready
    ready = _json(store, ready_key, store.read(ready_key))
    try:
        ready_version = int(ready["version"])
        manifest_key = str(ready["manifest"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"package {store.location}: {ready_key} lacks version/manifest") from None
    if version is None or version == ready_version:
        version = ready_version
        expected_sha = ready.get("sha256")
    else:
        manifest_key, expected_sha = layout.manifest(version), None
    raw = store.read(manifest_key)
    sha = hashlib.sha256(raw).hexdigest()
    if expected_sha is not None and sha != expected_sha:
        raise BadInput(f"package {store.location}: {manifest_key} does not match the sha256 in {ready_key}")
    manifest = _json(store, manifest_key, raw)
    package = Package(store=store, name=name, version=version, manifest=manifest, manifest_sha256=sha)
    try:
        labels, max_length = package.labels, package.max_length
    except (KeyError, TypeError, ValueError):
        raise BadInput(
            f"package {store.location}: {manifest_key} lacks labels or options.max_length"
        ) from None
    if not labels or max_length < 2:
        raise BadInput(f"package {store.location}: {manifest_key} has no labels or a max_length below 2")
    unknown = sorted(set(package.token_inputs) - set(TOKEN_INPUTS))
    if unknown or "input_ids" not in package.token_inputs:
        raise BadInput(
            f"package {store.location}: the token model's inputs {list(package.token_inputs)} are not BERT's"
        )
    return package


def _json(store: Store, key: str, raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadInput(f"package {store.location}: {key} is not JSON ({err})") from None
    if not isinstance(value, dict):
        raise BadInput(f"package {store.location}: {key} is not a JSON object")
    return value


def _listed_sha256(manifest: dict[str, Any], key: str) -> str | None:
    """The sha256 that the manifest's `objects` ({key: {sha256, size}}) records for `key`."""
    entry = (manifest.get("objects") or {}).get(key)
    return entry.get("sha256") if isinstance(entry, dict) else None
