"""Where the checkpoint comes from: a HuggingFace hub id (the real path) or a local folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emotion_contract.documents import file_sha256
from emotion_contract.errors import BadInput, CredentialsRefused, Unavailable

# Files a sequence classifier needs; the weights in either format.
_CHECKPOINT_FILES = (
    "config.json",
    "*.safetensors",
    "pytorch_model*.bin",
    "*.json",
    "vocab.txt",
    "*.model",
    "merges.txt",
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
#: Files that hold a tokenizer's vocabulary: without one, transformers falls back to a 5-token
#: vocabulary (every word [UNK]) and the build would pass the gate with a useless model.
_VOCABULARY_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "*.model")
#: The classifier head's weight (its rows are the labels), by architecture family.
_HEAD_WEIGHTS = ("classifier.weight", "classifier.out_proj.weight", "score.weight")
#: Models that number positions from pad_token_id + 1 (RoBERTa's scheme): that many fewer tokens fit.
_OFFSET_POSITIONS = frozenset(
    {"camembert", "data2vec-text", "ibert", "longformer", "mpnet", "roberta", "roberta-prelayernorm",
     "xlm-roberta", "xlm-roberta-xl", "xmod"}
)  # fmt: skip


@dataclass(frozen=True)
class Source:
    """A resolved checkpoint: files on local disk, and what identifies them."""

    id: str  # the hub id, or the local folder as given
    revision: str | None  # the revision asked for (hub only)
    commit: str | None  # the commit it resolved to (hub only)
    path: Path  # the local folder holding the files
    content_sha256: str  # over every checkpoint file: names and contents
    config: dict[str, Any] = field(repr=False)

    @property
    def stand_in(self) -> bool:
        return bool(self.config.get("stand_in"))

    @property
    def labels(self) -> list[str]:
        id2label = self.config.get("id2label") or {}
        return [
            str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(_label_count(self.config))
        ]

    @property
    def max_tokens(self) -> int | None:
        """The most tokens per text its position embeddings allow (None: the config does not say)."""
        positions = self.config.get("max_position_embeddings")
        if positions is None:
            return None
        if self.config.get("model_type") in _OFFSET_POSITIONS:
            return positions - (self.config.get("pad_token_id") or 0) - 1
        return positions

    def describe(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "revision": self.revision,
            "commit": self.commit,
            "content_sha256": self.content_sha256,
            "stand_in": self.stand_in,
            **({"stand_in_for": self.config["stand_in_for"]} if self.stand_in else {}),
            "architecture": (self.config.get("architectures") or ["?"])[0],
        }


def resolve(*, model: str, revision: str | None = None, cache_dir: Path | None = None) -> Source:
    """Find the checkpoint `model` (a folder, else a hub id) and check that it is a sequence classifier
    whose files are whole and agree with each other: all before anything is loaded or written."""
    local = Path(model)
    if local.is_dir():
        path, commit = local, None
    elif local.exists() or model.startswith((".", "/", "~")) or model.endswith("/"):
        raise BadInput(f"{model} is not a folder holding a HuggingFace checkpoint")
    elif not _HUB_ID.match(model):
        raise BadInput(f"{model!r} is neither a local folder nor a HuggingFace hub id (owner/name)")
    else:
        path = _download_or_refuse_missing_folder(model, revision, cache_dir)
        commit = path.name  # snapshot folders are named after the commit
    config = _config(path, model)
    _check_classifier(config, model)
    _check_checkpoint(path, config, model)
    return Source(
        id=model if commit else str(local),
        revision=revision if commit else None,
        commit=commit,
        path=path,
        content_sha256=_content_digest(path),
        config=config,
    )


def _download_or_refuse_missing_folder(model: str, revision: str | None, cache_dir: Path | None) -> Path:
    """`models/mine` is a hub id and a relative path at once: when the hub cannot give it and its
    first folder exists here, it was a local folder that is missing (permanent), not a hub outage."""
    try:
        return _download(model, revision, cache_dir)
    except (Unavailable, _NotOnHub) as err:
        parent = Path(model).parent
        if parent != Path() and parent.is_dir():
            raise BadInput(
                f"{model} is not a folder holding a HuggingFace checkpoint: {parent}/ has no "
                f"{Path(model).name} (nor did the hub give a model of that name)"
            ) from err
        raise


class _NotOnHub(BadInput):
    """The hub has no repository of this name."""


def _download(repo_id: str, revision: str | None, cache_dir: Path | None) -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=list(_CHECKPOINT_FILES),
            token=os.environ.get("HF_TOKEN") or None,
            # huggingface_hub reads these two once, when first imported; read them now, so that the
            # environment of this call counts (the tests run many calls in one process).
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            local_files_only=os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"},
        )
    except GatedRepoError as err:
        raise CredentialsRefused(f"the hub refused access to {repo_id} (gated: set HF_TOKEN)") from err
    except RepositoryNotFoundError as err:
        raise _NotOnHub(f"unknown model {repo_id!r}: no such repository on the HuggingFace hub") from err
    except RevisionNotFoundError as err:
        raise BadInput(f"model {repo_id!r} has no revision {revision!r}") from err
    except LocalEntryNotFoundError as err:
        raise Unavailable(
            f"cannot download {repo_id} from the HuggingFace hub (offline, and not in the cache); "
            "pass a local checkpoint folder instead"
        ) from err
    except HfHubHTTPError as err:
        raise Unavailable(f"the HuggingFace hub failed for {repo_id}: {err}".splitlines()[0]) from err
    except OSError as err:  # connection refused, DNS: requests' errors are OSErrors
        raise Unavailable(f"cannot reach the HuggingFace hub for {repo_id}: {err}".splitlines()[0]) from err
    return Path(folder)


def _config(path: Path, model: str) -> dict[str, Any]:
    config_path = path / "config.json"
    if not config_path.is_file():
        raise BadInput(f"{model} has no config.json: not a HuggingFace checkpoint")
    config = _json_file(config_path)
    if not isinstance(config, dict):
        raise BadInput(f"{config_path} must hold a JSON object, not {_json_kind(config)}")
    for key in ("num_labels", "vocab_size", "max_position_embeddings"):
        value = config.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise BadInput(f"{key} in {config_path} must be a positive integer, not {value!r}")
    architectures = config.get("architectures")
    if architectures is not None and (
        not isinstance(architectures, list) or not all(isinstance(a, str) for a in architectures)
    ):
        raise BadInput(f"architectures in {config_path} must be a list of class names, not {architectures!r}")
    _check_labels(config, config_path)
    return config


def _json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as err:
        raise BadInput(f"{path} is not UTF-8 text: {err}") from err
    except json.JSONDecodeError as err:
        raise BadInput(f"{path} is not valid JSON: {err}") from err


def _json_kind(value: Any) -> str:
    kinds = {list: "an array", str: "a string", bool: "a boolean", int: "a number", float: "a number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _label_count(config: dict[str, Any]) -> int:
    """num_labels, else the size of id2label, else transformers' default of 2."""
    return config.get("num_labels") or len(config.get("id2label") or {}) or 2


