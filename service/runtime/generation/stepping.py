"""One step of a language-model graph, behind one interface, so the scheduler never branches on family.

A sequence is `(state, pending)`: `pending` is its newest token, which the model has not read yet, and
`state` is what the model has read so far:

* recurrent (rnn/lstm/gru): the hidden state(s) after reading every earlier token, as a row handle
  `(batch state, b)`: row b of a step's (layers, B, hidden) outputs;
* n-gram: the N-1 tokens before `pending`, (N-1,) int64 (`<s>`-padded).

`start(prompts)` reads each new sequence's prompt (the prefill) -> its state after the whole prompt and the
logits (V,) of its first token, which the scheduler samples at once (the prefill's own last position, as
LLM servers do: no extra step for the first token). Recurrent models read identical prompts in a call once,
and a prompt read before comes from their prompt cache (prompt_cache.py). `prefill(prompts)` is the same
work one graph call at a time (a generator whose return value is start's), so that the scheduler can step
the sequences already generating between the calls of a long prefill.
`step(states, pending)` reads one pending token per sequence for B sequences at once -> logits (B, V) of the
next token, and the B sequences' new states as one sequence of row states (`states[b]` is row b's). Given
back whole to the next step (the same rows in the same order, the scheduler's usual case), it is fed as it
is: no per-row work; a list of rows from different steps is gathered. The graphs are row-independent (the
float ones bit for bit; see the test), so a row's logits do not depend on who else is in the batch.

The prompt rules (also used by /score, so generation and scoring read text the same way):
* char models read paragraphs, one per line, after a "\\n" (a paragraph start). The prompt's last paragraph
  stays open (is continued) unless the prompt ends with a newline; a trailing space is kept as one space.
* word n-grams read sentences, each padded with `<s>`. The last sentence is continued unless it is finished
  (ends with . ! or ?, then any closing quotes), in which case a new sentence starts.
* characters and words outside the vocabulary become `<unk>`.
"""

from __future__ import annotations

from typing import Any, Callable, Generator

import numpy as np

from service.runtime.generation.prompt_cache import PromptCache
from zooserve.card import ModelCard
from zooserve.text import CLOSERS, SENTENCE_END, Vocab, char_stream

State = Any
# Prompt tokens per prefill call, and per turn of the scheduler's loop: it steps the sequences already
# generating between turns, and a turn ends once its calls have read this many tokens per row (short prompts
# of several lengths share one; a turn reads fewer than twice this), so this bounds how long a prefill stalls
# them: a call of 128 tokens is about 12 ms for one island-lstm row on the 2-core AVX2 EPYC, where a prompt
# at the 8,000-character limit (7,905 tokens) held them 0.74 s. The calls' fixed costs add little: that prompt is read in 0.81 s in calls of 128, 0.79 s in
# calls of 1024 (medians of 5). It also bounds memory, as the graph's buffers and its logits output
# (G, t, V) grow with t (64 such prompts raised the peak RSS by 804 MB in one call, 107 MB in calls of 1024).
PREFILL_CHUNK = 128
RunFn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]
Prefill = Generator[None, None, list]  # a prefill in graph calls: see `prefill` below


def advance(calls: Prefill) -> list | None:
    """A prefill's next graph call -> None while more remain, its return value once the last is made."""
    try:
        next(calls)
    except StopIteration as done:
        return done.value
    return None


def run_prefill(calls: Prefill) -> list:
    """A prefill's calls, all at once -> its return value."""
    while (out := advance(calls)) is None:
        pass
    return out


def zero_state(card: ModelCard, batch: int = 1) -> dict[str, np.ndarray]:
    """A recurrent graph's initial state inputs (every input after `tokens`): zeros (layers, batch, hidden)."""
    return {s.name: np.zeros([batch if d == -1 else d for d in s.shape], np.float32) for s in card.inputs[1:]}


def primed(vocab: Vocab, ids: np.ndarray) -> np.ndarray:
    """Char ids after a paragraph start ("\\n"), which is how every training paragraph began."""
    return np.concatenate(([vocab.index["\n"]], ids)).astype(np.int64)


def bos_padded(vocab: Vocab, n: int, seq: np.ndarray) -> np.ndarray:
    """A sentence (or char paragraph) as an n-gram model reads it: `n` `<s>` then its ids."""
    return np.concatenate(([vocab.id(vocab.bos)] * n, seq)).astype(np.int64)


