"""Triton's dependency-free tokenizer step gives the HuggingFace tokenizer's ids, exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

from model_packager.tokenizer import UnsupportedTokenizer, char_table, check_supported
from model_packager.triton_models.wordpiece import WordPiece

MAX_LENGTH = 128
EDGE_CASES = [
    "",
    " ",
    "   \t\n  ",
    "😀🥰🫠 эмодзи в конце 🎉",
    "Привет, world! Mixed кириллица and Latin, ÀÉÎõü, naïve café.",
    "ё Ё й Й ъ ь — «ёлки-палки»…",
    "[CLS] литерал [SEP] и [UNK] [PAD] внутри текста",
    "табуляция\tи\nперевод\r\nстроки\x0bи\x0cформа\x85NEL\u2028LS",
    "нулевой\x00символ и \ufffd замена и \u200b нулевая ширина \u200d ZWJ",
    "中文字符 и 日本語 и 한국어",
    "а" * 5000,
    "слово " * 2000,
    "x" * 101 + " y",
    "12345 3.14 1,000,000 50% $5 #hashtag @user e-mail: a.b@c.d",
]


def _hf(tokenizer_json: Path) -> Tokenizer:
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.enable_truncation(MAX_LENGTH)
    return tokenizer


def _step(tokenizer_json: Path) -> WordPiece:
    return WordPiece(char_table(tokenizer_json), max_length=MAX_LENGTH)


def _assert_same(hf: Tokenizer, step: WordPiece, texts: list[str]) -> None:
    expected = [e.ids for e in hf.encode_batch(texts)]
    mismatches = [
        (t[:40], e[:12], step.encode(t)[:12])
        for t, e in zip(texts, expected, strict=True)
        if step.encode(t) != e
    ]
    assert not mismatches, f"{len(mismatches)} of {len(texts)} differ, e.g. {mismatches[:3]}"


@pytest.fixture(scope="module")
def stand_in_tokenizer(stand_in: Path) -> Path:
    return stand_in / "tokenizer.json"


def test_every_corpus_sentence_and_edge_case(stand_in_tokenizer: Path, corpus: list[str]) -> None:
    _assert_same(_hf(stand_in_tokenizer), _step(stand_in_tokenizer), corpus + EDGE_CASES)


def test_every_basic_plane_code_point_inside_words(stand_in_tokenizer: Path) -> None:
    # Each code point between letters, alone, and doubled: covers dropping, splitting and merging.
    texts = [f"аб{chr(c)}вг {chr(c)} {chr(c)}{chr(c)}" for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    _assert_same(_hf(stand_in_tokenizer), _step(stand_in_tokenizer), texts)


def test_truncation_keeps_cls_and_sep(stand_in_tokenizer: Path) -> None:
    step = _step(stand_in_tokenizer)
    ids = step.encode("слово " * 500)
    assert len(ids) == MAX_LENGTH
    assert (ids[0], ids[-1]) == (step.cls_id, step.sep_id)
    assert step.encode("") == [step.cls_id, step.sep_id]


def test_batch_is_padded_with_mask(stand_in_tokenizer: Path) -> None:
    step = _step(stand_in_tokenizer)
    ids, mask, types = step.encode_batch(["один", "два слова тут"])
    assert len(ids[0]) == len(ids[1]) == len(step.encode("два слова тут"))
    assert mask[0].count(1) == len(step.encode("один"))
    assert ids[0][mask[0].count(1) :] == [step.pad_id] * mask[0].count(0)
    assert types == [[0] * len(ids[0])] * 2


def test_a_lowercasing_accent_stripping_tokenizer_matches_too(tmp_path: Path, corpus: list[str]) -> None:
    """An uncased BERT tokenizer (lowercase, strip accents): the table covers what the flags change."""
    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=None)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer.train_from_iterator(
        corpus[:2000], trainers.WordPieceTrainer(vocab_size=3000, special_tokens=special)
    )
    tokenizer.post_processor = processors.BertProcessing(
        ("[SEP]", tokenizer.token_to_id("[SEP]")), ("[CLS]", tokenizer.token_to_id("[CLS]"))
    )
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    texts = corpus[2000:3000] + EDGE_CASES + ["ÀÉÎÕÜ Ångström ŒUVRE ǅ ǈ ß ẞ İstanbul ΣΊΣΥΦΟΣ"]
    _assert_same(_hf(path), _step(path), texts)


def test_other_tokenizers_are_refused_by_name(tmp_path: Path) -> None:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    spec = json.loads(tokenizer.to_str())
    with pytest.raises(UnsupportedTokenizer, match="its normalizer is missing, not BertNormalizer"):
        check_supported(spec)
