"""Choosing the next token from a language model's logits: pure numpy, every row of a step at once.

Each sequence has its own `numpy.random.Generator`, seeded from its request, and a row's choice depends
only on that row's logits, parameters, history and generator (rows are sampled together, but every
reduction runs along its own row). So the same seed and parameters give the
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
from zooserve.numeric import cumexp, inverse_cdf, log_softmax

MAX_LOGPROBS = 20
SEED_LIMIT = 2**63  # seeds are in [0, 2**63): every seeded endpoint (generation, /sample) takes and draws these


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    top_k: int = 0  # 0 = no limit
    top_p: float = 1.0  # 1 = no limit
    repetition_penalty: float = 1.0  # 1 = none
    seed: int | None = None
    logprobs: int | None = None  # None: no log-probabilities; k: the chosen token's and k alternatives (0..20)

    def __post_init__(self):
        # Each message is formatted only if its check fails: formatting all six took ~35 us per request.
        checks = [
            (isinstance(self.temperature, (int, float)) and 0 <= self.temperature <= 100,
             lambda: f"temperature must be between 0 and 100, got {shown(self.temperature)}"),
            (is_int(self.top_k) and self.top_k >= 0, lambda: f"top_k must be an integer >= 0, got {shown(self.top_k)}"),
            (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1,
             lambda: f"top_p must be in (0, 1], got {shown(self.top_p)}"),
            (isinstance(self.repetition_penalty, (int, float)) and 0 < self.repetition_penalty <= 10,
             lambda: f"repetition_penalty must be in (0, 10], got {shown(self.repetition_penalty)}"),
            (self.seed is None or (is_int(self.seed) and 0 <= self.seed < SEED_LIMIT),
             lambda: f"seed must be an integer in [0, 2**63), got {shown(self.seed)}"),
            (self.logprobs is None or (is_int(self.logprobs) and 0 <= self.logprobs <= MAX_LOGPROBS),
             lambda: f"logprobs must be an integer from 0 to {MAX_LOGPROBS}, got {shown(self.logprobs)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BadInput(message())


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
    """The next token id for one row of logits (V,); draws one number from `rng` unless greedy."""
    return _choose(np.asarray(logits), params, history, rng.random() if params.temperature > 0 else 0.0)


def _choose(logits: np.ndarray, params: SamplingParams, history: np.ndarray, u: float) -> int:
    """One row (V,) with its uniform number u in [0, 1) (unused when greedy)."""
    if _is_plain(params):  # the batched path on a batch of one, so a row gets the same token alone
        z = logits.astype(np.float64)[None]
        return int(_plain_tokens(z, cumexp(z)[1], np.array([[u]]), Plan([params]))[0])
    if params.temperature == 0:
        return int(np.argmax(penalise(logits, history, params.repetition_penalty)))
    probs = np.exp(filtered_logprobs(logits, params, history))
    cdf = np.cumsum(probs)
    # One uniform draw per token keeps generators in step however the distribution looks.
    return int(min(np.searchsorted(cdf, u * cdf[-1], side="right"), len(cdf) - 1))


def _is_plain(p: SamplingParams) -> bool:
    return p.top_k == 0 and p.top_p == 1.0 and p.repetition_penalty == 1.0


class Plan:
    """Which rows of a batch sample how, worked out once per batch composition (the scheduler keeps it
    while no sequence joins or leaves) rather than on every step. Plain rows (no top-k, top-p or penalty,
    the common case) are sampled together: greedy ones in one argmax, temperature-1 ones from the step's
    own softmax, other temperatures in one scaled softmax; the rest (`special`) one by one (`_choose`)."""

    __slots__ = ("params", "greedy", "unit", "scaled", "temps", "special", "logprobs", "only", "temperature")

    def __init__(self, params: list[SamplingParams]):
        self.params = params
        plain = [i for i, p in enumerate(params) if _is_plain(p)]
        self.greedy = [i for i in plain if params[i].temperature == 0]
        self.unit = [i for i in plain if params[i].temperature == 1]
        self.scaled = [i for i in plain if params[i].temperature not in (0, 1)]
        self.temps = np.array([params[i].temperature for i in self.scaled], np.float64)[:, None]  # (S, 1)
        self.special = [i for i, p in enumerate(params) if not _is_plain(p)]
        self.logprobs = [i for i, p in enumerate(params) if p.logprobs is not None]  # rows that report them
        # Every row plain: a steps graph can sample the batch by the same rule, several tokens per call.
        self.temperature = None if self.special else np.array([p.temperature for p in params], np.float64)  # (B,)
        # "unit" or "greedy" when every row samples that way (one call for the whole batch), else None.
        self.only = next((name for name in ("unit", "greedy") if len(getattr(self, name)) == len(params)), None)


def _plain_tokens(z: np.ndarray, cdf1: np.ndarray | None, u: np.ndarray, plan: Plan) -> np.ndarray:
    """Steps 2 and 4 for the plan's plain rows of z (B, V) float64 -> tokens (B,) int64 (0 for the other
    rows). `cdf1` (B, V): each row's cumulative exp(z - max z) (None when every row is greedy); u (B, 1)
    each row's uniform number. Every reduction runs along its own row, so a row's token does not depend on
    the others. Few numpy calls: right after an onnxruntime step the caches are cold, and each call costs
    several microseconds (measured: 13 calls took ~35 us at B=1 where they take ~10 us warm)."""
    if plan.only == "unit":  # the common case: the whole batch in three calls
        return inverse_cdf(cdf1, u)
    if plan.only == "greedy":
        return np.argmax(z, axis=-1)
    tokens = np.zeros(len(z), np.int64)
    if plan.greedy:
        tokens[plan.greedy] = np.argmax(z[plan.greedy], axis=-1)
    if plan.unit:
        tokens[plan.unit] = inverse_cdf(cdf1[plan.unit], u[plan.unit])
    if plan.scaled:
        tokens[plan.scaled] = inverse_cdf(cumexp(z[plan.scaled] / plan.temps)[1], u[plan.scaled])
    return tokens


class Choice(NamedTuple):  # made only for the rows whose request asked for log-probabilities
    token: int
    logprob: float  # the model's log-probability of `token`
    top: tuple[tuple[int, float], ...]  # the model's `logprobs` most likely tokens with their log-probabilities


class Sampled(NamedTuple):
    tokens: np.ndarray  # (B,) int64: every row's next token
    choices: dict[int, Choice]  # row -> its Choice, for the rows whose request asked for log-probabilities


def step(logits: np.ndarray, params: list[SamplingParams] | Plan, histories: list[np.ndarray],
         draws: Draws) -> Sampled:
    """One token for each row of logits (B, V); row i uses params[i], histories[i] and draws' row i only.
    `params` may come as a Plan made earlier for the same rows."""
    plan = params if isinstance(params, Plan) else Plan(params)
    params = plan.params
    if not (len(logits) == len(params) == len(histories) == len(draws)):
        raise ValueError("logits, params, histories and draws need one entry per row")
    u = draws.next()  # (B, 1)
    z = logits.astype(np.float64)  # (B, V)
    zmax, cdf1 = cumexp(z) if plan.only != "greedy" or plan.logprobs else (None, None)
    tokens = _plain_tokens(z, cdf1, u, plan)
    for i in plan.special:
        tokens[i] = _choose(logits[i], params[i], histories[i], u.item(i))
    choices = {i: _choice(z[i], zmax.item(i, 0), cdf1[i, -1], tokens.item(i), params[i].logprobs)
               for i in plan.logprobs}
    return Sampled(tokens, choices)


def _choice(z: np.ndarray, zmax: float, total: float, token: int, alternatives: int) -> Choice:
    """One row's Choice from its logits z (V,) float64, their maximum and sum of exp(z - max): the model's own
    log-probabilities z - lse, lse = max + log(sum of exp(z - max))."""
    lse = zmax + math.log(total)
    top: tuple[tuple[int, float], ...] = ()
    if alternatives:
        row = z - lse
        ids = np.argsort(-row, kind="stable")[:alternatives]
        top = tuple((int(t), float(row[t])) for t in ids)
    return Choice(token, z.item(token) - lse, top)


def sampled(logits: np.ndarray, tokens: np.ndarray, plan: Plan) -> Sampled:
    """A step whose tokens (B,) were drawn elsewhere (a steps graph, by the plain rule) from logits (B, V):
    the Choices of the rows that report log-probabilities, the same numbers `step` gives."""
    if not plan.logprobs:
        return Sampled(tokens, {})
    z = logits[plan.logprobs].astype(np.float64)  # (R, V)
    zmax, cdf1 = cumexp(z)
    return Sampled(tokens, {i: _choice(z[r], zmax.item(r, 0), cdf1[r, -1], tokens.item(i), plan.params[i].logprobs)
                            for r, i in enumerate(plan.logprobs)})


BLOCK = 64  # numbers a row takes from its generator at once


class Uniforms:
    """A row's generator, read ahead: `rng.random(n)` gives the very numbers n calls of `rng.random()` would
    (tests/service/test_sampling.py), so numbers drawn in blocks and used in order are the row's own sequence,
    whatever batches the row passes through. `ahead` holds those drawn and not used yet."""

    __slots__ = ("rng", "ahead")

    def __init__(self, rng: np.random.Generator):
        self.rng, self.ahead = rng, np.empty(0)

    def take(self, n: int) -> np.ndarray:
        """The next n numbers (n,) float64, used up."""
        if len(self.ahead) < n:
            blocks = -(-(n - len(self.ahead)) // BLOCK)
            self.ahead = np.concatenate((self.ahead, self.rng.random(blocks * BLOCK)))
        out, self.ahead = self.ahead[:n], self.ahead[n:]
        return out

    def give_back(self, numbers: np.ndarray) -> None:
        """Numbers taken and not used: they come next again."""
        self.ahead = np.concatenate((numbers, self.ahead))


class Draws:
    """The uniform numbers of a batch's rows: the next BLOCK numbers of each row's own sequence side by side,
    `window` (B, BLOCK), read one column a step. Every row reads a number every step, whether it draws or
    not (a greedy row never uses its numbers, so it may as well let them go): the rows stay in step, and a
    read is one slice. `release` gives each row back the numbers it has not read."""

    __slots__ = ("sources", "window", "col")

    def __init__(self, sources: list[Uniforms]):
        self.sources, self.window, self.col = sources, np.empty((len(sources), 0)), 0

    def __len__(self) -> int:
        return len(self.sources)

    def next(self) -> np.ndarray:
        """Every row's next number (B, 1) float64, used up."""
        return self.take(1)

    def take(self, k: int) -> np.ndarray:
        """Every row's next k numbers (B, k) float64, k <= BLOCK, used up (those of k steps, in order)."""
        if self.window.shape[1] - self.col < k:
            more = np.array([u.take(BLOCK) for u in self.sources]).reshape(len(self.sources), BLOCK)
            self.window = np.concatenate((self.window[:, self.col:], more), axis=1)
            self.col = 0
        self.col += k
        return self.window[:, self.col - k:self.col]

    def release(self) -> None:
        for src, rest in zip(self.sources, self.window[:, self.col:]):
            src.give_back(rest)
        self.window, self.col = self.window[:, :0], 0


def draw_seed() -> int:
    """A seed from the OS's entropy, in [0, SEED_LIMIT): what a request that gives none is reported."""
    return int(np.random.SeedSequence().entropy % SEED_LIMIT)


def generator(seed: int | None) -> tuple[np.random.Generator, int]:
    """A row's generator and the seed it was made from (drawn from the OS when not given, and reported
    back so that the client can replay it)."""
    if seed is None:
        seed = draw_seed()
    return np.random.default_rng(seed), seed
