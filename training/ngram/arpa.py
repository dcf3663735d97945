"""The ARPA back-off format (as written by SRILM and KenLM), from and to an `NgramLM`.

An interpolated model is a back-off model in disguise: for a seen (h, w) the ARPA file stores the
interpolated p(w | h), and for h as a context its back-off weight gamma(h), because for an unseen w the
interpolation reduces to gamma(h) * p(w | h'). Scoring the file with the usual back-off rule

    p(w | h) = p_arpa(h w)  if listed,  else  bow(h) * p(w | h')     (bow = 1 when h is not listed)

therefore gives back exactly the model's probabilities (to the printed precision).

Tokens may not contain whitespace in ARPA, so a space character (a char model's token) is written as
U+2581 "▁", the convention of SentencePiece.
"""

from __future__ import annotations

import gzip
import io
import math
from pathlib import Path

import numpy as np

from training.ngram.model import NgramLM

SPACE = "\u2581"
LOG10_ZERO = -99.0  # what SRILM and KenLM write for p(<s>)


def arpa_tokens(tokens: tuple[str, ...]) -> list[str]:
    """Vocabulary tokens as written in ARPA: " " becomes "▁"; any other whitespace is an error."""
    if SPACE in tokens:
        raise ValueError(f"the vocabulary already has {SPACE!r}, which ARPA output uses for a space")
    out = [SPACE if t == " " else t for t in tokens]
    bad = [t for t in out if not t or any(c.isspace() for c in t)]
    if bad:
        raise ValueError(f"tokens {bad[:5]!r} contain whitespace and cannot be written to ARPA")
    return out


def _open(path: Path, mode: str):
    path = Path(path)
    if path.suffix == ".gz":
        # mtime=0: the same model gives the same bytes, so artifact checksums are reproducible.
        raw = gzip.GzipFile(path, mode[0] + "b", compresslevel=9, mtime=0) if "w" in mode else gzip.open(path, "rb")
        return io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


def level_probs(lm: NgramLM) -> list[np.ndarray]:
    """p_k of every listed k-gram: alpha_k + gamma_k(prefix) * p_{k-1}(suffix); the suffix of a seen k-gram
    is a seen (k-1)-gram, so the recursion only visits listed entries."""
    probs = []
    for k, lev in enumerate(lm.levels, start=1):
        lower = lm.uniform[lev.last] if k == 1 else probs[-1][lev.suffix]
        probs.append(lev.alpha + lev.gamma[lev.prefix] * lower)
    return probs


def level_tokens(lm: NgramLM) -> list[np.ndarray]:
    """(n_k, k) token ids of every k-gram type."""
    mats = []
    for lev in lm.levels:
        mats.append(lev.last[:, None] if not mats else np.concatenate([mats[-1][lev.prefix], lev.last[:, None]], axis=1))
    return mats


def write_arpa(lm: NgramLM, tokens: tuple[str, ...], path: Path) -> Path:
    """Write `lm` as ARPA text (gzip-compressed when `path` ends in .gz)."""
    names = np.array(arpa_tokens(tokens), dtype=object)
    probs, mats = level_probs(lm), level_tokens(lm)
    with _open(path, "w") as f:
        f.write("\\data\\\n")
        for k, p in enumerate(probs, start=1):
            f.write(f"ngram {k}={len(p)}\n")
        for k, (p, mat) in enumerate(zip(probs, mats), start=1):
            f.write(f"\n\\{k}-grams:\n")
            with np.errstate(divide="ignore"):
                logp = np.where(p > 0, np.log10(np.where(p > 0, p, 1.0)), LOG10_ZERO)
                bow = np.log10(lm.levels[k].gamma) if k < lm.order else None
            text = [" ".join(row) for row in names[mat]]
            for i, ngram in enumerate(text):
                if bow is not None and bow[i] != 0.0:
                    f.write(f"{logp[i]:.7f}\t{ngram}\t{bow[i]:.7f}\n")
                else:
                    f.write(f"{logp[i]:.7f}\t{ngram}\n")
        f.write("\n\\end\\\n")
    return path


class ArpaLM:
    """A plain back-off scorer over an ARPA file: the reference any ARPA-reading tool implements."""

    def __init__(self, path: Path):
        self.prob: dict[tuple[str, ...], float] = {}  # log10
        self.bow: dict[tuple[str, ...], float] = {}  # log10
        self.order = 0
        section = 0
        with _open(path, "r") as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith("ngram ") or line in ("\\data\\", "\\end\\"):
                    continue
                if line.endswith("-grams:"):
                    section = int(line[1:line.index("-")])
                    self.order = max(self.order, section)
                    continue
                parts = line.split("\t") if "\t" in line else line.split()
                words = tuple(parts[1].split())
                if len(words) != section:
                    raise ValueError(f"{path}: {line!r} is not a {section}-gram")
                self.prob[words] = float(parts[0])
                if len(parts) > 2:
                    self.bow[words] = float(parts[2])

    def log10p(self, context: tuple[str, ...], word: str) -> float:
        context = context[max(0, len(context) - (self.order - 1)):] if self.order > 1 else ()
        penalty = 0.0
        while True:
            if context + (word,) in self.prob:
                return penalty + self.prob[context + (word,)]
            if not context:
                raise KeyError(f"{word!r} is not in the ARPA vocabulary")
            penalty += self.bow.get(context, 0.0)
            context = context[1:]

    def sentence_logp(self, words: list[str], bos: str = "<s>", eos: str = "</s>") -> list[float]:
        """Natural-log probabilities of each word and of `</s>`, given `<s>` before the first."""
        seq, out = [bos, *words, eos], []
        for i in range(1, len(seq)):
            out.append(self.log10p(tuple(seq[max(0, i - self.order + 1):i]), seq[i]) * math.log(10))
        return out
