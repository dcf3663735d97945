"""A WordPiece subword tokenizer, trained with Hugging Face `tokenizers` and saved as one `tokenizer.json`.

The file holds everything encoding needs (lowercasing normaliser, pre-tokenizer, vocabulary, the
`[CLS] ... [SEP]` template, truncation and padding), so the service reads it (`zooserve/wordpiece.py`, pure
Python: the serving install has no `tokenizers`) and gets the same ids as training, with no torch.
It is trained on the training split only, so validation and test words are not in its vocabulary by design.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TokenizerConfig:
    vocab_size: int = 8000
    max_length: int = 64  # tokens, [CLS] and [SEP] included
    min_frequency: int = 2

    @property
    def truncation(self) -> str:
        return f"keep the first {self.max_length - 2} subword tokens, then add [CLS] before and [SEP] after"


def train(texts: list[str], cfg: TokenizerConfig) -> Tokenizer:
    """A lowercasing WordPiece tokenizer fitted on `texts` (the training split)."""
    tok = Tokenizer(models.WordPiece(unk_token=SPECIAL_TOKENS["unk"]))
    # BERT's normaliser: clean control characters, split CJK, strip accents, lowercase.
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=cfg.vocab_size, min_frequency=cfg.min_frequency,
                                        special_tokens=list(SPECIAL_TOKENS.values()))
    tok.train_from_iterator(texts, trainer)
    cls, sep = SPECIAL_TOKENS["cls"], SPECIAL_TOKENS["sep"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}", special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
    tok.enable_truncation(max_length=cfg.max_length)
    # Pad each batch to its longest text; the attention mask marks the padding.
    pad = SPECIAL_TOKENS["pad"]
    tok.enable_padding(pad_id=tok.token_to_id(pad), pad_token=pad)
    return tok


def load(path: Path) -> Tokenizer:
    return Tokenizer.from_file(str(path))


def encode(tok: Tokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """texts -> (input_ids (N, T) int64, attention_mask (N, T) int64), T = the longest encoding."""
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)  # (N, T)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)  # (N, T), 1 = real token
    return ids, mask


def preprocess_card(tok: Tokenizer, cfg: TokenizerConfig) -> dict:
    """The card's `preprocess` section: how the service must turn text into the graph's inputs."""
    return {"kind": "text", "tokenizer": "wordpiece", "tokenizer_file": TOKENIZER_FILE,
            "vocab_size": tok.get_vocab_size(), "max_length": cfg.max_length, "truncation": cfg.truncation,
            "lowercase": True, "special_tokens": dict(SPECIAL_TOKENS)}
