"""Sentences for the parity gate and the stand-in's vocabulary: the built-in sample, or a user's file."""

from __future__ import annotations

import csv
from importlib import resources
from pathlib import Path

from emotion_contract.errors import BadInput


def default_sample() -> list[str]:
    """The 40 Russian sentences written for this project (model_packager/data/parity_sample.txt)."""
    text = resources.files("model_packager").joinpath("data", "parity_sample.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def read_sentences(path: Path) -> list[str]:
    """Sentences from a CSV file with a `text` column, or a text file with one per line."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            if path.suffix.lower() == ".csv":
                reader = csv.DictReader(handle)
                if "text" not in (reader.fieldnames or []):
                    raise BadInput(f"{path} has no `text` column")
                sentences = [row["text"] for row in reader if row["text"].strip()]
            else:
                sentences = [
                    line.rstrip("\n") for line in handle if line.strip() and not line.startswith("#")
                ]
    except (OSError, UnicodeDecodeError) as err:
        raise BadInput(f"cannot read sentences from {path}: {err}") from err
    if not sentences:
        raise BadInput(f"{path} holds no sentences")
    return sentences
