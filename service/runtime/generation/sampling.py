"""Choosing the next token from a language model's logits: pure numpy, one row at a time.

Each sequence has its own `numpy.random.Generator`, seeded from its request, and a row's choice depends
only on that row's logits, parameters, history and generator. So the same seed and parameters give the
same text whatever other sequences share the step batch.

Order of operations on a row of logits (V,), as in common practice (CTRL, Hugging Face, vLLM):
1. repetition penalty on every token already in the sequence: positive logits / p, negative logits * p;
2. temperature 0: greedy (argmax, lowest id on ties); otherwise logits / temperature;
3. top-k, then top-p (the smallest set of most likely tokens whose probability reaches p), both on the
   tempered distribution; at least one token always survives;
4. draw by inverse CDF with one uniform number from the row's generator.

Reported log-probabilities (`logprobs`) are those of the model itself, before steps 1-3, so they mean the
same as the scoring endpoint's figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from service.runtime.errors import BadInput, shown
from zooserve.numeric import log_softmax

MAX_LOGPROBS = 20


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0  # 1 = no limit
    repetition_penalty: float = 1.0  # 1 = none
    seed: int | None = None
    logprobs: int | None = None  # None: no log-probabilities; k: the chosen token's and k alternatives (0..20)

    def __post_init__(self):
        checks = [
            (isinstance(self.temperature, (int, float)) and 0 <= self.temperature <= 100,
             f"temperature must be between 0 and 100, got {shown(self.temperature)}"),
            (is_int(self.top_k) and self.top_k >= 0, f"top_k must be an integer >= 0, got {shown(self.top_k)}"),
            (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1, f"top_p must be in (0, 1], got {shown(self.top_p)}"),
            (isinstance(self.repetition_penalty, (int, float)) and 0 < self.repetition_penalty <= 10,
             f"repetition_penalty must be in (0, 10], got {shown(self.repetition_penalty)}"),
            (self.seed is None or (is_int(self.seed) and 0 <= self.seed < 2**63),
             f"seed must be an integer in [0, 2**63), got {shown(self.seed)}"),
            (self.logprobs is None or (is_int(self.logprobs) and 0 <= self.logprobs <= MAX_LOGPROBS),
             f"logprobs must be an integer from 0 to {MAX_LOGPROBS}, got {shown(self.logprobs)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(message)


def is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def penalise(logits: np.ndarray, history: np.ndarray, penalty: float) -> np.ndarray:
    """Make tokens already in `history` less (penalty > 1) or more (< 1) likely; returns a new array."""
    out = logits.astype(np.float64)
    if penalty != 1.0 and len(history):
        seen = np.unique(history)
        out[seen] = np.where(out[seen] > 0, out[seen] / penalty, out[seen] * penalty)
    return out


def filtered_logprobs(logits: np.ndarray, params: SamplingParams, history: np.ndarray) -> np.ndarray:
    """Steps 1-3 for one row (V,): log-probabilities to draw from, -inf for removed tokens (temperature > 0)."""
    z = penalise(logits, history, params.repetition_penalty) / params.temperature
    logp = log_softmax(z)
    if params.top_k and params.top_k < len(logp):
        keep = np.argpartition(-logp, params.top_k - 1)[:params.top_k]  # exactly k, even on ties
        mask = np.zeros(len(logp), dtype=bool)
        mask[keep] = True
        logp = log_softmax(np.where(mask, logp, -np.inf))
    if params.top_p < 1.0:
        order = np.argsort(-logp, kind="stable")
        probs = np.exp(logp[order])
        # Keep each token whose preceding cumulative mass is still below p (so the first always stays).
        keep = np.concatenate(([True], np.cumsum(probs)[:-1] < params.top_p))
        mask = np.zeros(len(logp), dtype=bool)
        mask[order[keep]] = True
        logp = np.where(mask, logp, -np.inf)
    return log_softmax(logp)  # renormalised over the survivors


def choose(logits: np.ndarray, params: SamplingParams, history: np.ndarray, rng: np.random.Generator) -> int:
    """The next token id for one row of logits (V,)."""
    if _is_plain(params):  # the batched path on a batch of one, so a row gets the same token alone
        z = np.asarray(logits, np.float64)[None]
        cdf1 = _cumexp(z)[1]
        return _plain_tokens(z, cdf1, cdf1[:, -1].tolist(), Plan([params]), [rng], [0])[0]
    if params.temperature == 0:
        return int(np.argmax(penalise(logits, history, params.repetition_penalty)))
    probs = np.exp(filtered_logprobs(logits, params, history))
    cdf = np.cumsum(probs)
    # One uniform draw per token keeps generators in step however the distribution looks.
    return int(min(np.searchsorted(cdf, rng.random() * cdf[-1], side="right"), len(cdf) - 1))


def _is_plain(p: SamplingParams) -> bool:
    return p.top_k == 0 and p.top_p == 1.0 and p.repetition_penalty == 1.0


class Plan:
    """Which rows of a batch sample how, worked out once per batch composition (the scheduler keeps it
    while no sequence joins or leaves) rather than on every step. Plain rows (no top-k, top-p or penalty,
    the common case) are sampled together: greedy ones in one argmax, temperature-1 ones from the step's
    own softmax, other temperatures in one scaled softmax; the rest (`special`) one by one (`choose`)."""

    __slots__ = ("params", "greedy", "unit", "scaled", "temps", "special", "logprobs")

    def __init__(self, params: list[SamplingParams]):
        self.params = params
        plain = [i for i, p in enumerate(params) if _is_plain(p)]
        self.greedy = [i for i in plain if params[i].temperature == 0]
        self.unit = [i for i in plain if params[i].temperature == 1]
        self.scaled = [i for i in plain if params[i].temperature not in (0, 1)]
        self.temps = np.array([params[i].temperature for i in self.scaled], np.float64)[:, None]  # (S, 1)
        self.special = [i for i, p in enumerate(params) if not _is_plain(p)]
        self.logprobs = [i for i, p in enumerate(params) if p.logprobs is not None]  # rows that report them


def _plain_tokens(z: np.ndarray, cdf1: np.ndarray, total: list[float], plan: Plan,
                  rngs: list[np.random.Generator], tokens: list[int]) -> list[int]:
    """Steps 2 and 4 for the plan's plain rows of z (B, V) float64, into `tokens`. `cdf1` (B, V): each row's
    cumulative exp(z - max z), `total` its last column. Every reduction runs along its own row, so a row's
    token does not depend on the others. Few numpy calls, and ufunc methods (np.add.reduce, ...) that skip
    numpy's Python wrappers: right after an onnxruntime step the caches are cold, and each call costs
    several microseconds."""
    b = len(z)
    if plan.greedy:
        picks = np.argmax(z if len(plan.greedy) == b else z[plan.greedy], axis=-1).tolist()
        for i, k in zip(plan.greedy, picks):
            tokens[i] = k
    if plan.unit:
        whole = len(plan.unit) == b
        _draw(cdf1 if whole else cdf1[plan.unit], total if whole else [total[i] for i in plan.unit], plan.unit,
              rngs, tokens)
    if plan.scaled:
        cdf = _cumexp(z[plan.scaled] / plan.temps)[1]
        _draw(cdf, cdf[:, -1].tolist(), plan.scaled, rngs, tokens)
    return tokens


def _cumexp(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """z (R, V) float64 -> (its row maxima (R, 1), the rows' cumulative exp(z - max) (R, V))."""
    zmax = np.maximum.reduce(z, axis=-1, keepdims=True)
    return zmax, np.add.accumulate(np.exp(z - zmax), axis=-1)


def _draw(cdf: np.ndarray, totals: list[float], rows: list[int], rngs: list[np.random.Generator],
          tokens: list[int]) -> None:
    """Inverse CDF with one uniform draw per row; cdf (R, V) is unnormalised, so the draw is scaled by its
    last value (float64 products, as numpy's)."""
    u = np.array([[rngs[i].random() * t] for i, t in zip(rows, totals)])  # (R, 1)
    last = cdf.shape[1] - 1
    picks = np.add.reduce(cdf <= u, axis=-1).tolist()  # searchsorted(cdf, u, "right") per row
    for i, k in zip(rows, picks):
        tokens[i] = min(k, last)


class Choice(NamedTuple):  # a tuple: made for every row of every step
    token: int
    logprob: float  # the model's log-probability of `token`
    top: tuple[tuple[int, float], ...]  # the model's `logprobs` most likely tokens with their log-probabilities
    # (logprob is NaN, top empty, for a row whose request asked for no log-probabilities)


NO_TOP: tuple[tuple[int, float], ...] = ()


def step(logits: np.ndarray, params: list[SamplingParams] | Plan, histories: list[np.ndarray],
         rngs: list[np.random.Generator]) -> list[Choice]:
    """One token for each row of logits (B, V); row i uses params[i], histories[i] and rngs[i] only.
    `params` may come as a Plan made earlier for the same rows."""
    plan = params if isinstance(params, Plan) else Plan(params)
    params = plan.params
    if not (len(logits) == len(params) == len(histories) == len(rngs)):
        raise ValueError("logits, params, histories and generators need one entry per row")
    z = logits.astype(np.float64)  # (B, V)
    zmax, cdf1 = _cumexp(z)  # cdf1's last column is the softmax's sum
    total = cdf1[:, -1].tolist()
    tokens = _plain_tokens(z, cdf1, total, plan, rngs, [0] * len(z))
    for i in plan.special:
        tokens[i] = choose(logits[i], params[i], histories[i], rngs[i])
    out = [Choice(t, math.nan, NO_TOP) for t in tokens]
    for i in plan.logprobs:  # the model's own log-probabilities: z - lse, lse = max + log(sum of exp(z - max))
        lse = zmax.item(i, 0) + math.log(total[i])
        top: tuple[tuple[int, float], ...] = NO_TOP
        if params[i].logprobs:
            row = z[i] - lse
            ids = np.argsort(-row, kind="stable")[:params[i].logprobs]
            top = tuple((int(t), float(row[t])) for t in ids)
        out[i] = Choice(tokens[i], z.item(i, tokens[i]) - lse, top)
    return out


class Uniforms:
    """A row's generator read 64 numbers at a time. `rng.random(64)` gives the very numbers 64 calls of
    `rng.random()` would (tests/service/test_sampling.py), so the row draws the same sequence; a step then
    pays a list pop a row instead of a Generator call (~0.4 us with its lock). Stands in for the generator
    wherever sampling draws (`.random()`)."""

    __slots__ = ("rng", "left")

    def __init__(self, rng: np.random.Generator):
        self.rng, self.left = rng, []

    def random(self) -> float:
        if not self.left:
            self.left = self.rng.random(64)[::-1].tolist()  # popped from the end: first drawn, first used
        return self.left.pop()


def generator(seed: int | None) -> tuple[np.random.Generator, int]:
    """A row's generator and the seed it was made from (drawn from the OS when not given, and reported
    back so that the client can replay it)."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    return np.random.default_rng(seed), seed
