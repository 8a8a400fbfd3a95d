"""Where the checkpoint comes from: a HuggingFace hub id (the real path) or a local folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model_packager.errors import BadInput, CredentialsRefused, Unavailable

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
        count = self.config.get("num_labels", len(id2label))
        return [str(id2label.get(str(i), id2label.get(i, f"LABEL_{i}"))) for i in range(count)]

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
    """Find the checkpoint `model` (a folder, else a hub id) and check that it is a sequence classifier."""
    local = Path(model)
    if local.is_dir():
        path, commit = local, None
    elif local.exists() or model.startswith((".", "/")):
        raise BadInput(f"{model} is not a folder holding a HuggingFace checkpoint")
    elif not _HUB_ID.match(model):
        raise BadInput(f"{model!r} is neither a local folder nor a HuggingFace hub id (owner/name)")
    else:
        path = _download(model, revision, cache_dir)
        commit = path.name  # snapshot folders are named after the commit
    config = _config(path, model)
    _check_classifier(config, model)
    return Source(
        id=model if commit else str(local),
        revision=revision if commit else None,
        commit=commit,
        path=path,
        content_sha256=_content_digest(path),
        config=config,
    )


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
        )
    except GatedRepoError as err:
        raise CredentialsRefused(f"the hub refused access to {repo_id} (gated: set HF_TOKEN)") from err
    except RepositoryNotFoundError as err:
        raise BadInput(f"unknown model {repo_id!r}: no such repository on the HuggingFace hub") from err
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
    try:
        return json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise BadInput(f"{config_path} is not valid JSON: {err}") from err


def _check_classifier(config: dict[str, Any], model: str) -> None:
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        found = ", ".join(architectures) or "none listed"
        raise BadInput(f"{model} is not a sequence classifier (architectures: {found})")
    if config.get("problem_type") == "regression":
        raise BadInput(f"{model} is a regression model, not a classifier (problem_type: regression)")


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


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
