"""A local stand-in for the default model, for machines that cannot reach the HuggingFace hub.

It has the default model's shape (seara/rubert-tiny2-cedr-russian-emotion: BERT, 3 layers, hidden
312, 12 heads, intermediate 600, 2048 positions, type vocab 2, vocabulary 83,828, 6 labels,
multi-label) with random weights and a WordPiece tokenizer trained on a corpus. The shape, not the
weights, decides conversion time, size and latency; its predictions mean nothing. It says so in its
config (`stand_in: true`), in its name, and the packager copies that into every manifest it writes.

Decisive by construction: random weights alone put every probability near 0.5, where the last bit
of any arithmetic flips a decision (bf16 on one CPU, f32 on another), so agreement figures would be
the CPU's luck. A trained model's logits sit far from the boundary; the stand-in's head is biased so
that every logit of every input is at least `margin` from 0: the pooler's tanh bounds each feature
to [-1, 1], so |w·x| <= sum|w|, and a bias of ±(margin + sum|w|) keeps the sign whatever the input.
Its decisions are the same for every sentence (alternately on and off per label); margin 0 keeps the
undecided random head, where reduced precisions legitimately fail the gate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from emotion_contract.errors import BadInput

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
#: Distance of every logit from the decision boundary (a trained classifier's logits are several units out).
DEFAULT_MARGIN = 3.0


def build_stand_in(
    *, output: Path, sentences: Iterable[str], seed: int = 0, margin: float = DEFAULT_MARGIN
) -> Path:
    """Write a stand-in checkpoint (config, safetensors weights, fast tokenizer) to `output`."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    texts = [s for s in sentences if s.strip()]
    if not texts:
        raise BadInput("the stand-in needs at least one sentence to train its tokenizer on")
    if output.exists() and any(output.iterdir()):
        raise BadInput(f"{output} is not empty; the stand-in is written to a new folder")
    if not 0 <= margin <= 50:  # sigmoid saturates long before 50
        raise BadInput(f"margin must be between 0 and 50, not {margin:g}")

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
    config.stand_in_margin = margin
    config.name_or_path = STAND_IN_ID
    model = BertForSequenceClassification(config).eval()
    _decide(model.classifier, margin)
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    (output / "STAND_IN.json").write_text(
        json.dumps(
            {"stand_in_for": DEFAULT_MODEL, "id": STAND_IN_ID, "seed": seed, "margin": margin}, indent=2
        )
        + "\n"
    )
    return output


def _decide(classifier: Any, margin: float) -> None:
    """Bias each label's logit to at least `margin` from 0 for any input (see the module's note)."""
    import torch

    if margin == 0:
        return
    with torch.no_grad():
        reach = classifier.weight.abs().sum(dim=1)  # the most |w·x| can be for x in [-1, 1]^n
        signs = torch.tensor([1.0 if i % 2 == 0 else -1.0 for i in range(len(reach))])
        classifier.bias.copy_(signs * (margin + reach))
