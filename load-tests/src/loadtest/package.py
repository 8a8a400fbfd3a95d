"""Read a packaged model (what the model-packager publishes) from a local folder or an S3 bucket.

Both hold the same keys, named by the contract's emotion_contract.layout (docs/contracts.md):

    manifests/<name>/READY                      {"version", "manifest": "manifests/<name>/N.json", "sha256"}
    manifests/<name>/<N>.json                   labels, activation, options.max_length, sha256 of every object
    triton/<name>/<N>/tokenizer.json            HuggingFace `tokenizers` file (models.tokenizer.key)
    triton/<name>/<N>/model.onnx                the ONNX graph both servers were built from

Only READY and the manifest are read up front; the tokenizer and the ONNX file are read when the prepared
inputs are not cached yet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from emotion_contract.documents import TOKEN_INPUTS, Manifest, Ready, Record
from emotion_contract.errors import BadInput, ToolError
from emotion_contract.layout import Layout, version_of

S3_SCHEME = "s3://"


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
    (emotion_contract.s3.Bucket: AWS_* keys, AWS_CA_BUNDLE, retries with a time budget)."""

    endpoint: str
    bucket: str
    prefix: str = ""
    ca_bundle: Path | None = None
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

    def create(self, key: str, data: bytes) -> bool:
        """Write a new object; False when the key exists (nothing is ever overwritten)."""
        return bool(self._call(lambda bucket: bucket.put(self._full(key), data, create_only=True)))

    def keys(self, prefix: str) -> list[str]:
        """The keys under `prefix`, relative to the store like every key it takes."""
        found = self._call(lambda bucket: bucket.keys(self._full(prefix)))
        return [k[len(self._full("")) :] for k in found]

    def _full(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _call(self, operation: Any) -> Any:
        """The contract's client, its errors (refused keys 5, unreachable 6...) naming the package."""
        from emotion_contract.s3 import Bucket, Endpoint  # minio: 0.45 s of start-up, only for s3:// packages

        try:
            if self._bucket is None:
                url = self.endpoint if "://" in self.endpoint else f"http://{self.endpoint}"
                self._bucket = Bucket(
                    Endpoint(url=url, bucket=self.bucket, ca_bundle=self.ca_bundle, budget=30.0)
                )
            return operation(self._bucket)
        except ToolError as err:
            raise type(err)(f"package {self.location}: {err.message}") from None


def open_store(source: str, *, s3_endpoint: str | None, ca_bundle: Path | None = None) -> Store:
    """A local folder, or `s3://bucket[/prefix]` on `s3_endpoint`."""
    if source.startswith(S3_SCHEME):
        bucket, _, prefix = source[len(S3_SCHEME) :].partition("/")
        if not bucket:
            raise BadInput(f"--package {source!r}: expected s3://bucket[/prefix]")
        if not s3_endpoint:
            raise BadInput(f"--package {source}: an s3:// package needs --endpoint")
        return S3Store(endpoint=s3_endpoint, bucket=bucket, prefix=prefix.strip("/"), ca_bundle=ca_bundle)
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
    manifest: Manifest
    manifest_sha256: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.manifest.labels)

    def require_text_model(self) -> None:
        """`--input text` needs the raw-text model: BadInput when the manifest records none."""
        if not self.has_text_model:
            what = f"package {self.name} v{self.version} has no raw-text model"
            raise BadInput(f"--input text: {what} (its manifest says so)")

    @property
    def activation(self) -> str:
        return str(self.manifest.document.get("activation", ""))

    @property
    def max_length(self) -> int:
        return self.manifest.max_length

    @property
    def tokenizer_key(self) -> str:
        """The manifest's models.tokenizer.key: the packager always publishes the tokenizer there."""
        listed = self.manifest.tokenizer_key
        if not listed:
            raise BadInput(f"manifest {self.version} of {self.name} names no tokenizer (models.tokenizer)")
        return listed

    def served_name(self, *, text: bool) -> str:
        """What the servers call the raw-text or the token model (the manifest's models.*.name)."""
        layout = Layout(self.name)
        recorded = self.manifest.served_name("text" if text else "token")
        return recorded or (layout.text_model if text else layout.token_model)

    @property
    def has_text_model(self) -> bool:
        """False when the manifest says the raw-text models were not built (models.text is null)."""
        return self.manifest.models.get("text", True) is not None

    @property
    def token_inputs(self) -> tuple[str, ...]:
        """The token model's inputs (the manifest's models.token.inputs; a BERT's three by default)."""
        listed = (self.manifest.models.get("token") or {}).get("inputs")
        return tuple(listed) if listed else TOKEN_INPUTS

    @property
    def onnx_key(self) -> str:
        return Layout(self.name).onnx(self.version)

    def read_verified(self, key: str) -> bytes:
        """The object's bytes, checked against the manifest's sha256 where the manifest lists the key."""
        data = self.store.read(key)
        entry = self.manifest.objects.get(key)
        if entry is not None and hashlib.sha256(data).hexdigest() != entry.sha256:
            raise BadInput(f"package {self.store.location}: {key} does not match the sha256 in its manifest")
        return data

    def problems(self) -> list[str]:
        """Objects of this version (both servers' folders: OVMS's IR too) that are missing, or whose
        size or recorded sha256 differ from the manifest's: a look at each, nothing downloaded."""
        found = []
        for key, entry in sorted(self.manifest.objects.items()):
            if version_of(key) != self.version:
                continue
            stat = self.store.stat(key)
            if stat is None:
                found.append(f"{key} is missing")
            elif stat[0] != entry.size or stat[1] not in (None, entry.sha256):
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