def token_texts(vocab: Vocab) -> tuple[str, ...]:
    """Each token as it reads in text: the vocabulary, with the end token as its `eos_text` ("\\n")."""
    eos = vocab.id(vocab.eos)
    return tuple(vocab.eos_text if i == eos and vocab.eos_text else t for i, t in enumerate(vocab.tokens))


def _open_char_text(text: str) -> str:
    """The prompt as the char models read it, its last paragraph left open (see the module docstring)."""
    stream = char_stream(text)
    if text.endswith("\n") or not stream:
        return stream
    return stream[:-1] + (" " if text[-1] in " \t" else "")


class RecurrentStep:
    eos: int | None = None  # char RNNs have no end token: "\n" is just a paragraph break

    def __init__(self, card: ModelCard, vocab: Vocab, run: RunFn, steps_run: RunFn | None = None, *,
                 cache: PromptCache | None = None):
        self.card, self.vocab, self.run = card, vocab, run
        self.steps_run = steps_run  # the card's steps graph (several tokens per call), if it has one
        # The states after whole prompts (capacity 0, as when none is given: none kept).
        self.cache = cache if cache is not None else PromptCache(0, card.name)
        self.texts = token_texts(vocab)  # id -> how the token reads in generated text
        self.state_in = [s.name for s in card.inputs[1:]]  # h0 (, c0)
        self.state_out = [s.name for s in card.outputs[1:]]  # hn (, cn), in the same order
        self.logits = card.outputs[0].name

    def encode(self, text: str) -> tuple[np.ndarray, int]:
        """The ids to start from (primed) and how many of them are the prompt's own."""
        ids = self.vocab.encode(_open_char_text(text))
        return primed(self.vocab, ids), len(ids)

    def start(self, prompts: list[np.ndarray]) -> list[tuple[State, np.ndarray]]:
        """Blocking: for each prompt (T,), T >= 1, read all its ids from a zero state -> (state, logits (V,))."""
        return run_prefill(self.prefill(prompts))

    def prefill(self, prompts: list[np.ndarray]) -> Prefill:
        """`start`'s work, about PREFILL_CHUNK prompt tokens per `next()`: it yields between graph calls once
        the calls since the last yield have read that many (never after the last call), and returns `start`'s
        list. Distinct prompts of equal length go through the graph together, tokens (B, T): one call instead
        of B (a prefill of T tokens costs T steps inside the graph; a long one is read PREFILL_CHUNK tokens per
        call); prompts of other lengths are further calls, in the same turn while the budget lasts (a burst of
        32 prompts of 32 lengths is ~7 turns of the scheduler's loop, not 32, each with the batch's steps in
        between); identical prompts are read once, and one read before may come from the prompt cache (then
        without a call)."""
        out: list[tuple[State, np.ndarray] | None] = [None] * len(prompts)
        todo: dict[bytes, list[int]] = {}  # each distinct prompt the graph must read -> the rows that sent it
        for i, ids in enumerate(prompts):
            key = self.cache.key(ids)
            if (hit := self.cache.get(key)) is not None:
                out[i] = hit
            else:
                todo.setdefault(key, []).append(i)
        self.cache.count(hits=len(prompts) - len(todo), misses=len(todo))
        by_length: dict[int, list[tuple[bytes, list[int]]]] = {}
        for key, rows in todo.items():
            by_length.setdefault(len(prompts[rows[0]]), []).append((key, rows))
        read = 0  # prompt tokens (per row) read since the last yield
        for groups in by_length.values():
            tokens = np.stack([prompts[rows[0]] for _, rows in groups])  # (G, T)
            state = zero_state(self.card, len(groups))
            for lo in range(0, tokens.shape[1], PREFILL_CHUNK):  # each chunk from the state the last ended in
                if read >= PREFILL_CHUNK:
                    yield
                    read = 0
                chunk = tokens[:, lo:lo + PREFILL_CHUNK]
                read += chunk.shape[1]
                res = self.run({"tokens": chunk, **state})
                state = {i: res[o] for i, o in zip(self.state_in, self.state_out)}
            logits = res[self.logits][:, -1, :]  # (G, V)
            for g, (key, rows) in enumerate(groups):
                # Copies: a row's state and logits alone, not views that keep the whole (G, t, V) output alive.
                state_g = ({name: array[:, g:g + 1].copy() for name, array in state.items()}, 0)
                entry = self.cache.put(key, (state_g, logits[g].copy()))
                for row in rows:
                    out[row] = entry
        return out

    def _gather(self, states: list[State]) -> dict[str, np.ndarray]:
        """Rows -> (layers, B, hidden) per state input: one take per run of rows from the same batch."""
        runs: list[tuple[dict, list[int]]] = []
        for src, b in states:
            if runs and runs[-1][0] is src:
                runs[-1][1].append(b)
            else:
                runs.append((src, [b]))
        return {name: np.concatenate([src[name][:, rows] for src, rows in runs], axis=1) for name in self.state_in}

    def step(self, states: BatchStates | list[State], pending: np.ndarray) -> tuple[np.ndarray, BatchStates]:
        feeds = {"tokens": pending.astype(np.int64, copy=False)[:, None]}  # (B, 1)
        feeds |= states.arrays if type(states) is BatchStates else self._gather(states)
        out = self.run(feeds)
        state = {i: out[o] for i, o in zip(self.state_in, self.state_out)}
        return out[self.logits][:, -1, :], BatchStates(state, len(pending))  # logits (B, V)

    def steps(self, states: BatchStates | list[State], pending: np.ndarray, uniforms: np.ndarray,
              temperature: np.ndarray) -> tuple[np.ndarray, np.ndarray, BatchStates]:
        """k = uniforms.shape[1] tokens per row in one call of the steps graph (training/export/lm_steps.py),
        sampled inside by the plain rule with each row's numbers (B, k) and temperature (B,) -> tokens (B, k),
        logits (B, k, V), and the states after reading every token but the last (the next pending one)."""
        feeds = {"token": pending.astype(np.int64, copy=False), "uniforms": uniforms, "temperature": temperature}
        feeds |= states.arrays if type(states) is BatchStates else self._gather(states)
        out = self.steps_run(feeds)
        state = {i: out[o] for i, o in zip(self.state_in, self.state_out)}
        return out["tokens"], out["logits"], BatchStates(state, len(pending))


