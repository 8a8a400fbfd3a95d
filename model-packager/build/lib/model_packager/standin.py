"""A local stand-in for the default model, for machines that cannot reach the HuggingFace hub.

It has the default model's shape (seara/rubert-tiny2-cedr-russian-emotion: BERT, 3 layers, hidden
312, 12 heads, intermediate 600, 2048 positions, type vocab 2, vocabulary 83,828, 6 labels,
multi-label) with random weights and a WordPiece tokenizer trained on a corpus. The shape, not the
weights, decides conversion time, size and latency; its predictions mean nothing. It says so in its
config (`stand_in: true`), in its name, and the packager copies that into every manifest it writes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from model_packager.errors import BadInput

#: The default model, its labels (in order) and its shape.
DEFAULT_MODEL = "seara/rubert-tiny2-cedr-russian-emotion"
DEFAULT_LABELS = ("no_emotion", "joy", "sadness", "surprise", "fear", "anger")
SHAPE = {
    "num_hidden_layers": 3,
    "hidden_size": 312,
    "num_attention_heads": 12,
    "intermediate_size": 600,
    "max_position_embeddings": 2048,
    "type_vocab_size": 2,
    "vocab_size": 83828,
}
STAND_IN_ID = "emotion-serving/stand-in-rubert-tiny2-shape"
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def build_stand_in(*, output: Path, sentences: Iterable[str], seed: int = 0) -> Path:
    """Write a stand-in checkpoint (config, safetensors weights, fast tokenizer) to `output`."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    texts = [s for s in sentences if s.strip()]
    if not texts:
        raise BadInput("the stand-in needs at least one sentence to train its tokenizer on")
    if output.exists() and any(output.iterdir()):
        raise BadInput(f"{output} is not empty; the stand-in is written to a new folder")

    trained = Tokenizer(models.WordPiece(unk_token="[UNK]"))  # noqa: S106 (a token, not a password)
    # rubert-tiny2 is cased: BERT normalisation without lowercasing or accent stripping.
    trained.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    trained.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=SHAPE["vocab_size"], special_tokens=list(SPECIAL_TOKENS))
    trained.train_from_iterator(texts, trainer=trainer)
    vocab = sorted(trained.get_vocab().items(), key=lambda item: item[1])
    # A corpus of a few thousand sentences yields far fewer pieces than the real vocabulary: fill the
    # rest with unused pieces so that the embedding matrix has the real model's size.
    pieces = [piece for piece, _ in vocab]
    pieces += [f"[unused{i}]" for i in range(SHAPE["vocab_size"] - len(pieces))]
    tokenizer = BertTokenizer(
        vocab={piece: i for i, piece in enumerate(pieces)},
        do_lower_case=False,
        strip_accents=False,
        model_max_length=SHAPE["max_position_embeddings"],
    )

    torch.manual_seed(seed)
    config = BertConfig(
        **SHAPE,
        num_labels=len(DEFAULT_LABELS),
        id2label=dict(enumerate(DEFAULT_LABELS)),
        label2id={label: i for i, label in enumerate(DEFAULT_LABELS)},
        problem_type="multi_label_classification",
        pad_token_id=tokenizer.pad_token_id,
    )
    config.stand_in = True
    config.stand_in_for = DEFAULT_MODEL
    config.name_or_path = STAND_IN_ID
    model = BertForSequenceClassification(config).eval()
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / "STAND_IN.json").write_text(
        json.dumps({"stand_in_for": DEFAULT_MODEL, "id": STAND_IN_ID, "seed": seed}, indent=2) + "\n"
    )
    return output
