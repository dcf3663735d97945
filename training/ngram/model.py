"""n-gram language models: vectorised counting, interpolated modified Kneser-Ney or add-k, and scoring.

Every model here has the same interpolated form, level by level (k = 1..N, h_k = the last k-1 tokens):

    p_0(w)       = uniform over the vocabulary except `<s>` (which is never predicted)
    p_k(w | h_k) = alpha_k(h_k, w) + gamma_k(h_k) * p_{k-1}(w | h_{k-1})

with alpha = 0 and gamma = 1 wherever the table has no entry. For modified Kneser-Ney (Chen & Goodman
1998, as in KenLM's lmplz), with a = raw counts at the top order and continuation counts below it (raw
counts for n-grams that start with `<s>`, which have no left extension):

    alpha_k(h, w) = max(a(h w) - D_k(a), 0) / sum_v a(h v)
    gamma_k(h)    = (D_k1 N1(h .) + D_k2 N2(h .) + D_k3+ N3+(h .)) / sum_v a(h v)

and three discounts per order from the count-of-counts n_1..n_4 of a. Add-k only fills the top level:
alpha = c(h w) / (c(h) + k |V|), gamma = k |V| / (c(h) + k |V|), so p = (c(h w) + k) / (c(h) + k |V|).

Counting is numpy throughout. An n-gram type gets a dense id at each order: its id is the rank of
`prefix_id * V + last_token` among that order's keys, so keys never exceed (#types * V) and no hashing is
involved. The same ids index the ONNX lookup tables and the ARPA writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np


# log p for p = 0 (only `<s>`, which is never predicted): the ARPA convention of log10 p = -99, so that the
# output stays finite (JSON has no -inf) and a sampler still never picks it.
# Rounded to float32 so the graph and the numpy reference hold the very same constant.
LOG_ZERO = float(np.float32(-99.0 * np.log(10.0)))


class CorpusTooSmall(ValueError):
    """The corpus does not support the requested order (a discount is undefined or out of range)."""


@dataclass
class Level:
    """Order k: every k-gram type seen in training, in key order (see the module docstring)."""

    prefix: np.ndarray  # (n_k,) id of the (k-1)-gram before the last token (0 = empty context at k = 1)
    suffix: np.ndarray  # (n_k,) id of the (k-1)-gram after the first token
    first: np.ndarray  # (n_k,) first token
    last: np.ndarray  # (n_k,) last token
    count: np.ndarray  # (n_k,) raw count
    alpha: np.ndarray  # (n_k,) float64: this type's alpha as (context = prefix, word = last)
    gamma: np.ndarray  # (n_{k-1},) float64: gamma of each (k-1)-gram as a context at this order, 1 if unused
    discounts: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.last)


@dataclass
class NgramLM:
    order: int
    vocab_size: int
    bos: int  # never predicted; sentences start with it
    eos: int
    smoothing: str  # "kneser-ney" | "add-k"
    levels: list[Level]  # levels[k - 1] is order k
    uniform: np.ndarray  # (V,) p_0
    estimation_s: float = 0.0
    add_k: float = 0.0
    _lookups: dict = field(default_factory=dict, repr=False)

    def probs(self, context: np.ndarray, words: np.ndarray) -> np.ndarray:
        """p(words | context) in float64. context (B, N-1) int64, left-padded with `<s>`; words (B, W) or
        (1, W) -> (B, W)."""
        context = np.asarray(context, dtype=np.int64).reshape(len(context), self.order - 1)
        words = np.asarray(words, dtype=np.int64)
        ctx = self.context_ids(context)  # ctx[j]: (B,) id of the last j tokens as a j-gram, -1 if unseen
        p = np.broadcast_to(self.uniform[words], (len(context), words.shape[1])).copy()
        V = self.vocab_size
        for k, lev in enumerate(self.levels, start=1):
            c = ctx[k - 1]  # (B,)
            seen = c >= 0
            gamma = np.where(seen, lev.gamma[np.where(seen, c, 0)], 1.0)  # (B,)
            alpha = self._find(("alpha", k), lev.prefix * V + lev.last, c[:, None] * V + words, lev.alpha, 0.0)
            p = alpha + gamma[:, None] * p
        return p

    def context_ids(self, context: np.ndarray) -> list[np.ndarray]:
        """ids[j] (B,) for j = 0..N-1: the j-gram made of the context's last j tokens, or -1 if never seen."""
        B, V = len(context), self.vocab_size
        ids = [np.zeros(B, dtype=np.int64)]
        for j in range(1, self.order):
            tok = context[:, self.order - 1 - j]
            ok = (tok >= 0) & (tok < V)  # an out-of-range token would alias another key
            if j == 1:
                ids.append(np.where(ok, tok, -1))
                continue
            lev = self.levels[j - 1]
            prev = ids[-1]
            # A j-gram is its first token prepended to its (j-1)-gram suffix: key = suffix_id * V + first.
            found = self._find(("suffix", j), lev.suffix * V + lev.first, prev * V + tok,
                               np.arange(len(lev), dtype=np.int64), -1)
            ids.append(np.where(ok & (prev >= 0), found, -1))
        return ids

    def _find(self, name, keys: np.ndarray, query: np.ndarray, values: np.ndarray, default):
        """values[i] where keys[i] == query, else default (exact: sorted search, no hashing)."""
        if name not in self._lookups:
            order = np.argsort(keys, kind="stable")
            self._lookups[name] = (keys[order], values[order])
        skeys, svals = self._lookups[name]
        pos = np.clip(np.searchsorted(skeys, query), 0, len(skeys) - 1)
        hit = skeys[pos] == query
        return np.where(hit, svals[pos], default)

    def distribution(self, context: np.ndarray) -> np.ndarray:
        """(B, V) probabilities over the whole vocabulary for contexts (B, N-1)."""
        return self.probs(context, np.arange(self.vocab_size, dtype=np.int64)[None, :])

    def log_probs(self, context: np.ndarray, words: np.ndarray) -> np.ndarray:
        """(B, W) natural-log probabilities of `words` (as in `probs`), LOG_ZERO where the probability is 0:
        what the ONNX graph outputs for those candidates."""
        p = self.probs(context, words)
        with np.errstate(divide="ignore"):
            return np.where(p > 0, np.log(p), LOG_ZERO)

    def log_distribution(self, context: np.ndarray) -> np.ndarray:
        """(B, V) `log_probs` of every token: what the ONNX graph outputs without candidates."""
        return self.log_probs(context, np.arange(self.vocab_size, dtype=np.int64)[None, :])

    def score(self, sentences: list[np.ndarray]) -> "Score":
        """Log-probability of every token and of `</s>` after each sentence (ids without boundaries)."""
        stream, sent = _stream(sentences, self.bos, self.eos)
        targets = np.flatnonzero(stream != self.bos)
        n = self.order - 1
        # Context rows: the n tokens before each target, `<s>`-padded at sentence starts.
        offs = targets[:, None] - np.arange(n, 0, -1)[None, :]  # (T, n)
        inside = (offs >= 0) & (sent[np.clip(offs, 0, None)] == sent[targets][:, None])
        context = np.where(inside, stream[np.clip(offs, 0, None)], self.bos)
        logp = np.log(self.probs(context, stream[targets][:, None])[:, 0])
        return Score(logp, len(sentences))


