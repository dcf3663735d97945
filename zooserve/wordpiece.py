"""A reader of Hugging Face `tokenizers` files (tokenizer.json) of the BERT WordPiece kind, which encodes
exactly as `tokenizers` does, in pure Python: the serving install needs neither the Rust library nor the
hub clients that come with it.

    text ──> added tokens ([CLS], [SEP], [UNK], ...) found in the raw text, as they are: "a[SEP]b" holds one
     │       [SEP], "[sep]" does not (tokenizers matches them before normalising, leftmost-longest)
     ├─ the rest: BertNormalizer ─> BertPreTokenizer ─> WordPiece (greedy longest match, "##" continues a
     │            word, a word over max_input_chars_per_word or with no match is one [UNK])
     └──> truncation (max_length minus the template's tokens) ─> template ([CLS] $A [SEP]) ─> padding

What it reads is what `training/text_tokenizer.py` and `training/pretrained_bert.py` write. Anything else (a
BPE model, another normaliser or pre-tokenizer, added tokens matched after normalising, a template with other
than one $A, ...) is refused at load, with a ValueError naming the field; the service makes that the load
error of that model only. tests/test_wordpiece.py compares ids and masks with `tokenizers`.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from zooserve.bert_text import BertNormalizer, words

WORD_CACHE = 1 << 14  # normalised words -> ids, per tokenizer: a few MB; tweets repeat most of their words


def refuse(field: str, value, supported: str) -> ValueError:
    return ValueError(f"{field} is {value!r}: this reader supports {supported} only")


def _get(doc: dict, field: str, allowed: tuple, default=None):
    """doc[field] (a dotted path), refused unless it is one of `allowed`."""
    value = doc
    for key in field.split("."):
        value = value.get(key, default) if isinstance(value, dict) else default
    if value not in allowed:
        raise refuse(field, value, " or ".join(map(repr, allowed)))
    return value


@dataclass(frozen=True)
class Truncation:
    """tokenizers' TruncationParams for a single sequence: LongestFirst and OnlyFirst cut it alike."""
    max_length: int
    direction: str = "Right"  # Right keeps the first tokens, Left the last


@dataclass(frozen=True)
class Padding:
    """tokenizers' PaddingParams: to the batch's longest row (length None) or to a fixed length."""
    pad_id: int = 0
    length: int | None = None
    direction: str = "Right"
    multiple_of: int | None = None


def read_truncation(doc: dict) -> Truncation | None:
    t = doc.get("truncation")
    if t is None:
        return None
    _get(doc, "truncation.strategy", ("LongestFirst", "OnlyFirst"))
    _get(doc, "truncation.stride", (0,), 0)
    if not isinstance(t.get("max_length"), int) or t["max_length"] < 0:
        raise refuse("truncation.max_length", t.get("max_length"), "a whole number of tokens")
    return Truncation(t["max_length"], _get(doc, "truncation.direction", ("Right", "Left"), "Right"))


def read_padding(doc: dict) -> Padding | None:
    p = doc.get("padding")
    if p is None:
        return None
    strategy = p.get("strategy")
    if strategy != "BatchLongest" and not (isinstance(strategy, dict) and isinstance(strategy.get("Fixed"), int)):
        raise refuse("padding.strategy", strategy, "'BatchLongest' or {'Fixed': length}")
    return Padding(pad_id=p.get("pad_id", 0), length=None if strategy == "BatchLongest" else strategy["Fixed"],
                   direction=_get(doc, "padding.direction", ("Right", "Left"), "Right"),
                   multiple_of=p.get("pad_to_multiple_of"))


