"""Prepared inputs: the corpus tokenized with the package's tokenizer, and the reference prediction of every
sentence computed offline with ONNX Runtime on the package's model.onnx.

The result is cached in `<output>/inputs/<key>.npz`, keyed by the manifest's sha256 and the corpus, so a
second run against the same package reads neither the tokenizer nor the ONNX file again. Worker processes
load the same file and build their requests from it (`requests_for`).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emotion_contract.errors import BadInput
from loadtest.corpus import Corpus
from loadtest.package import Package

TEXT_INPUT = "text"
OUTPUT = "probabilities"
CACHE_FORMAT = 2


@dataclass(frozen=True)
class Prepared:
    """Token ids per sentence (ragged, as one flat array plus offsets) and reference probabilities."""

    path: Path | None  # the cache file the workers load (None: kept in memory only)
    texts: tuple[str, ...]
    corpus_labels: tuple[str, ...]
    label_names: tuple[str, ...]
    ids: np.ndarray  # int64, every sentence's ids one after another
    type_ids: np.ndarray  # int64, same layout
    offsets: np.ndarray  # int64 [n + 1]
    reference: np.ndarray  # float32 [n, labels]
    pad_id: int
    token_inputs: tuple[str, ...]  # what the token model takes (a subset of TOKEN_INPUTS)

    def __len__(self) -> int:
        return len(self.texts)

    def sentence(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        start, end = self.offsets[index], self.offsets[index + 1]
        return self.ids[start:end], self.type_ids[start:end]

    @property
    def reference_top(self) -> np.ndarray:
        return self.reference.argmax(axis=1)


@dataclass(frozen=True)
class RequestData:
    """One prebuilt request: the sentences it carries, its input tensors, and the expected answer."""

    sentences: tuple[int, ...]
    inputs: dict[str, np.ndarray]
    reference: np.ndarray  # [batch, labels]
    reference_top: np.ndarray  # [batch]


def cache_key(package: Package, corpus: Corpus) -> str:
    digests = f"{package.manifest_sha256[:12]}-{corpus.sha256[:12]}"
    return f"{package.name}-v{package.version}-{digests}-f{CACHE_FORMAT}"


def prepare_inputs(*, package: Package, corpus: Corpus, cache_dir: Path | None) -> Prepared:
    """Tokenize the corpus and compute the reference, or load both from `cache_dir`."""
    key = cache_key(package, corpus)
    if cache_dir is not None:
        path = cache_dir / f"{key}.npz"
        if path.is_file():
            return load_prepared(path)
    tokenizer_json = package.read_verified(package.tokenizer_key)
    onnx_bytes = package.read_verified(package.onnx_key)
    ids, type_ids, offsets, pad_id = _tokenize(tokenizer_json, corpus.texts, package.max_length, package)
    reference = _reference(onnx_bytes, package, ids=ids, type_ids=type_ids, offsets=offsets)
    arrays = {
        "ids": ids,
        "type_ids": type_ids,
        "offsets": offsets,
        "reference": reference,
        "texts": np.array(corpus.texts, dtype=np.str_),
        "corpus_labels": np.array(corpus.labels, dtype=np.str_),
        "meta": np.array(
            json.dumps(
                {
                    "format": CACHE_FORMAT,
                    "labels": list(package.labels),
                    "pad_id": pad_id,
                    "token_inputs": list(package.token_inputs),
                }
            )
        ),
    }
    if cache_dir is None:
        return _prepared(None, arrays)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"{key}.npz"
    _save_atomically(path, arrays)
    return load_prepared(path)


def load_prepared(path: Path) -> Prepared:
    with np.load(path, allow_pickle=False) as data:
        return _prepared(path, {name: data[name] for name in data.files})


def _prepared(path: Path | None, arrays: dict[str, np.ndarray]) -> Prepared:
    meta = json.loads(str(arrays["meta"]))
    if meta.get("format") != CACHE_FORMAT:
        raise BadInput(f"{path}: prepared inputs of another format; delete the file to rebuild it")
    return Prepared(
        path=path,
        texts=tuple(str(t) for t in arrays["texts"]),
        corpus_labels=tuple(str(t) for t in arrays["corpus_labels"]),
        label_names=tuple(meta["labels"]),
        ids=arrays["ids"],
        type_ids=arrays["type_ids"],
        offsets=arrays["offsets"],
        reference=arrays["reference"],
        pad_id=int(meta["pad_id"]),
        token_inputs=tuple(meta["token_inputs"]),
    )


def requests_for(prepared: Prepared, *, batch_size: int, text: bool) -> list[RequestData]:
    """One request per corpus sentence: request i carries sentences i*b .. i*b+b-1 (wrapping around).

    Token requests are padded to their longest sentence (attention mask 0 on the padding).
    """
    n = len(prepared)
    top = prepared.reference_top
    requests = []
    for i in range(n):
        members = tuple((i * batch_size + j) % n for j in range(batch_size))
        if text:
            inputs = {TEXT_INPUT: np.array([prepared.texts[m].encode() for m in members], dtype=np.object_)}
        else:
            padded = _padded([prepared.sentence(m) for m in members], prepared.pad_id)
            inputs = {name: padded[name] for name in prepared.token_inputs}
        requests.append(
            RequestData(
                sentences=members,
                inputs=inputs,
                reference=prepared.reference[list(members)],
                reference_top=top[list(members)],
            )
        )
    return requests


def _padded(sentences: list[tuple[np.ndarray, np.ndarray]], pad_id: int) -> dict[str, np.ndarray]:
    width = max(len(ids) for ids, _ in sentences)
    ids = np.full((len(sentences), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(sentences), width), dtype=np.int64)
    types = np.zeros((len(sentences), width), dtype=np.int64)
    for row, (sentence_ids, sentence_types) in enumerate(sentences):
        ids[row, : len(sentence_ids)] = sentence_ids
        mask[row, : len(sentence_ids)] = 1
        types[row, : len(sentence_types)] = sentence_types
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def _tokenize(
    tokenizer_json: bytes, texts: tuple[str, ...], max_length: int, package: Package
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_str(tokenizer_json.decode())
    except Exception as err:  # the tokenizers library raises a bare Exception for a malformed file
        raise BadInput(
            f"package {package.store.location}: {package.tokenizer_key} is not a tokenizer: {err}"
        ) from None
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    encodings = tokenizer.encode_batch(list(texts))
    lengths = np.array([len(e.ids) for e in encodings], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in encodings])
    type_ids = np.concatenate([np.asarray(e.type_ids, dtype=np.int64) for e in encodings])
    pad_id = tokenizer.token_to_id("[PAD]")
    return ids, type_ids, offsets, 0 if pad_id is None else pad_id


def _reference(
    onnx_bytes: bytes, package: Package, *, ids: np.ndarray, type_ids: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """Each sentence on its own (batch 1, no padding), as the servers would see it alone."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = min(4, os.cpu_count() or 1)
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types, all Exceptions
        raise BadInput(f"package {package.store.location}: {package.onnx_key} does not load: {err}") from None
    wanted = {i.name for i in session.get_inputs()}
    if OUTPUT not in {o.name for o in session.get_outputs()} or "input_ids" not in wanted:
        raise BadInput(f"package {package.store.location}: {package.onnx_key} lacks input_ids or {OUTPUT}")
    rows = []
    for start, end in itertools.pairwise(offsets):
        sentence = ids[start:end][None, :]
        feed = {
            "input_ids": sentence,
            "attention_mask": np.ones_like(sentence),
            "token_type_ids": type_ids[start:end][None, :],
        }
        (probabilities,) = session.run([OUTPUT], {k: v for k, v in feed.items() if k in wanted})
        rows.append(np.asarray(probabilities, dtype=np.float32).reshape(-1))
    reference = np.stack(rows)
    if reference.shape[1] != len(package.labels):
        raise BadInput(
            f"package {package.store.location}: {package.onnx_key} answers {reference.shape[1]} "
            f"probabilities, the manifest names {len(package.labels)} labels"
        )
    return reference


def _save_atomically(path: Path, arrays: dict[str, np.ndarray]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