@dataclass
class Score:
    logp: np.ndarray  # natural-log probability of each scored token (words or chars, then `</s>`)
    sentences: int

    @property
    def tokens(self) -> int:
        return len(self.logp)

    @property
    def cross_entropy(self) -> float:
        """nats per scored token"""
        return float(-self.logp.mean())

    @property
    def perplexity(self) -> float:
        return float(np.exp(self.cross_entropy))


def _stream(sentences: list[np.ndarray], bos: int, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """One array `<s> a b </s> <s> c </s> ...` and, per position, the index of its sentence."""
    lengths = np.array([len(s) + 2 for s in sentences], dtype=np.int64)
    stream = np.concatenate([np.concatenate(([bos], s, [eos])) for s in sentences]).astype(np.int64)
    return stream, np.repeat(np.arange(len(sentences)), lengths)


def _count(stream: np.ndarray, sent: np.ndarray, order: int, V: int):
    """Per order k: types (prefix, suffix, first, last, count) and, per position, the k-gram starting there."""
    gid = stream.copy()  # order 1: a unigram's id is its token id
    types = [(np.zeros(V, np.int64), np.zeros(V, np.int64), np.arange(V), np.arange(V),
              np.bincount(stream, minlength=V))]
    for k in range(2, order + 1):
        L = len(stream) - k + 1
        # A window starting at i is a k-gram when it stays in one sentence.
        ok = sent[:L] == sent[k - 1:]
        start = np.flatnonzero(ok)
        keys = gid[start] * V + stream[start + k - 1]
        uniq, first_at, inverse, count = np.unique(keys, return_index=True, return_inverse=True, return_counts=True)
        at = start[first_at]  # one occurrence of each type
        prefix, last = uniq // V, uniq % V
        suffix = gid[at + 1]  # the (k-1)-gram starting one later
        types.append((prefix, suffix, stream[at], last, count))
        new = np.full(len(stream), -1, dtype=np.int64)
        new[start] = inverse
        gid = new
    return types


def _discounts(a: np.ndarray, k: int, fallback: tuple[float, float, float] | None) -> tuple[float, float, float]:
    """Chen & Goodman's estimates from the count-of-counts n1..n4; `fallback` replaces them when they are
    undefined or out of range (KenLM's --discount_fallback), otherwise that is an error."""
    n = np.bincount(a[a > 0], minlength=5)[1:5].astype(np.float64)  # n1..n4
    problem = None
    if np.any(n == 0):
        problem = f"the count-of-counts n1..n4 = {n.astype(int).tolist()} include a zero"
    else:
        y = n[0] / (n[0] + 2 * n[1])
        d = (1 - 2 * y * n[1] / n[0], 2 - 3 * y * n[2] / n[1], 3 - 4 * y * n[3] / n[2])
        bad = [r for r, dr in enumerate(d, start=1) if not 0 < dr < r]
        if bad:
            problem = f"discount D{bad[0]} = {d[bad[0] - 1]:.4f} is outside (0, {bad[0]}) (n1..n4 = {n.astype(int).tolist()})"
    if problem is None:
        return d
    if fallback is not None:
        return tuple(fallback)
    raise CorpusTooSmall(f"order {k}: {problem}, so the Kneser-Ney discounts are undefined. Use a larger corpus, a "
                         "lower order, or fixed fallback discounts (--discount-fallback 0.5 1.0 1.5)")


def _group_sum(ctx: np.ndarray, values: np.ndarray, n_ctx: int) -> np.ndarray:
    return np.bincount(ctx, weights=values, minlength=n_ctx)


def estimate(sentences: list[np.ndarray], *, order: int, vocab_size: int, bos: int, eos: int,
             smoothing: str = "kneser-ney", add_k: float = 1.0,
             discount_fallback: tuple[float, float, float] | None = None) -> NgramLM:
    """Fit an order-`order` model on sentences of token ids (without `<s>`/`</s>`; they are added here)."""
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if smoothing not in ("kneser-ney", "add-k"):
        raise ValueError(f"unknown smoothing {smoothing!r}; choose kneser-ney or add-k")
    t0 = time.perf_counter()
    V = vocab_size
    stream, sent = _stream(sentences, bos, eos)
    if stream.max(initial=0) >= V or stream.min(initial=0) < 0:
        raise ValueError(f"token ids must be in [0, {V})")
    types = _count(stream, sent, order, V)
    longest = int(np.bincount(sent).max()) if len(sent) else 0
    if longest < order:
        raise CorpusTooSmall(f"no sentence (with <s> and </s>) has {order} tokens: the corpus is too small for order {order}")
    uniform = np.full(V, 1.0 / (V - 1))
    uniform[bos] = 0.0
    predicted = np.arange(V) != bos  # (V,) unigram targets: everything but <s>

    levels: list[Level] = []
    for k in range(1, order + 1):
        prefix, suffix, first, last, count = types[k - 1]
        n_ctx = 1 if k == 1 else len(types[k - 2][0])
        ctx = prefix
        if smoothing == "add-k":
            alpha, gamma, d = np.zeros(len(last)), np.ones(n_ctx), ()
            if k == order:
                c = np.where(predicted[last], count, 0).astype(np.float64)
                total = _group_sum(ctx, c, n_ctx)  # c(h)
                denom = total + add_k * (V - 1)
                alpha = c / denom[ctx]
                gamma = np.where(total > 0, add_k * (V - 1) / denom, 1.0)
        else:
            if k < order:
                # Continuation counts: distinct left extensions, i.e. (k+1)-gram types with this suffix.
                a = np.bincount(types[k][1], minlength=len(last)).astype(np.float64)
                a = np.where(first == bos, count, a)
            else:
                a = count.astype(np.float64)
            a = np.where(predicted[last], a, 0.0)
            d = _discounts(a.astype(np.int64), k, discount_fallback)
            disc = np.select([a == 0, a == 1, a == 2], [0.0, d[0], d[1]], d[2])
            total = _group_sum(ctx, a, n_ctx)
            safe = np.where(total > 0, total, 1.0)
            alpha = np.maximum(a - disc, 0.0) / safe[ctx]
            mass = _group_sum(ctx, disc, n_ctx)
            gamma = np.where(total > 0, mass / safe, 1.0)
        levels.append(Level(prefix, suffix, first, last, count, alpha, gamma, tuple(float(x) for x in d)))
    return NgramLM(order, V, bos, eos, smoothing, levels, uniform, time.perf_counter() - t0, add_k)