def read_template(doc: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The single-sequence template as (ids before $A, ids after $A); no post_processor adds nothing."""
    post = doc.get("post_processor")
    if post is None:
        return (), ()
    _get(doc, "post_processor.type", ("TemplateProcessing",))
    head, tail, seen = [], [], False
    for i, piece in enumerate(post.get("single", [])):
        if "Sequence" in piece and piece["Sequence"].get("id") == "A" and not seen:
            seen = True
        elif "SpecialToken" in piece:
            (tail if seen else head).extend(post["special_tokens"][piece["SpecialToken"]["id"]]["ids"])
        else:
            raise refuse(f"post_processor.single[{i}]", piece, "special tokens around one {'Sequence': {'id': 'A'}}")
    if not seen:
        raise refuse("post_processor.single", post.get("single"), "a template with $A")
    return tuple(head), tuple(tail)


def read_added_tokens(doc: dict) -> dict[str, int]:
    """{content: id} of the added tokens, each matched in the raw text as it is."""
    added = {}
    for i, token in enumerate(doc.get("added_tokens") or []):
        for flag in ("normalized", "single_word", "lstrip", "rstrip"):
            if token.get(flag, False):
                raise refuse(f"added_tokens[{i}].{flag}", True, "false (tokens matched in the raw text, as they are)")
        added[token["content"]] = token["id"]
    return added


class WordPieceTokenizer:
    """One tokenizer.json, read and checked: `encode` gives what tokenizers' `encode(text).ids` does,
    `encode_batch` what its `encode_batch` gives as (ids, attention_mask) arrays."""

    def __init__(self, doc: dict):
        model = doc.get("model") or {}
        _get(doc, "model.type", ("WordPiece",))
        _get(doc, "normalizer.type", ("BertNormalizer",))
        _get(doc, "pre_tokenizer.type", ("BertPreTokenizer",))
        n = doc["normalizer"]
        self.normalize = BertNormalizer(clean_text=n.get("clean_text", True),
                                        handle_chinese_chars=n.get("handle_chinese_chars", True),
                                        strip_accents=n.get("strip_accents"), lowercase=n.get("lowercase", True))
        self.vocab: dict[str, int] = model.get("vocab") or {}
        if model.get("unk_token") not in self.vocab:
            raise refuse("model.unk_token", model.get("unk_token"), "a token of model.vocab")
        self.unk_id, self.prefix = self.vocab[model["unk_token"]], model.get("continuing_subword_prefix", "##")
        self.max_chars = model.get("max_input_chars_per_word", 100)
        # Substrings longer than every vocabulary entry cannot match: the greedy search starts at this length.
        self.longest = max(map(len, self.vocab))
        self.longest_next = max((len(t) - len(self.prefix) for t in self.vocab if t.startswith(self.prefix)), default=0)
        self.added = read_added_tokens(doc)
        by_length = sorted(self.added, key=len, reverse=True)  # alternation tries the longest first
        self.added_pattern = re.compile("(" + "|".join(map(re.escape, by_length)) + ")") if self.added else None
        self.head, self.tail = read_template(doc)
        self.truncation, self.padding = read_truncation(doc), read_padding(doc)
        if self.truncation is not None and self.truncation.max_length < len(self.head) + len(self.tail):
            raise refuse("truncation.max_length", self.truncation.max_length,
                         f"at least the template's {len(self.head) + len(self.tail)} tokens")
        self.word_ids = lru_cache(maxsize=WORD_CACHE)(self._word_ids)

    @classmethod
    def from_json(cls, blob: bytes | str) -> "WordPieceTokenizer":
        try:
            doc = json.loads(blob)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a tokenizer.json file: {exc}") from None
        if not isinstance(doc, dict):
            raise ValueError("not a tokenizer.json file: not a JSON object")
        try:
            return cls(doc)
        except (KeyError, TypeError, AttributeError) as exc:  # a field missing, or of another JSON type
            raise ValueError(f"not a tokenizer.json file: {type(exc).__name__} {exc}") from None

    def truncated(self, max_length: int) -> "WordPieceTokenizer":
        """A copy that truncates as tokenizers' `enable_truncation(max_length)` sets it (Right)."""
        out = copy.copy(self)
        out.truncation = Truncation(max_length)
        out.word_ids = lru_cache(maxsize=WORD_CACHE)(out._word_ids)  # its own, holding no reference to self
        return out

    @property
    def vocab_size(self) -> int:
        """tokenizers' get_vocab_size(): model vocabulary and added tokens, by content."""
        return len(self.vocab.keys() | self.added.keys())

    @property
    def num_special_tokens(self) -> int:
        """Tokens the template adds to every text (num_special_tokens_to_add(False))."""
        return len(self.head) + len(self.tail)

    def token_to_id(self, token: str) -> int | None:
        return self.added.get(token, self.vocab.get(token))

    def _word_ids(self, word: str) -> tuple[int, ...]:
        """One pre-tokenized word -> its WordPiece ids: at each position the longest vocabulary entry
        ("##"-prefixed after the first), and the whole word is [UNK] if some position has none."""
        if len(word) > self.max_chars:
            return (self.unk_id,)
        vocab, ids, start = self.vocab, [], 0
        if word in vocab:  # most words: the greedy search would take the whole word first anyway
            return (vocab[word],)
        while start < len(word):
            end = min(len(word), start + (self.longest_next if start else self.longest))
            while end > start:
                i = vocab.get(self.prefix + word[start:end] if start else word[:end])
                if i is not None:
                    break
                end -= 1
            else:
                return (self.unk_id,)
            ids.append(i)
            start = end
        return tuple(ids)

    def sequence_ids(self, text: str) -> list[int]:
        """The text's ids before truncation and template."""
        parts = self.added_pattern.split(text) if self.added_pattern else [text]  # [text, added, text, ...]
        ids: list[int] = []
        for i, part in enumerate(parts):
            if i % 2:
                ids.append(self.added[part])
            elif part:
                for word in words(self.normalize(part)):
                    ids += self.word_ids(word)
        return ids

    def encode(self, text: str) -> list[int]:
        """text -> ids, truncated (the template's tokens count towards max_length) and templated."""
        ids, t = self.sequence_ids(text), self.truncation
        room = None if t is None else t.max_length - self.num_special_tokens
        if room is not None and len(ids) > room:
            ids = ids[:room] if t.direction == "Right" else ids[len(ids) - room:]
        return [*self.head, *ids, *self.tail]

    def encode_batch(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """texts -> (input_ids (N, T), attention_mask (N, T)) int64, padded as the file says (mask 0 on the
        padding); with no padding in the file, the texts must come out the same length."""
        return pad([self.encode(t) for t in texts], self.padding)


def pad(rows: list[list[int]], padding: Padding | None) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids -> (ids, mask) (N, T): T is the longest row, or the fixed length, rounded up to a multiple."""
    longest = max(map(len, rows), default=0)
    if padding is None:
        if any(len(r) != longest for r in rows):
            raise ValueError("tokenizer.json sets no padding, and the texts have different lengths")
        padding = Padding()
    length = longest if padding.length is None else padding.length
    if padding.multiple_of and length % padding.multiple_of:
        length += padding.multiple_of - length % padding.multiple_of
    if longest > length:
        raise ValueError(f"a text has {longest} tokens, more than padding's fixed length {length}")
    ids = np.full((len(rows), length), padding.pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), length), dtype=np.int64)
    for i, row in enumerate(rows):
        cols = slice(0, len(row)) if padding.direction == "Right" else slice(length - len(row), length)
        ids[i, cols], mask[i, cols] = row, 1
    return ids, mask
