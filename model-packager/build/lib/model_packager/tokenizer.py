"""The table that lets Triton's dependency-free tokenizer step match the `tokenizers` library exactly.

For every Unicode code point, ask the real library what its normalizer turns it into (dropped,
a space, padded with spaces, something else, or itself) and whether its pre-tokenizer splits there.
The answers, with the vocabulary and the special tokens, go to char_table.json, which
triton_models/wordpiece.py reads. No Unicode database is consulted at serving time, so the step
answers the same whatever Python the Triton image runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The pipeline this table can describe.
SUPPORTED = {"normalizer": "BertNormalizer", "pre_tokenizer": "BertPreTokenizer", "model": "WordPiece"}
_SURROGATES = range(0xD800, 0xE000)


class UnsupportedTokenizer(ValueError):
    """The tokenizer is not a BERT WordPiece tokenizer."""


def check_supported(spec: dict[str, Any]) -> None:
    for part, kind in SUPPORTED.items():
        found = (spec.get(part) or {}).get("type")
        if found != kind:
            raise UnsupportedTokenizer(f"its {part.replace('_', '-')} is {found or 'missing'}, not {kind}")


def char_table(tokenizer_json: Path) -> dict[str, Any]:
    """Describe the tokenizer at `tokenizer_json` for triton_models/wordpiece.py."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    check_supported(spec)
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    normalizer, pre_tokenizer = tokenizer.normalizer, tokenizer.pre_tokenizer
    classes: dict[str, list[int]] = {"drop": [], "space": [], "pad": [], "punct": []}
    mapping: dict[str, str] = {}
    for code in range(0x110000):
        if code in _SURROGATES:
            continue
        char = chr(code)
        out = normalizer.normalize_str(char)
        if out == "":
            classes["drop"].append(code)
        elif out == " " and char != " ":
            classes["space"].append(code)
        elif out == f" {char} ":
            classes["pad"].append(code)
        elif out != char:
            mapping[char] = out
        if len(pre_tokenizer.pre_tokenize_str(f"a{char}b")) == 3:
            classes["punct"].append(code)

    model = spec["model"]
    cls_id, sep_id = [*tokenizer.encode("").ids, None, None][:2]
    if cls_id is None or sep_id is None:
        raise UnsupportedTokenizer("it does not add [CLS] and [SEP] around a text")
    vocab = model["vocab"]
    return {
        "vocab": vocab,
        "unk_token": model.get("unk_token", "[UNK]"),
        "continuing_subword_prefix": model.get("continuing_subword_prefix", "##"),
        "max_input_chars_per_word": int(model.get("max_input_chars_per_word", 100)),
        "cls_id": cls_id,
        "sep_id": sep_id,
        "pad_id": vocab.get("[PAD]", 0),
        "added_tokens": {t["content"]: t["id"] for t in spec.get("added_tokens") or []},
        **{name: _ranges(codes) for name, codes in classes.items()},
        "map": mapping,
    }


def _ranges(codes: list[int]) -> list[list[int]]:
    ranges: list[list[int]] = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return ranges