def _check_labels(config: dict[str, Any], where: Path) -> None:
    """Refuse an id2label that does not number the labels 0 to N-1, or that num_labels contradicts."""
    id2label, count = config.get("id2label"), config.get("num_labels")
    if id2label is None:
        return
    if not isinstance(id2label, dict) or not id2label:
        raise BadInput(f"id2label in {where} must be an object naming the labels, not {id2label!r}")
    if sorted(str(k) for k in id2label) != sorted(str(i) for i in range(len(id2label))):
        raise BadInput(
            f"id2label in {where} must number its labels 0 to {len(id2label) - 1}, "
            f"not {', '.join(sorted(map(str, id2label)))}"
        )
    if count is not None and count != len(id2label):
        raise BadInput(f"{where} says num_labels {count} but its id2label names {len(id2label)} labels")


def _check_classifier(config: dict[str, Any], model: str) -> None:
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        found = ", ".join(architectures) or "none listed"
        raise BadInput(f"{model} is not a sequence classifier (architectures: {found})")
    if config.get("problem_type") == "regression":
        raise BadInput(f"{model} is a regression model, not a classifier (problem_type: regression)")


def _check_checkpoint(path: Path, config: dict[str, Any], model: str) -> None:
    """The files are whole and agree with config.json: a tokenizer whose ids fit the embedding,
    weights that are not cut short, a classifier head with one row per label."""
    if not any(any(path.glob(pattern)) for pattern in _VOCABULARY_FILES):
        raise BadInput(
            f"{model} has no tokenizer: it needs tokenizer.json, vocab.txt, vocab.json or a "
            "SentencePiece *.model next to config.json"
        )
    check_token_ids(model, _largest_token_id(path), config.get("vocab_size"))
    weights = sorted(path.glob("*.safetensors"))
    if not weights and not any(path.glob("pytorch_model*.bin")):
        raise BadInput(f"{model} has no weights: no *.safetensors and no pytorch_model*.bin")
    shapes: dict[str, list[int]] = {}
    for file in weights:
        shapes.update(_safetensors_shapes(file))
    head = next(((name, shapes[name]) for name in _HEAD_WEIGHTS if name in shapes), None)
    labels = _label_count(config)
    if head and head[1][0] != labels:
        name, shape = head
        raise BadInput(
            f"the labels of {model} do not match its weights: config.json names {labels}, "
            f"{name} has {shape[0]} rows (shape {shape})"
        )


