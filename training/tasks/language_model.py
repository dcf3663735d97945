"""Language modelling on a text corpus: the shared data preparation and figures for n-gram and neural LMs.

Both kinds read the same contiguous 90/5/5 split of the same text, so their figures compare honestly:
the char models are scored on every character of the test paragraphs plus one end-of-paragraph token
per paragraph (the "\n" a neural model predicts, the `</s>` an n-gram model predicts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.data import corpus as corpus_lib
from training.data.corpus import SPLITS
from training.data.vocab import Vocab, char_vocab, word_vocab


@dataclass
class TextData:
    unit: str  # "char" | "word"
    vocab: Vocab
    sequences: dict[str, list[np.ndarray]]  # split -> sentences (word) or paragraphs (char) as ids, no boundaries
    dataset: dict  # for the model card

    def stream(self, split: str) -> np.ndarray:
        """The split as one id stream with the end-of-line token after each sequence: what a neural LM reads."""
        eol = self.vocab.index["\n"] if "\n" in self.vocab.index else self.vocab.id(self.vocab.eos)
        return np.concatenate([np.append(s, eol) for s in self.sequences[split]]).astype(np.int64)


def prepare(corpus_path=None, *, unit: str = "char", boundaries: bool = False, min_count: int = 1,
            title_line: str = corpus_lib.TITLE_LINE, end_marker: str = corpus_lib.END_MARKER,
            limit_chars: int = 0) -> TextData:
    """Load and split the corpus and build the vocabulary on the training part.

    `boundaries` gives char vocabularies `<s>`/`</s>` (n-grams) instead of "\n"; word vocabularies always
    have them. `limit_chars` keeps only the start of each split (for --dry-run).
    """
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be char or word, got {unit!r}")
    corpus = corpus_lib.load(corpus_path, title_line=title_line, end_marker=end_marker)
    parts = corpus.split()
    if limit_chars:
        parts = {k: v[:limit_chars] for k, v in parts.items()}
    if unit == "char":
        texts = {k: corpus_lib.paragraphs(v) for k, v in parts.items()}
        vocab = char_vocab(corpus_lib.char_stream(parts["train"]), boundaries=boundaries)
    else:
        texts = {k: corpus_lib.sentences(v) for k, v in parts.items()}
        vocab = word_vocab(texts["train"], min_count=min_count)
    sequences = {k: [vocab.encode(t) for t in v] for k, v in texts.items()}
    for split in SPLITS:
        if not sequences[split]:
            raise ValueError(f"the {split} split of {corpus.source} is empty: the corpus is too small")
    dataset = {
        "name": corpus_lib.NAME if corpus.official else corpus.source.name,
        "sha256": {corpus.source.name: corpus.sha256},
        "official": corpus.official,
        "splits": {k: sum(len(s) + 1 for s in v) for k, v in sequences.items()},  # scored tokens incl. end of line
        "split_rule": "contiguous by character position: 90% train, 5% validation, 5% test",
    }
    return TextData(unit, vocab, sequences, dataset)


def metrics(split: str, tokens: int, nats: float) -> dict:
    """Card figures from a total negative log-likelihood `nats` over `tokens` scored tokens."""
    ce = nats / tokens
    return {"split": split, "examples": tokens, "cross_entropy": ce, "bits_per_token": ce / math.log(2),
            "perplexity": math.exp(ce)}


def text_preprocess(vocab: Vocab, *, context_length: int | None = None) -> dict:
    specials = {role: tok for role, tok in (("unk", vocab.unk), ("bos", vocab.bos), ("eos", vocab.eos)) if tok}
    return {"kind": "text", "tokenizer": vocab.kind, "vocab_file": "vocab.json", "vocab_size": len(vocab),
            "lowercase": vocab.lowercase, "pattern": vocab.pattern, "special_tokens": specials,
            "eos_text": vocab.eos_text, "context_length": context_length}

