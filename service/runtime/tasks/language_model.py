"""Language models: generation (continuous batching on the model's scheduler) and scoring.

Scoring gives the log-probability the model assigns each token of a text, and their sum.

n-gram models read the text as training did: one `<s> ... </s>` sequence per sentence (word models) or
paragraph (char models), so their figures equal what the ARPA file gives for the same text. Each token's
context (the N-1 tokens before it, `<s>`-padded) is one row of the graph's input, and the token itself that
row's one candidate, so the graph looks up one log-probability per row instead of the V of a whole
distribution (training/ngram/onnx_graph.py). Rows go through the model's batcher in chunks of SCORE_ROWS,
and other requests to the model run between chunks.

Recurrent models read the text as one stream of paragraphs, each ended by "\\n", starting from a zero state
primed with "\\n" (a paragraph start), so that every character, the first included, is scored.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from service.runtime.errors import BadInput, ModelLoadError
from service.runtime.generation.prompt_cache import PromptCache
from service.runtime.generation.request import GenRequest, Generation
from service.runtime.generation.scheduler import Scheduler
from service.runtime.generation.stepping import NgramStep, RecurrentStep, primed, zero_state
from service.runtime.tasks.base import GraphModel, ServedModel
from zooserve.numeric import log_softmax
from zooserve.text import Vocab

MAX_CHARS = 100_000
# Tokens per graph call when a recurrent model scores a text: a call's logits output (1, t, V) grows with t.
# Larger than the prefill's chunk (stepping.PREFILL_CHUNK), which is small so that generating sequences step
# between a long prompt's calls: a /score request goes through the model's batcher, one call at a time.
SCORE_CHUNK = 1024
# Rows (tokens) per graph call when an n-gram model scores a text, one candidate each. Such a call runs
# alone (it is over max_batch_size) and costs at most about twice the table lookups of a full batch of 64
# whole distributions: the char 8-gram 4,096 x 20 = 82k against 64 x (81 x 7 + 13) = 37k, the word trigram
# 4,096 x 5 = 20k against 64 x (9,204 x 2 + 3) = 1.2M. So a long text holds the model little longer per call.
SCORE_ROWS = 4096


def card_vocab(card, files: dict[str, bytes]) -> Vocab:
    """The card's vocab.json (a checked extra file), which must have the card's vocab_size tokens."""
    pre = card.preprocess
    if pre.kind != "text" or not pre.vocab_file or pre.vocab_file not in files:
        raise ModelLoadError("a language model needs its vocabulary (preprocess.vocab_file, listed in extra_files)")
    try:
        vocab = Vocab.from_json(files[pre.vocab_file])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelLoadError(f"{pre.vocab_file} is not a valid vocabulary: {exc}") from exc
    if len(vocab) != pre.vocab_size:
        raise ModelLoadError(f"the vocabulary has {len(vocab)} tokens, the card says {pre.vocab_size}")
    return vocab


class LanguageModel(ServedModel):
    """A char or word language model: a vocabulary, a step interface (generation.stepping) and a scheduler."""

    noun = "a language model"
    stepper_class: ClassVar[type[RecurrentStep] | type[NgramStep]]

    def __init__(self, card, session, *, files, settings, **kw):
        super().__init__(card, session, files=files, settings=settings, **kw)
        self.vocab = card_vocab(card, files)
        steps = self.graphs.get("steps")  # recurrent models: several tokens per call (training/export/lm_steps.py)
        self.stepper = self.stepper_class(card, self.vocab, session.run, steps.session.run if steps else None,
                                          cache=self.prompt_cache())
        self.scheduler = Scheduler(self.stepper, model=card.name, max_active=settings.generation_max_active,
                                   max_waiting=settings.generation_max_waiting)

    def prompt_cache(self) -> PromptCache | None:
        """The stepper's cache of states after whole prompts: none here (an n-gram prefill is a table lookup)."""
        return None

    def index_bounds(self) -> dict[str, tuple[int, int]]:
        return {self.card.inputs[0].name: (0, len(self.vocab) - 1)}  # tokens (B, T) or context (B, N-1)

    def engines(self) -> tuple:
        return (self.scheduler, self.batcher)  # generations in flight finish first

    def generate(self, request: GenRequest) -> Generation:
        return Generation(self, request)

    async def score(self, text, *, timeout_s: float) -> dict:
        if not isinstance(text, str) or not text.strip():
            raise BadInput('"text" must be a non-empty string')
        if len(text) > MAX_CHARS:
            raise BadInput(f'"text" has {len(text)} characters; the limit is {MAX_CHARS}')
        ids, logp = await self.token_logprobs(text, timeout_s)
        total, texts = float(logp.sum()), self.stepper.texts  # texts: `</s>` reads as "\n"
        ce = -total / len(ids)
        return {
            "model": self.name, "version": str(self.version),
            # Python ints and floats from tolist(): a numpy scalar per token costs more than the rest together.
            "tokens": [{"token": texts[t], "id": t, "logprob": lp} for t, lp in zip(ids.tolist(), logp.tolist())],
            "token_count": len(ids), "logprob": total, "cross_entropy": ce,
            "bits_per_token": ce / math.log(2), "perplexity": math.exp(ce),
        }

    async def token_logprobs(self, text: str, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The text's token ids (T,) and the log-probability of each (T,), float64."""
        raise NotImplementedError


class RecurrentLanguageModel(LanguageModel):
    """rnn/lstm/gru: tokens (B, T) and a state (layers, B, hidden) in, logits (B, T, V) and the state out."""

    stepper_class = RecurrentStep

    def max_length(self) -> int | None:
        return self.settings.max_sequence_tokens

    def check_values(self, inputs) -> None:
        # The state's batch axis is its second, so the batcher does not bound the rows (tokens' first axis):
        # at most max_batch_size of them, each at most max_sequence_tokens long, bound a request's time.
        self.check_rows(inputs[self.card.inputs[0].name].shape[0])
        super().check_values(inputs)

    def graph_class(self, role: str) -> type[GraphModel]:
        return StepsGraph if role == "steps" else super().graph_class(role)

    def prompt_cache(self) -> PromptCache:
        return PromptCache(self.settings.generation_prompt_cache, self.card.name)

    async def token_logprobs(self, text: str, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
        """The text in chunks of SCORE_CHUNK tokens, each chunk starting from the state the last one ended
        in: memory stays flat whatever the length (the graph's buffers grow with T), and other requests to
        the model run between chunks. The figures equal one pass over the whole text (see the test)."""
        ids = self.vocab.stream(text)
        if not len(ids):
            raise BadInput("the text has no tokens to score")
        tokens = primed(self.vocab, ids)[:-1]  # (T,): primed with a paragraph start
        state = zero_state(self.card)  # (layers, 1, hidden) zeros per state input
        state_in = [s.name for s in self.card.inputs[1:]]
        state_out = [s.name for s in self.card.outputs[1:]]
        logp = []
        for lo in range(0, len(tokens), SCORE_CHUNK):
            feeds = {self.card.inputs[0].name: tokens[None, lo:lo + SCORE_CHUNK], **state}  # tokens (1, t)
            out = await self.batcher.submit(feeds, timeout_s=timeout_s)
            target = ids[lo:lo + SCORE_CHUNK]
            logp.append(log_softmax(out[self.card.outputs[0].name][0])[np.arange(len(target)), target])  # (t,)
            state = {i: out[o] for i, o in zip(state_in, state_out)}
        return ids, np.concatenate(logp)


class NgramLanguageModel(LanguageModel):
    """ngram/*: a context (B, N-1) and, optionally, candidates (B, K) in; log_probs (B, V) of every next
    token, or (B, K) of the candidates, out. Graphs exported before `candidates` existed give (B, V) only,
    and score through the whole distribution."""

    stepper_class = NgramStep

    def __init__(self, card, session, *, files, settings, **kw):
        super().__init__(card, session, files=files, settings=settings, **kw)
        self.candidates = any(s.name == "candidates" and s.optional for s in card.inputs)

    def index_bounds(self) -> dict[str, tuple[int, int]]:
        return {s.name: (0, len(self.vocab) - 1) for s in self.card.inputs}  # context and candidates: token ids

    async def token_logprobs(self, text: str, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
        vocab = self.vocab
        segments = vocab.segments(text)
        if not segments:
            raise BadInput("the text has no tokens to score")
        ctx, tgt = score_rows(segments, self.card.preprocess.context_length, vocab.id(vocab.bos), vocab.id(vocab.eos))
        step = SCORE_ROWS if self.candidates else self.batcher.max_batch_size
        logp = np.empty(len(tgt))
        for lo in range(0, len(tgt), step):
            rows = slice(lo, lo + step)
            feeds = {"context": ctx[rows]} | ({"candidates": tgt[rows, None]} if self.candidates else {})
            out = (await self.batcher.submit(feeds, timeout_s=timeout_s))["log_probs"]  # (rows, 1) or (rows, V)
            logp[rows] = out[:, 0] if self.candidates else out[np.arange(len(out)), tgt[rows]]
        return tgt, logp


def score_rows(segments: list[np.ndarray], n: int, bos: int, eos: int) -> tuple[np.ndarray, np.ndarray]:
    """Every token of every segment (sentence or paragraph) and the `</s>` after it, as targets (T,), each
    with its context (T, n): the n tokens before it in its segment, `<s>` where the segment has none.

        segments [a b] [c], n = 2  ->  targets         a    b    </s> c    </s>
                                       context[:, 0]   <s>  <s>  a    <s>  <s>
                                       context[:, 1]   <s>  a    b    <s>  c
    """
    lengths = np.fromiter((len(s) + 1 for s in segments), np.int64, len(segments))  # (S,) targets per segment
    ends = np.cumsum(lengths)  # (S,) one past each segment's `</s>`
    tgt = np.full(int(ends[-1]), eos, np.int64)  # (T,)
    is_token = np.ones(len(tgt), bool)
    is_token[ends - 1] = False
    tgt[is_token] = np.concatenate(segments)
    pos = np.arange(len(tgt)) - np.repeat(ends - lengths, lengths)  # (T,) position in its segment
    back = np.arange(n, 0, -1)  # (n,) how far back each context column reads, oldest first
    src = np.arange(len(tgt))[:, None] - back  # (T, n)
    ctx = np.where(pos[:, None] >= back, tgt[np.maximum(src, 0)], bos)
    return ctx, tgt


class StepsGraph(GraphModel):
    """A recurrent model's steps graph over V2 (`<name>.steps`, training/export/lm_steps.py), bounded as its
    model is: token ids within the vocabulary, at most max_batch_size rows, and at most max_sequence_tokens
    steps per call (K, the uniforms' second axis: the call's time and its logits (B, K, V) grow with it)."""

    def index_bounds(self) -> dict[str, tuple[int, int]]:
        logits = next(o for o in self.card.outputs if o.name == "logits")  # (B, K, V)
        return {"token": (0, logits.shape[-1] - 1)}

    def check_values(self, inputs) -> None:
        self.check_rows(inputs["token"].shape[0])
        steps, limit = inputs["uniforms"].shape[1], self.settings.max_sequence_tokens
        if steps > limit:
            raise BadInput(f"input \"uniforms\": at most {limit} steps per row (axis 1), got {steps}")
        super().check_values(inputs)
