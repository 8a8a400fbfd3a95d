"""A dependency-free BERT WordPiece tokenizer, for Triton's python backend.

The stock Triton image has numpy but neither `tokenizers` nor `transformers`, so this file uses the
standard library only. It reproduces what the `tokenizers` library does for a BERT tokenizer:

1. added (special) tokens are split out of the raw text first, e.g. a literal "[SEP]";
2. normalization, character by character (BertNormalizer: drop controls, map whitespace to a space,
   pad CJK ideographs with spaces, strip accents and lowercase where configured);
3. pre-tokenization: split on whitespace, isolate punctuation (BertPreTokenizer);
4. WordPiece: greedy longest-match-first with the "##" prefix; a word longer than
   `max_input_chars_per_word`, or one that cannot be covered, becomes the unknown token;
5. [CLS] tokens [SEP], truncated to `max_length` including the two special tokens.

Steps 2 and 3 depend on Unicode tables, and `tokenizers` ships older ones than Python's
`unicodedata` (which itself changes with the Python version of the Triton image). So this file uses
no Unicode database at all: the packager asks the real `tokenizers` library how it treats every code
point and writes the answer next to this file (char_table.json; model_packager/tokenizer.py).
Parity with `tokenizers` is tested on every code point and on the shared corpus
(model-packager/tests/test_tokenizer.py).
"""

from __future__ import annotations

import bisect
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: Rust's char::is_whitespace (the Unicode White_Space property), used by the pre-tokenizer.
WHITESPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


class _Ranges:
    """Membership in a sorted list of inclusive code point ranges."""

    def __init__(self, ranges: Sequence[Sequence[int]]) -> None:
        self._starts = [r[0] for r in ranges]
        self._ends = [r[1] for r in ranges]

    def __contains__(self, char: str) -> bool:
        code = ord(char)
        i = bisect.bisect_right(self._starts, code) - 1
        return i >= 0 and code <= self._ends[i]


class WordPiece:
    """Encode text as the `tokenizers` library does for the tokenizer the table was made from."""

    def __init__(self, table: dict[str, Any], *, max_length: int) -> None:
        self.vocab: dict[str, int] = table["vocab"]
        self.unk_id: int = self.vocab[table["unk_token"]]
        self.prefix: str = table["continuing_subword_prefix"]
        self.max_chars: int = table["max_input_chars_per_word"]
        self.cls_id: int = table["cls_id"]
        self.sep_id: int = table["sep_id"]
        self.pad_id: int = table["pad_id"]
        self.max_length = max_length
        self._drop = _Ranges(table["drop"])
        self._space = _Ranges(table["space"])
        self._pad = _Ranges(table["pad"])
        self._punct = _Ranges(table["punct"])
        self._map: dict[str, str] = table["map"]
        self._added_ids: dict[str, int] = table["added_tokens"]
        added = sorted(self._added_ids, key=len, reverse=True)
        self._added = re.compile("|".join(re.escape(t) for t in added)) if added else None

    @classmethod
    def from_file(cls, path: str | Path, *, max_length: int) -> WordPiece:
        return cls(json.loads(Path(path).read_text(encoding="utf-8")), max_length=max_length)

    def normalize(self, text: str) -> str:
        out = []
        for char in text:
            if char in self._map:
                out.append(self._map[char])
            elif char in self._drop:
                continue
            elif char in self._space:
                out.append(" ")
            elif char in self._pad:
                out.append(f" {char} ")
            else:
                out.append(char)
        return "".join(out)

    def pre_tokenize(self, text: str) -> list[str]:
        words: list[str] = []
        current: list[str] = []
        for char in text:
            split = char in WHITESPACE
            if split or char in self._punct:
                if current:
                    words.append("".join(current))
                    current = []
                if not split:
                    words.append(char)
            else:
                current.append(char)
        if current:
            words.append("".join(current))
        return words

    def word_ids(self, word: str) -> list[int]:
        if len(word) > self.max_chars:
            return [self.unk_id]
        ids: list[int] = []
        start = 0
        while start < len(word):
            end = len(word)
            while start < end:
                piece = word[start:end] if start == 0 else self.prefix + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            else:
                return [self.unk_id]
            start = end
        return ids

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, with [CLS] and [SEP], truncated to max_length."""
        ids: list[int] = []
        for part, added in self._split_added(text):
            if added:
                ids.append(self._added_ids[part])
            else:
                for word in self.pre_tokenize(self.normalize(part)):
                    ids.extend(self.word_ids(word))
        return [self.cls_id, *ids[: max(self.max_length - 2, 0)], self.sep_id]

    def _split_added(self, text: str) -> list[tuple[str, bool]]:
        if self._added is None:
            return [(text, False)]
        parts: list[tuple[str, bool]] = []
        position = 0
        for match in self._added.finditer(text):
            if match.start() > position:
                parts.append((text[position : match.start()], False))
            parts.append((match.group(), True))
            position = match.end()
        if position < len(text):
            parts.append((text[position:], False))
        return parts

    def encode_batch(self, texts: Sequence[str]) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
        """input_ids, attention_mask and token_type_ids, padded to the longest text of the batch."""
        encoded = [self.encode(t) for t in texts]
        width = max((len(e) for e in encoded), default=0)
        ids = [e + [self.pad_id] * (width - len(e)) for e in encoded]
        mask = [[1] * len(e) + [0] * (width - len(e)) for e in encoded]
        types = [[0] * width for _ in encoded]
        return ids, mask, types
