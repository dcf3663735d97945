"""One step of a language-model graph, behind one interface, so the scheduler never branches on family.

A sequence is `(state, pending)`: `pending` is its newest token, which the model has not read yet, and
`state` is what the model has read so far:

* recurrent (rnn/lstm/gru): the hidden state(s), each (layers, 1, hidden), after reading every earlier token;
* n-gram: the N-1 tokens before `pending`, (N-1,) int64.

`step(states, pending)` reads one pending token per sequence for B sequences at once -> logits (B, V) of the
next token, and each sequence's new state. The graphs are row-independent (the float ones bit for bit;
see the test), so a row's logits do not depend on who else is in the batch.

The prompt rules (also used by /score, so generation and scoring read text the same way):
* char models read paragraphs, one per line, after a "\\n" (a paragraph start). The prompt's last paragraph
  stays open (is continued) unless the prompt ends with a newline; a trailing space is kept as one space.
* word n-grams read sentences, each padded with `<s>`. The last sentence is continued unless it is finished
  (ends with . ! or ?, then any closing quotes), in which case a new sentence starts.
* characters and words outside the vocabulary become `<unk>`.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from service.card import ModelCard
from service.text import CLOSERS, SENTENCE_END, Vocab, char_stream

State = Any
RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def zero_state(card: ModelCard, batch: int = 1) -> dict[str, np.ndarray]:
    """A recurrent graph's initial state inputs (every input after `tokens`): zeros (layers, batch, hidden)."""
    return {s.name: np.zeros([batch if d == -1 else d for d in s.shape], np.float32) for s in card.inputs[1:]}


def primed(vocab: Vocab, ids: np.ndarray) -> np.ndarray:
    """Char ids after a paragraph start ("\\n"), which is how every training paragraph began."""
    return np.concatenate(([vocab.index["\n"]], ids)).astype(np.int64)


def bos_padded(vocab: Vocab, n: int, seq: np.ndarray) -> np.ndarray:
    """A sentence (or char paragraph) as an n-gram model reads it: `n` `<s>` then its ids."""
    return np.concatenate(([vocab.id(vocab.bos)] * n, seq)).astype(np.int64)


def _open_char_text(text: str) -> str:
    """The prompt as the char models read it, its last paragraph left open (see the module docstring)."""
    stream = char_stream(text)
    if text.endswith("\n") or not stream:
        return stream
    return stream[:-1] + (" " if text[-1] in " \t" else "")


class RecurrentStep:
    eos: int | None = None  # char RNNs have no end token: "\n" is just a paragraph break

    def __init__(self, card: ModelCard, vocab: Vocab, run: RunFn):
        self.card, self.vocab, self.run = card, vocab, run
        self.state_in = [s.name for s in card.inputs[1:]]  # h0 (, c0)
        self.state_out = [s.name for s in card.outputs[1:]]  # hn (, cn), in the same order
        self.logits = card.outputs[0].name

    def encode(self, text: str) -> tuple[np.ndarray, int]:
        """The ids to start from (primed) and how many of them are the prompt's own."""
        ids = self.vocab.encode(_open_char_text(text))
        return primed(self.vocab, ids), len(ids)

    def start(self, ids: np.ndarray) -> tuple[State, int]:
        """Blocking: read all but the last id from a zero state, at batch 1. ids: (T,), T >= 1."""
        state = zero_state(self.card)
        if len(ids) > 1:
            out = self.run({"tokens": ids[None, :-1], **state})  # tokens (1, T-1)
            state = {i: out[o] for i, o in zip(self.state_in, self.state_out)}
        return state, int(ids[-1])

    def step(self, states: list[State], pending: np.ndarray) -> tuple[np.ndarray, list[State]]:
        feeds = {"tokens": pending.astype(np.int64)[:, None]}  # (B, 1)
        for name in self.state_in:  # gather: (layers, B, hidden)
            feeds[name] = np.concatenate([s[name] for s in states], axis=1)
        out = self.run(feeds)
        new = [{i: out[o][:, b:b + 1] for i, o in zip(self.state_in, self.state_out)} for b in range(len(states))]
        return out[self.logits][:, -1, :], new  # logits (B, V)


class NgramStep:
    def __init__(self, card: ModelCard, vocab: Vocab, run: RunFn):
        self.card, self.vocab, self.run = card, vocab, run
        self.n = card.preprocess.context_length  # N-1
        self.eos = vocab.id(vocab.eos)  # the end of a sentence (word) or paragraph (char) ends generation
        self.input, self.output = card.inputs[0].name, card.outputs[0].name

    def _finished(self, seq: np.ndarray) -> bool:
        """A sentence is finished by . ! or ?, then any closing quotes (the rule `text.sentences` splits by)."""
        toks = self.vocab.decode(seq)
        while toks and toks[-1] in CLOSERS:
            toks.pop()
        return bool(toks) and toks[-1] in SENTENCE_END

    def encode(self, text: str) -> tuple[np.ndarray, int]:
        """The open sentence (word) or paragraph (char) the model continues, and the prompt's token count."""
        if self.vocab.kind == "char":
            stream = _open_char_text(text)  # each "\n" stands for the </s> that closed a paragraph
            return self.vocab.encode(stream.split("\n")[-1]), len(stream)
        segs = self.vocab.segments(text)
        count = sum(len(s) for s in segs)
        if not segs or self._finished(segs[-1]):
            return np.array([], np.int64), count
        return segs[-1], count

    def start(self, ids: np.ndarray) -> tuple[State, int]:
        full = bos_padded(self.vocab, self.n + 1, ids)
        return full[-self.n - 1:-1], int(full[-1])

    def step(self, states: list[State], pending: np.ndarray) -> tuple[np.ndarray, list[State]]:
        ctx = np.concatenate([np.stack(states)[:, 1:], pending.astype(np.int64)[:, None]], axis=1)  # (B, N-1)
        out = self.run({self.input: ctx})
        return out[self.output], list(ctx)  # log_probs (B, V): already normalised, sampled like logits


def stepper_for(card: ModelCard, vocab: Vocab | None, run: RunFn) -> RecurrentStep | NgramStep | None:
    """The step interface for a language model, or None for a model that cannot generate."""
    if card.task != "language-model" or vocab is None:
        return None
    return (NgramStep if card.family.startswith("ngram/") else RecurrentStep)(card, vocab, run)
