"""Text as the language models see it, shared by `training/` (which builds models on it) and `service/`
(which tokenises requests the same way): paragraphs, sentences, word tokens, and the vocabulary file.

Kept here, free of torch, because the service must split and encode text exactly as training did: a
different rule would silently change every score.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Iterable, Literal

import numpy as np


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks, each with its wrapped lines joined by single spaces."""
    out = []
    for block in re.split(r"\n[ \t]*\n", text):
        para = " ".join(block.split())
        if para:
            out.append(para)
    return out


def char_stream(text: str) -> str:
    """What the neural char models read and generate: one paragraph per line."""
    return "".join(p + "\n" for p in paragraphs(text))


# Lowercased words (with inner apostrophes: "don't", "island's") and single punctuation characters.
WORD_PATTERN = r"[^\W_]+(?:['\u2019][^\W_]+)*|[^\w\s]|_"
SENTENCE_END = frozenset({".", "!", "?"})
CLOSERS = frozenset({'"', "'", "\u201d", "\u2019", ")"})


def word_tokens(text: str, pattern: str = WORD_PATTERN) -> list[str]:
    return re.findall(pattern, text.lower())


def sentences(text: str, pattern: str = WORD_PATTERN) -> list[list[str]]:
    """Token lists, one per sentence: a sentence ends after . ! or ? and any closing quotes that follow."""
    out: list[list[str]] = []
    for para in paragraphs(text):
        toks, current = word_tokens(para, pattern), []
        for i, tok in enumerate(toks):
            current.append(tok)
            ends = tok in SENTENCE_END or (tok in CLOSERS and current[-2:-1] and current[-2] in SENTENCE_END)
            if ends and not (i + 1 < len(toks) and toks[i + 1] in CLOSERS):
                out.append(current)
                current = []
        if current:
            out.append(current)
    return out


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

    def segments(self, text: str) -> list[np.ndarray]:
        """Text as the models with boundaries read it: ids of each sentence (word) or paragraph (char), without
        `<s>`/`</s>`."""
        pieces = sentences(text, self.pattern or WORD_PATTERN) if self.kind == "word" else paragraphs(text)
        return [self.encode(p) for p in pieces]

    def stream(self, text: str) -> np.ndarray:
        """Text as the recurrent char models read it: the paragraphs, each followed by "\n"."""
        return self.encode(char_stream(text))

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = asdict(self)
        doc["tokens"] = list(self.tokens)
        path.write_text(json.dumps(doc, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, blob: bytes | str) -> "Vocab":
        doc = json.loads(blob)
        return cls(**{**doc, "tokens": tuple(doc["tokens"])})

    @classmethod
    def load(cls, path: Path) -> "Vocab":
        return cls.from_json(Path(path).read_bytes())
