"""BERT's text rules as Hugging Face `tokenizers` applies them, in pure Python: BertNormalizer (clean_text,
handle_chinese_chars, strip_accents, lowercase) and BertPreTokenizer (split at whitespace, isolate each
punctuation character).

The code point classes come from `zooserve/bert_chars.py` (what `tokenizers` itself does, probed over every
code point), not from Python's `unicodedata`, whose Unicode version differs from tokenizers' and from one
Python to the next. Each step is one regex substitution or `str.translate` over the text, in tokenizers'
order: clean -> space out CJK -> NFD and drop nonspacing marks -> lowercase (char by char, so no final
sigma). All-ASCII text, most of it, takes a shortcut with the same result: one translate, then lower().
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from zooserve import bert_chars as chars


def char_class(ranges) -> str:
    """[(first, last), ...] -> the inside of a regex character class."""
    return "".join(re.escape(chr(a)) + ("" if a == b else "-" + re.escape(chr(b))) for a, b in ranges)


def code_points(ranges) -> set[int]:
    return {c for a, b in ranges for c in range(a, b + 1)}


_OTHER = re.compile(f"[\0\ufffd{char_class(chars.OTHER)}]+")
_SPACES = {c: " " for c in code_points(chars.WHITESPACE)}
_ASCII_OTHER = {0} | code_points((a, min(b, 127)) for a, b in chars.OTHER if a < 128)
_ASCII_CLEAN = {**{c: " " for c in _SPACES if c < 128}, **{c: None for c in _ASCII_OTHER}}  # removal wins
_CJK = re.compile(f"[{char_class(chars.CJK)}]")
_MARKS = re.compile(f"[{char_class(chars.NONSPACING_MARKS)}]+")
_NFD_KEPT = re.compile(f"([{char_class(chars.NFD_KEPT)}])")
_LOWER = {**{c: chr(c + delta) for first, last, step, delta in chars.LOWER for c in range(first, last + 1, step)},
          **chars.LOWER_LONG}
_PUNCT = char_class(chars.PUNCTUATION)
_WORDS = re.compile(f"[^{char_class(chars.WHITESPACE)}{_PUNCT}]+|[{_PUNCT}]")


def nfd(text: str) -> str:
    """Canonical decomposition as tokenizers' Rust crate does it: Python's, bar the NFD_KEPT code points (all
    starters, so leaving them whole moves no mark across them)."""
    if not _NFD_KEPT.search(text):
        return unicodedata.normalize("NFD", text)
    parts = _NFD_KEPT.split(text)  # [text, kept, text, kept, ..., text]
    return "".join(p if i % 2 else unicodedata.normalize("NFD", p) for i, p in enumerate(parts))


@dataclass(frozen=True)
class BertNormalizer:
    """tokenizers' BertNormalizer, with its defaults. strip_accents None follows lowercase."""
    clean_text: bool = True
    handle_chinese_chars: bool = True
    strip_accents: bool | None = None
    lowercase: bool = True

    def __call__(self, text: str) -> str:
        if text.isascii():  # no CJK, no marks, NFD is the identity
            text = text.translate(_ASCII_CLEAN) if self.clean_text else text
            return text.lower() if self.lowercase else text
        if self.clean_text:  # controls and format characters go, then every whitespace becomes " "
            text = _OTHER.sub("", text).translate(_SPACES)
        if self.handle_chinese_chars:
            text = _CJK.sub(r" \g<0> ", text)
        if self.lowercase if self.strip_accents is None else self.strip_accents:
            text = _MARKS.sub("", nfd(text))
        return text.translate(_LOWER) if self.lowercase else text


def words(text: str) -> list[str]:
    """BertPreTokenizer: split at whitespace (dropped), and each punctuation character is a word of its own."""
    return _WORDS.findall(text)
