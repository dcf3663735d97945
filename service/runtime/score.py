"""The score task: the log-probability a language model gives each token of a text, and their sum.

n-gram models read the text as training did: one `<s> ... </s>` sequence per sentence (word models) or
paragraph (char models), so their figures equal what the ARPA file gives for the same text. Each token's
context (the N-1 tokens before it, `<s>`-padded) is one row of the graph's input; rows go through the
model's batcher in chunks of its batch size, so scoring shares batches with other requests.

Recurrent models read the text as one stream of paragraphs, each ended by "\\n", starting from a zero state
primed with "\\n" (a paragraph start), so that every character, the first included, is scored.
"""

from __future__ import annotations

import math

import numpy as np

from service.runtime.errors import BadInput, shown, task_noun
from service.runtime.lm_step import bos_padded, primed, zero_state
from service.runtime.repository import Loaded
from zooserve.numeric import log_softmax

MAX_CHARS = 100_000


async def _ngram(loaded: Loaded, text: str, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
    vocab, n = loaded.vocab, loaded.card.preprocess.context_length
    eos = vocab.id(vocab.eos)
    contexts, targets = [], []
    for seq in vocab.segments(text):
        full = np.append(bos_padded(vocab, n, seq), eos)
        contexts.append(np.lib.stride_tricks.sliding_window_view(full[:-1], n))  # (len + 1, n)
        targets.append(full[n:])
    if not targets:
        raise BadInput("the text has no tokens to score")
    ctx, tgt = np.concatenate(contexts), np.concatenate(targets)
    step = loaded.batcher.max_batch_size
    logp = []
    for i in range(0, len(tgt), step):
        out = await loaded.batcher.submit({"context": np.ascontiguousarray(ctx[i:i + step])}, timeout_s=timeout_s)
        rows = out["log_probs"]  # (rows, V) log-probabilities
        logp.append(rows[np.arange(len(rows)), tgt[i:i + step]].astype(np.float64))
    return tgt, np.concatenate(logp)


async def _recurrent(loaded: Loaded, text: str, timeout_s: float) -> tuple[np.ndarray, np.ndarray]:
    vocab = loaded.vocab
    ids = vocab.stream(text)
    if not len(ids):
        raise BadInput("the text has no tokens to score")
    tokens = primed(vocab, ids)[None, :-1]  # (1, T): primed with a paragraph start
    feeds = {"tokens": tokens, **zero_state(loaded.card)}  # the state, (layers, 1, hidden) zeros
    out = await loaded.batcher.submit(feeds, timeout_s=timeout_s)
    logp = log_softmax(out["logits"][0])  # (T, V)
    return ids, logp[np.arange(len(ids)), ids]


async def score_text(loaded: Loaded, text, *, timeout_s: float) -> dict:
    card = loaded.card
    if card.task != "language-model" or loaded.vocab is None:
        raise BadInput(f"model {shown(card.name)} is {task_noun(card.task)}; /score serves char and word language models")
    if not isinstance(text, str) or not text.strip():
        raise BadInput('"text" must be a non-empty string')
    if len(text) > MAX_CHARS:
        raise BadInput(f'"text" has {len(text)} characters; the limit is {MAX_CHARS}')
    run = _ngram if card.family.startswith("ngram/") else _recurrent
    ids, logp = await run(loaded, text, timeout_s)
    vocab, total = loaded.vocab, float(logp.sum())
    spelled = {vocab.id(vocab.eos): vocab.eos_text} if vocab.eos else {}
    ce = -total / len(ids)
    return {
        "model": card.name, "version": str(card.version),
        "tokens": [{"token": spelled.get(int(t), vocab.tokens[int(t)]), "id": int(t), "logprob": float(lp)}
                   for t, lp in zip(ids, logp)],
        "token_count": len(ids), "logprob": total, "cross_entropy": ce,
        "bits_per_token": ce / math.log(2), "perplexity": math.exp(ce),
    }