@dataclass(frozen=True)
class PackageRef:
    """Which package and which of its versions: what `--package`, `--name`, `--version`, `--request`,
    `--endpoint` and `--ca-bundle` say, parsed once by the CLI."""

    source: str
    name: str
    version: int | None = None
    request: str | None = None
    s3_endpoint: str | None = None
    ca_bundle: Path | None = None

    def open(self) -> Package:
        """READY (or the manifest of `version`, or of the version model request `request` was published
        as: what the chart's unpinned servers serve), checked: its sha256 and the fields the tester needs."""
        store = self.store()
        layout = Layout(self.name)
        where = f"package {store.location}:"
        version = self.version
        if self.request is not None:
            key = layout.request(self.request)
            version = Record.parse(store.read(key), where=f"{where} {key}").version
        ready = Ready.parse(store.read(layout.ready), where=f"{where} {layout.ready}")
        expected_sha: str | None = ready.sha256
        manifest_key = ready.manifest
        if version is None or version == ready.version:
            version = ready.version
        else:
            manifest_key, expected_sha = layout.manifest(version), None
        raw = store.read(manifest_key)
        sha = hashlib.sha256(raw).hexdigest()
        if expected_sha and sha != expected_sha:
            raise BadInput(f"{where} {manifest_key} does not match the sha256 in {layout.ready}")
        manifest = Manifest.parse(raw, where=f"{where} {manifest_key}")
        package = Package(
            store=store, name=self.name, version=version, manifest=manifest, manifest_sha256=sha
        )
        try:
            labels, max_length = package.labels, package.max_length
        except (KeyError, TypeError, ValueError):
            raise BadInput(f"{where} {manifest_key} lacks labels or options.max_length") from None
        if not labels or max_length < 2:
            raise BadInput(f"{where} {manifest_key} has no labels or a max_length below 2")
        unknown = sorted(set(package.token_inputs) - set(TOKEN_INPUTS))
        if unknown or "input_ids" not in package.token_inputs:
            raise BadInput(f"{where} the token model's inputs {list(package.token_inputs)} are not BERT's")
        return package

    def store(self) -> Store:
        return open_store(self.source, s3_endpoint=self.s3_endpoint, ca_bundle=self.ca_bundle)
