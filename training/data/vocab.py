"""Token vocabularies for the language models, saved as `vocab.json` beside each model.

The JSON says everything the service needs to tokenise without `training/`: the tokens in id order, the
special tokens, whether to lowercase, and (for words) the regular expression that splits text.

    char: the sorted characters of the training split, then `<unk>` (plus `<s>`, `</s>` for n-grams,
          where `</s>` stands for the end of a paragraph, i.e. the "\n" the neural models predict)
    word: `<unk>`, `<s>`, `</s>`, then words and punctuation seen at least `min_count` times, most
          frequent first (ties alphabetical)
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Literal

import numpy as np

from training.data.corpus import WORD_PATTERN

UNK, BOS, EOS = "<unk>", "<s>", "</s>"
VOCAB_FILE = "vocab.json"


@dataclass(frozen=True)
class Vocab:
    kind: Literal["char", "word"]
    tokens: tuple[str, ...]
    unk: str = UNK
    bos: str | None = None  # only for models that see sentence boundaries (n-grams)
    eos: str | None = None
    eos_text: str | None = None  # how `eos` reads in text ("\n" for paragraphs)
    lowercase: bool = False
    pattern: str | None = None  # word splitting regex (Python `re` syntax)

    def __post_init__(self):
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("vocabulary tokens must be unique")
        for special in (self.unk, self.bos, self.eos):
            if special is not None and special not in self.tokens:
                raise ValueError(f"special token {special!r} is missing from the vocabulary")

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def index(self) -> dict[str, int]:
        return {t: i for i, t in enumerate(self.tokens)}

    def id(self, token: str | None) -> int:
        return -1 if token is None else self.index[token]

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Ids (int64) of `tokens` (chars or words); anything unseen becomes `<unk>`."""
        idx, unk = self.index, self.index[self.unk]
        return np.fromiter((idx.get(t, unk) for t in tokens), dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = asdict(self)
        doc["tokens"] = list(self.tokens)
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**{**doc, "tokens": tuple(doc["tokens"])})


def char_vocab(train_text: str, *, boundaries: bool = False) -> Vocab:
    """Sorted characters of the training text. With `boundaries`, "\n" becomes `</s>` and `<s>` is added."""
    chars = sorted(set(train_text) - ({"\n"} if boundaries else set()))
    if boundaries:
        return Vocab("char", tuple(chars) + (UNK, BOS, EOS), bos=BOS, eos=EOS, eos_text="\n")
    return Vocab("char", tuple(chars) + (UNK,))


def word_vocab(sentences: Iterable[list[str]], *, min_count: int = 1) -> Vocab:
    if min_count < 1:
        raise ValueError(f"min_count must be >= 1, got {min_count}")
    counts = Counter(tok for sent in sentences for tok in sent)
    words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
    return Vocab("word", (UNK, BOS, EOS, *words), bos=BOS, eos=EOS, eos_text="\n", lowercase=True,
                 pattern=WORD_PATTERN)
