"""Language models: generation (continuous batching on the model's scheduler) and scoring.

Scoring gives the log-probability the model assigns each token of a text, and their sum.

n-gram models read the text as training did: one `<s> ... </s>` sequence per sentence (word models) or
paragraph (char models), so their figures equal what the ARPA file gives for the same text. Each token's
context (the N-1 tokens before it, `<s>`-padded) is one row of the graph's input; rows go through the
model's batcher in chunks of its batch size, so scoring shares batches with other requests.

Recurrent models read the text as one stream of paragraphs, each ended by "\\n", starting from a zero state
primed with "\\n" (a paragraph start), so that every character, the first included, is scored.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np

from service.runtime.errors import BadInput, ModelLoadError
from service.runtime.generation.request import GenRequest, Generation
from service.runtime.generation.scheduler import Scheduler
from service.runtime.generation.stepping import NgramStep, RecurrentStep, bos_padded, primed, zero_state
from service.runtime.tasks.base import ServedModel
from zooserve.numeric import log_softmax
from zooserve.text import Vocab

MAX_CHARS = 100_000
SCORE_CHUNK = 1024  # tokens per graph call when a recurrent model scores a text


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

    def __init__(self, card, session, *, files, settings, arrivals=None):
        super().__init__(card, session, files=files, settings=settings, arrivals=arrivals)
        self.vocab = card_vocab(card, files)
        self.stepper = self.stepper_class(card, self.vocab, session.run)
        self.scheduler = Scheduler(self.stepper, model=card.name, max_active=settings.generation_max_active,
                                   max_waiting=settings.generation_max_waiting)

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
        vocab, total = self.vocab, float(logp.sum())
        spelled = {vocab.id(vocab.eos): vocab.eos_text} if vocab.eos else {}
        ce = -total / len(ids)
        return {
            "model": self.name, "version": str(self.version),
            "tokens": [{"token": spelled.get(int(t), vocab.tokens[int(t)]), "id": int(t), "logprob": float(lp)}
                       for t, lp in zip(ids, logp)],
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
    """ngram/*: a context (B, N-1) in, log_probs (B, V) of the next token out."""

    stepper_class = NgramStep

    async def token_logprobs(self, text: str, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
        vocab, n = self.vocab, self.card.preprocess.context_length
        eos = vocab.id(vocab.eos)
        contexts, targets = [], []
        for seq in vocab.segments(text):
            full = np.append(bos_padded(vocab, n, seq), eos)
            contexts.append(np.lib.stride_tricks.sliding_window_view(full[:-1], n))  # (len + 1, n)
            targets.append(full[n:])
        if not targets:
            raise BadInput("the text has no tokens to score")
        ctx, tgt = np.concatenate(contexts), np.concatenate(targets)
        step = self.batcher.max_batch_size
        logp = []
        for i in range(0, len(tgt), step):
            out = await self.batcher.submit({"context": np.ascontiguousarray(ctx[i:i + step])}, timeout_s=timeout_s)
            rows = out["log_probs"]  # (rows, V) log-probabilities
            logp.append(rows[np.arange(len(rows)), tgt[i:i + step]].astype(np.float64))
        return tgt, np.concatenate(logp)
