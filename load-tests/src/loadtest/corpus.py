"""Sentences to send: the packaged Russian corpus, or the user's own file (CSV with a `text` column, or text).

The default corpus (data/corpus_ru.csv) was written for this project: 216 sentences, 36 for each of the
default model's six labels, 30 to 190 characters long, labels interleaved so that any prefix covers all six.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from emotion_contract.errors import BadInput

DEFAULT_CORPUS = "corpus_ru.csv"


@dataclass(frozen=True)
class Corpus:
    """Sentences in file order, with their label where the file gives one (else "")."""

    source: str
    texts: tuple[str, ...]
    labels: tuple[str, ...]

    @property
    def sha256(self) -> str:
        digest = hashlib.sha256()
        for text in self.texts:
            digest.update(text.encode())
            digest.update(b"\0")
        return digest.hexdigest()

    def sample(self, count: int) -> Corpus:
        """The first `count` sentences (the default corpus interleaves its labels)."""
        return Corpus(self.source, self.texts[:count], self.labels[:count])


def load_corpus(path: Path | None = None) -> Corpus:
    """The default corpus, or `path`: `.csv` (`text` column, optional `label`) or text, one per line."""
    if path is None:
        data = resources.files("loadtest").joinpath("data", DEFAULT_CORPUS).read_text(encoding="utf-8")
        return _from_csv(data, source=f"default ({DEFAULT_CORPUS})")
    try:
        data = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"corpus {path}: no such file") from None
    except UnicodeDecodeError as err:
        raise BadInput(f"corpus {path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise BadInput(f"corpus {path}: {err.strerror}") from None
    if path.suffix.lower() == ".csv":
        return _from_csv(data, source=str(path))
    texts = tuple(line.strip() for line in data.splitlines() if line.strip())
    return _checked(Corpus(str(path), texts, ("",) * len(texts)))


def _from_csv(data: str, *, source: str) -> Corpus:
    reader = csv.DictReader(io.StringIO(data))
    if not reader.fieldnames or "text" not in reader.fieldnames:
        raise BadInput(
            f"corpus {source}: a CSV corpus needs a `text` column (found: {reader.fieldnames or 'none'})"
        )
    texts, labels = [], []
    try:
        for row in reader:
            text = (row.get("text") or "").strip()
            if text:
                texts.append(text)
                labels.append((row.get("label") or "").strip())
    except csv.Error as err:
        raise BadInput(f"corpus {source}: line {reader.line_num}: {err}") from None
    return _checked(Corpus(source, tuple(texts), tuple(labels)))


def _checked(corpus: Corpus) -> Corpus:
    if not corpus.texts:
        raise BadInput(f"corpus {corpus.source}: no sentences")
    return corpus
