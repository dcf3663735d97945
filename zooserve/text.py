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

from zooserve.wordpiece import WordPieceTokenizer


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


# -- subword tokenizers (WordPiece) for the text classifiers -----------------------------------------------

INPUT_IDS, ATTENTION_MASK = "input_ids", "attention_mask"  # the graph inputs a subword classifier's card names
PREFIX_CHARS_PER_TOKEN = 16  # a long text is first encoded from its first max_length * 16 characters


class SubwordTokenizer:
    """A Hugging Face `tokenizers` file (tokenizer.json) used exactly as training encoded with it, read by
    `zooserve.wordpiece` (pure Python: the serving install has no `tokenizers`): normaliser, pre-tokenizer,
    WordPiece model and the `[CLS] $A [SEP]` template all come from the file, and texts are truncated to the
    card's `max_length` (special tokens included, from the right, as `training/text_tokenizer.py` sets it).
    Rows come back unpadded: the batcher pads each formed batch to its longest row, with `pad_values`."""

    def __init__(self, blob: bytes, *, max_length: int | None, special_tokens: dict[str, str], vocab_size: int):
        tok = WordPieceTokenizer.from_json(blob)  # a ValueError names what it cannot read
        if tok.vocab_size != vocab_size:
            raise ValueError(f"it has {tok.vocab_size} tokens, the card says vocab_size {vocab_size}")
        trunc = tok.truncation
        if trunc is not None and max_length is not None and trunc.max_length != max_length:
            raise ValueError(f"it truncates to {trunc.max_length} tokens, the card says max_length {max_length}")
        if max_length is not None:
            tok = tok.truncated(max_length)
        self.tok, self.max_length = tok, max_length
        self.pad_id = self._id(special_tokens, "pad")
        probe = tok.encode("a")
        for role, pos in (("cls", 0), ("sep", -1)):  # the card promises [CLS] ... [SEP]: check the file does it
            if role in special_tokens and probe[pos] != self._id(special_tokens, role):
                raise ValueError(f"it does not put {special_tokens[role]} at position {pos} of every text, as the "
                                 f"card's special tokens say")
        self.specials = tok.num_special_tokens  # tokens the template adds to every text

    def _id(self, special_tokens: dict[str, str], role: str) -> int:
        token = special_tokens.get(role)
        i = None if token is None else self.tok.token_to_id(token)
        if i is None:
            raise ValueError(f"special token {role} ({token!r}) is not in its vocabulary")
        return i

    @property
    def pad_values(self) -> dict[str, int]:
        """What the batcher fills shorter rows with: padding ids, and 0 = "not a token" in the mask."""
        return {INPUT_IDS: self.pad_id, ATTENTION_MASK: 0}

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Each text -> its ids (T_i,) int64, specials included, T_i <= max_length; no padding.

        Truncation keeps the first max_length tokens, so a long text is encoded from a prefix that ends at
        a whitespace (a word boundary: words before it tokenise as in the whole text) and still yields
        max_length tokens; the prefix doubles until it does. The ids are those of the whole text (see the
        test), and a 100,000-character text costs what its first few thousand characters do."""
        long = np.inf if self.max_length is None else self.max_length * PREFIX_CHARS_PER_TOKEN
        return [self._ids_of_long(t) if len(t) > long else self._ids(t) for t in texts]

    def _ids(self, text: str) -> np.ndarray:
        return np.asarray(self.tok.encode(text), dtype=np.int64)

    def _ids_of_long(self, text: str) -> np.ndarray:
        size = self.max_length * PREFIX_CHARS_PER_TOKEN
        while size < len(text):
            cut = max(text.rfind(" ", 0, size), text.rfind("\n", 0, size))
            if cut > size // 2:  # a word boundary in the second half of the prefix
                ids = self._ids(text[:cut])
                if len(ids) >= self.max_length:
                    return ids
            size *= 2
        return self._ids(text)