class BatchStates:
    """One step's state outputs, (layers, B, hidden) per state input, as B row handles `(arrays, b)`: row b
    is sliced only when a later batch gathers rows of different steps (no per-row work on a step)."""

    __slots__ = ("arrays", "size")

    def __init__(self, arrays: dict[str, np.ndarray], size: int):
        self.arrays, self.size = arrays, size

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, b: int) -> State:
        if not 0 <= b < self.size:
            raise IndexError(b)
        return self.arrays, b

    def __iter__(self):
        return ((self.arrays, b) for b in range(self.size))


class NgramStep:
    steps_run = None  # one token per call: an n-gram step is a table lookup, cheaper than a Loop's overhead

    def __init__(self, card: ModelCard, vocab: Vocab, run: RunFn, steps_run: None = None, *, cache: None = None):
        # No prompt cache: a prefill is one table lookup per prompt.
        self.card, self.vocab, self.run = card, vocab, run
        self.texts = token_texts(vocab)  # id -> how the token reads in generated text
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

    def start(self, prompts: list[np.ndarray]) -> list[tuple[State, np.ndarray]]:
        """Each prompt's last N-1 tokens (`<s>`-padded) -> (that context (N-1,), log_probs (V,) of the first
        token): one graph call for all of them."""
        ctx = np.stack([bos_padded(self.vocab, self.n, ids)[-self.n:] for ids in prompts])  # (B, N-1)
        logp = self.run({self.input: ctx})[self.output]  # (B, V)
        return [(ctx[b], logp[b]) for b in range(len(prompts))]

    def prefill(self, prompts: list[np.ndarray]) -> Prefill:
        """`start` as RecurrentStep.prefill gives it: here one call, so nothing to yield between."""
        return self.start(prompts)
        yield  # unreached: it makes this a generator, whose one call runs at the first next()

    def step(self, states: np.ndarray | list[State], pending: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """states: the last step's contexts (B, N-1) as they are, or a list of rows (N-1,) to stack."""
        last = states if type(states) is np.ndarray else np.stack(states)
        ctx = np.concatenate([last[:, 1:], pending.astype(np.int64, copy=False)[:, None]], axis=1)  # (B, N-1)
        out = self.run({self.input: ctx})
        return out[self.output], ctx  # log_probs (B, V): already normalised, sampled like logits; row b: ctx[b]