def check_token_ids(model: str, top: int | None, vocab_size: int | None) -> None:
    """Refuse a tokenizer that produces ids the embedding has no row for (the ONNX would fail on them)."""
    if top is not None and vocab_size is not None and top >= vocab_size:
        raise BadInput(
            f"the tokenizer of {model} has token ids up to {top}, beyond the model's {vocab_size} "
            "embeddings (vocab_size in config.json): it is not this model's tokenizer"
        )


def _largest_token_id(path: Path) -> int | None:
    """The largest id the tokenizer can produce, from its files (None: not readable without loading
    it, as for SentencePiece; the build checks the loaded tokenizer again)."""
    ids: list[int] = []
    tokenizer_json = path / "tokenizer.json"
    if tokenizer_json.is_file():
        spec = _json_file(tokenizer_json)
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), dict):
            raise BadInput(f"{tokenizer_json} is not a tokenizer: it must hold an object with a model")
        vocab = spec["model"].get("vocab")
        if isinstance(vocab, dict):  # WordPiece, BPE, WordLevel: piece -> id
            ids += [i for i in vocab.values() if isinstance(i, int)]
        elif isinstance(vocab, list):  # Unigram: [piece, score] in id order
            ids.append(len(vocab) - 1)
        for token in spec.get("added_tokens") or []:
            if isinstance(token, dict) and isinstance(token.get("id"), int):
                ids.append(token["id"])
    elif (path / "vocab.txt").is_file():
        with (path / "vocab.txt").open(encoding="utf-8", errors="replace") as handle:
            ids.append(sum(1 for _ in handle) - 1)
    else:
        return None
    tokenizer_config = path / "tokenizer_config.json"
    if tokenizer_config.is_file():
        settings = _json_file(tokenizer_config)
        added = settings.get("added_tokens_decoder") if isinstance(settings, dict) else None
        ids += [int(i) for i in added or {} if str(i).isdigit()]  # {"id": {token}}
    return max(ids, default=None)


def _safetensors_shapes(file: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors file's header, after checking that the file holds
    every byte the header describes (a file cut short fails here, not deep inside the loader)."""
    size = file.stat().st_size
    with file.open("rb") as handle:
        prefix = handle.read(8)
        length = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < length <= size - 8:
            raise BadInput(f"{file} is not a whole safetensors file: its header is cut short or missing")
        try:
            header = json.loads(handle.read(length))
            tensors = {name: t for name, t in header.items() if name != "__metadata__"}
            end = max((int(t["data_offsets"][1]) for t in tensors.values()), default=0)
            shapes = {name: [int(n) for n in t["shape"]] for name, t in tensors.items()}
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
            raise BadInput(f"{file} is not a valid safetensors file: its header does not parse") from err
    held = size - 8 - length
    if held < end:
        raise BadInput(f"{file} is truncated: it holds {held} bytes of tensors, its header describes {end}")
    if held > end:
        raise BadInput(f"{file} is not a valid safetensors file: {held - end} bytes follow its last tensor")
    return shapes


#: Folders inside a checkpoint that are not the checkpoint: download metadata, version control.
_NOT_CHECKPOINT = frozenset({".cache", ".git"})


def _content_digest(path: Path) -> str:
    """sha256 over the sorted (path relative to the checkpoint, sha256 of content) of its files.

    Only the checkpoint's own names count: the folder may live anywhere (the hub's cache under
    ~/.cache, a scratch folder), and the same files elsewhere give the same digest.
    """
    files = {
        file.relative_to(path).as_posix(): file
        for file in path.rglob("*")
        if file.is_file() and not _NOT_CHECKPOINT.intersection(file.relative_to(path).parts)
    }
    outer = hashlib.sha256()
    for name in sorted(files):
        outer.update(name.encode() + b"\0")
        outer.update(file_sha256(files[name]).encode() + b"\n")
    return outer.hexdigest()
