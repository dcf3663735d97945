"""The scheduler's active sequences as one batch, kept while none joins or leaves.

What a step needs from its B sequences lives here in batch form: the stepper's states for these rows in
this order (fed back whole, see stepping), the pending tokens (B,), the sampling plan and the rows' uniform
numbers (sampling.Plan, sampling.Draws), and how many tokens each row may still make (B,). So a step costs a
fixed number of numpy calls whatever B; only rows with a repetition penalty (their history) need Python
work of their own. When the batch changes (a sequence joins or leaves), `release` hands every sequence its
state, pending token, count and unused numbers back, and the next batch is made from them.
"""

from __future__ import annotations

import numpy as np

from service.runtime.generation import sampling
from service.runtime.generation.sequence import Sequence
from service.runtime.generation.stepping import NgramStep, RecurrentStep

NO_HISTORY = np.array([], np.int64)


class Batch:
    __slots__ = ("seqs", "states", "pending", "plan", "draws", "histories", "with_history", "left", "first_end",
                 "steps", "fresh", "worker_text")

    def __init__(self, seqs: list[Sequence]):
        self.seqs = seqs
        self.states = [s.state for s in seqs]  # after the first step: the stepper's own batch of states
        self.pending = np.array([s.pending for s in seqs], np.int64)  # (B,) tokens the model reads next (-1: none yet)
        self.plan = sampling.Plan([s.params for s in seqs])
        self.draws = sampling.Draws([s.draws for s in seqs])
        self.histories = [NO_HISTORY] * len(seqs)  # refreshed each step for the rows with a history
        self.with_history = [i for i, s in enumerate(seqs) if s.history is not None]
        self.left = np.array([s.max_tokens - s.generated for s in seqs])  # (B,) tokens each may still make, >= 1
        self.first_end = int(self.left.min())  # no row reaches max_tokens before this batch's step number
        self.steps = 0  # tokens this batch has made per row: each row's count is its sequence's `generated` plus this
        self.fresh = [i for i, s in enumerate(seqs) if s.generated == 0]  # rows whose first token is next
        self.worker_text = [i for i, s in enumerate(seqs) if s.text_on_worker]  # rows with stop sequences

    def chunk_limit(self, stepper: RecurrentStep | NgramStep) -> int:
        """The most tokens one call may make for every row: 1 unless the stepper has a steps graph and every
        row samples by the plain rule; then up to the first row's max_tokens, so that no row ends inside a
        call: a model with an end token, and rows with stop sequences (their text may end them at any token),
        keep to one."""
        if stepper.steps_run is None or stepper.eos is not None or self.plan.temperature is None or self.worker_text:
            return 1
        return min(sampling.BLOCK, self.first_end - self.steps)

    def advance(self, stepper: RecurrentStep | NgramStep, k: int = 1) -> list[sampling.Sampled]:
        """k tokens for every row (blocking: the graph runs), k <= chunk_limit: one Sampled per token, in
        order. k > 1 is one call of the steps graph, which samples inside; the rows' tokens and numbers are
        those of k single steps. `steps` counts the tokens as the caller takes them (see `ends`)."""
        if k > 1:
            u = np.ascontiguousarray(self.draws.take(k))  # (B, k)
            tokens, logits, self.states = stepper.steps(self.states, self.pending, u, self.plan.temperature)
            self.pending = tokens[:, -1]
            return [sampling.sampled(logits[:, j], tokens[:, j], self.plan) for j in range(k)]
        logits, states = stepper.step(self.states, self.pending)  # logits (B, V)
        return [self.sample(logits, states)]

    def sample(self, logits: np.ndarray, states) -> sampling.Sampled:
        """Every row's next token from its logits (B, V) with its own parameters and numbers; `states` are
        the rows' states after reading what gave these logits (a step's, or the prefill's for a first token)."""
        for i in self.with_history:
            self.histories[i] = np.array(self.seqs[i].history, np.int64)
        sampled = sampling.step(logits, self.plan, self.histories, self.draws)
        self.states, self.pending = states, sampled.tokens
        for i in self.with_history:
            self.seqs[i].history.append(sampled.tokens.item(i))
        return sampled

    def ends(self, tokens: np.ndarray, eos: int | None) -> dict[int, str]:
        """The rows that end with the next token of each, tokens (B,) (counted here): "length" at max_tokens,
        "stop" at the end token."""
        self.steps += 1
        ends = {}
        if self.steps >= self.first_end:
            ends = dict.fromkeys(np.flatnonzero(self.left <= self.steps).tolist(), "length")
        if eos is not None:
            ends |= dict.fromkeys(np.flatnonzero(tokens == eos).tolist(), "stop")
        return ends

    def generated(self, i: int) -> int:
        return self.seqs[i].generated + self.steps

    def release(self) -> None:
        """Hand every sequence its own state, pending token, count and numbers back (the batch is over)."""
        self.draws.release()
        for seq, state, token in zip(self.seqs, self.states, self.pending.tolist()):
            seq.state, seq.pending = state, token
            seq.generated += self.steps
        self.steps = 0
