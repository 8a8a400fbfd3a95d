"""A checkpoint's identity is its own files, wherever the folder lives (the hub cache once hashed empty)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from model_packager.build import BuildOptions
from model_packager.manifest import fingerprint, library_versions
from model_packager.source import resolve

EMPTY = hashlib.sha256(b"").hexdigest()


def build_id(folder: Path) -> str:
    return fingerprint(
        source=resolve(model=str(folder)).describe(),
        options=BuildOptions().as_dict(),
        libraries=library_versions(),
    )


def test_a_checkpoint_under_a_cache_folder_is_hashed(stand_in: Path, tmp_path: Path) -> None:
    cached = shutil.copytree(stand_in, tmp_path / ".cache" / "huggingface" / "ckpt")
    assert resolve(model=str(cached)).content_sha256 not in (EMPTY, "")
    assert resolve(model=str(cached)).content_sha256 == resolve(model=str(stand_in)).content_sha256


def test_the_same_content_at_another_path_is_the_same_build(stand_in: Path, tmp_path: Path) -> None:
    elsewhere = shutil.copytree(stand_in, tmp_path / "elsewhere" / "model")
    assert build_id(elsewhere) == build_id(stand_in)


def test_a_changed_checkpoint_at_the_same_path_is_a_new_build(stand_in: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(stand_in, tmp_path / "model")
    before = build_id(folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"]["0"] = "neutral"  # a retrained model: new labels, same folder
    (folder / "config.json").write_text(json.dumps(config))
    assert build_id(folder) != before


def test_download_metadata_inside_the_folder_is_not_content(stand_in: Path, tmp_path: Path) -> None:
    """huggingface_hub's local_dir downloads keep metadata in .cache/ inside the folder; git keeps .git/."""
    folder = shutil.copytree(stand_in, tmp_path / "model")
    for meta in (".cache/huggingface/download/config.json.metadata", ".git/HEAD"):
        (folder / meta).parent.mkdir(parents=True, exist_ok=True)
        (folder / meta).write_text("changes with every download\n")
    assert build_id(folder) == build_id(stand_in)
