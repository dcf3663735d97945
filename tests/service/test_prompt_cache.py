"""The prefill and its prompt cache: a prompt read once (or twice in one prefill) is not read again; its state
and first logits are those a fresh prefill gives; the least recently used prompt goes first; entries hold no
views of larger arrays; a long prompt read in chunks ends in the state of one pass; and through the server,
answers are the same with the cache as without it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from service.runtime.engine.session import OnnxModel, session_options
from service.runtime.generation import stepping
from service.runtime.generation.prompt_cache import PromptCache
from service.runtime.generation.stepping import RecurrentStep
from zooserve.card import load_card
from zooserve.text import Vocab

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "models" / "island-lstm" / "1"


@pytest.fixture(scope="module")
def parts():
    card = load_card(FOLDER)
    model = OnnxModel(FOLDER / "model.onnx", card, providers=["CPUExecutionProvider"], options=session_options(1, 1))
    return card, Vocab.load(FOLDER / "vocab.json"), model


def stepper(parts, capacity: int, name: str) -> tuple[RecurrentStep, list[tuple[int, int]]]:
    """A stepper with a cache of `capacity` prompts (its metrics labelled `name`), and the (B, T) of every
    prefill call the graph makes."""
    card, vocab, model = parts
    calls: list[tuple[int, int]] = []

    def run(feeds):
        calls.append(feeds["tokens"].shape)
        return model.run(feeds)

    return RecurrentStep(card, vocab, run, cache=PromptCache(capacity, name)), calls


def counted(name: str) -> tuple[float, float]:
    got = [REGISTRY.get_sample_value("zooserve_generation_prompt_cache_total", {"model": name, "result": r})
           for r in ("hit", "miss")]
    return tuple(x or 0.0 for x in got)


def ids(step: RecurrentStep, text: str) -> np.ndarray:
    return step.encode(text)[0]


def test_a_prompt_is_read_once_and_its_cached_state_is_a_fresh_prefills(parts):
    step, calls = stepper(parts, 8, "cache-once")
    a, b = ids(step, "The engineer said"), ids(step, "The reporter said")
    assert len(a) == len(b)
    first = step.start([a, a, b])
    assert calls == [(2, len(a))]  # two distinct prompts of one length, read together once
    assert first[0] is first[1]  # the duplicate shares the entry
    again = step.start([b, a])
    assert calls == [(2, len(a))] and again[0] is first[2] and again[1] is first[0]  # no graph call
    assert counted("cache-once") == (3.0, 2.0)  # hits: a's duplicate, then b and a; misses: a and b once
    fresh, _ = stepper(parts, 0, "cache-once-off")
    (state, logits), = fresh.start([a])
    (cached_state, cached_logits) = first[0]
    # The graph's rows do not depend on the batch (test_scheduler): what b's company gave a is a's alone.
    np.testing.assert_allclose(cached_logits, logits, rtol=0, atol=1e-5)
    for name in step.state_in:
        np.testing.assert_allclose(cached_state[0][name], state[0][name], rtol=0, atol=1e-5)


def test_the_least_recently_used_prompt_goes_first_and_entries_own_their_arrays(parts):
    step, calls = stepper(parts, 2, "cache-lru")
    a, b, c = (ids(step, t) for t in ("Cyrus", "Herbert", "Neb"))
    for prompt in (a, b, a, c):  # a used after b: b is the least recent when c comes
        step.start([prompt])
    assert len(calls) == 3 and len(step.cache) == 2
    step.start([a])
    assert len(calls) == 3  # kept
    step.start([b])
    assert len(calls) == 4  # dropped, read again
    (state, _), logits = step.start([c])[0], step.start([c])[0][1]
    # Copies, not views: a view would keep its prefill's whole (B, T, V) logits and state batch alive.
    assert logits.base is None and all(x.base is None for x in state[0].values())
    assert logits.shape == (len(step.vocab),)


def test_capacity_zero_keeps_nothing(parts):
    step, calls = stepper(parts, 0, "cache-off")
    a = ids(step, "Pencroft")
    step.start([a])
    step.start([a, a])
    assert calls == [(1, len(a)), (1, len(a))] and len(step.cache) == 0
    assert counted("cache-off") == (1.0, 2.0)  # the duplicate in one prefill is still read once


def test_a_long_prompt_is_read_in_chunks_to_the_state_of_one_pass(parts, monkeypatch):
    """PREFILL_CHUNK bounds each call's tokens (the logits output grows with them); each chunk starts from
    the state the last ended in, so the first token's logits and the state are one pass's."""
    text = "The engineer and the sailor went up the river to the granite wall. " * 2
    whole, _ = stepper(parts, 0, "prefill-whole")
    (state, logits), = whole.start([ids(whole, text)])
    monkeypatch.setattr(stepping, "PREFILL_CHUNK", 16)
    chunked, calls = stepper(parts, 0, "prefill-chunks")
    prompt = ids(chunked, text)
    (chunk_state, chunk_logits), = chunked.start([prompt])
    assert len(prompt) % 16 and [t for _, t in calls] == [16] * (len(prompt) // 16) + [len(prompt) % 16]
    np.testing.assert_allclose(chunk_logits, logits, rtol=0, atol=1e-5)
    for name in chunked.state_in:
        np.testing.assert_allclose(chunk_state[0][name], state[0][name], rtol=0, atol=1e-5)


def test_prompts_of_several_lengths_share_a_turn_up_to_the_chunk_of_tokens(parts, monkeypatch):
    """One graph call per prompt length, but a yield (a turn of the scheduler's loop, with the batch's steps in
    between) only once the calls since the last have read PREFILL_CHUNK tokens: a burst of many short prompts
    of different lengths is not a turn per length. A long prompt still yields between its chunks."""
    monkeypatch.setattr(stepping, "PREFILL_CHUNK", 16)
    step, calls = stepper(parts, 0, "prefill-turns")
    words = "The engineer and the sailor went up the river to the granite wall".split()
    short = [ids(step, " ".join(words[:n])) for n in (1, 2, 3, 4, 5)]
    long = ids(step, " ".join(words))
    turns: list[list[int]] = []  # the prompt tokens per row of each call, turn by turn
    prefill = step.prefill(short + [long])
    try:
        while True:
            before = len(calls)
            next(prefill)
            turns.append([t for _, t in calls[before:]])
    except StopIteration as stop:
        turns.append([t for _, t in calls[before:]])
        starts = stop.value
    lengths = {len(p) for p in short + [long]}  # one group of calls per length
    assert len(lengths) == 6 and max(lengths) == len(long) > 2 * 16
    chunks = [c for n in lengths for c in [16] * (n // 16) + ([n % 16] if n % 16 else [])]
    assert sorted(t for turn in turns for t in turn) == sorted(chunks)
    for turn in turns[:-1]:  # each turn reads calls until PREFILL_CHUNK tokens are read, then yields
        assert sum(turn) >= 16 and sum(turn[:-1]) < 16
    assert len(turns) < len(calls)  # fewer turns than calls
    assert [len(s) for s in starts] == [2] * 6  # a (state, logits) for each prompt
    whole, _ = stepper(parts, 0, "prefill-turns-whole")
    for got, want in zip(starts, whole.start(short + [long])):  # the same as one pass each
        np.testing.assert_allclose(got[1], want[1], rtol=0, atol=1e-5)


def test_answers_are_the_same_with_the_cache_as_without_it(serve, tmp_path):
    """Identical prompts, their own seeds: the same texts and log-probabilities whether the state came
    from the cache or a prefill of its own, and the cache counted its hits."""
    (tmp_path / "island-lstm").symlink_to(ROOT / "models" / "island-lstm")
    path = "/v2/models/island-lstm/generate"
    docs = [{"text_input": "The sailor and the engineer",
             "parameters": {"seed": s, "max_tokens": 24, "temperature": 0.9, "logprobs": 1}} for s in range(6)]

    async def body(client, app):
        before = counted("island-lstm")
        answers = [(await client.post(path, json=docs[0])).json()]  # a prefill of its own
        answers += [r.json() for r in await asyncio.gather(*(client.post(path, json=d) for d in docs[1:]))]
        after = counted("island-lstm")
        return answers, (after[0] - before[0], after[1] - before[1])

    cached, (hits, misses) = serve(tmp_path, body)
    uncached, (_, misses_off) = serve(tmp_path, body, generation_prompt_cache=0)
    assert hits == 5 and misses == 1
    assert misses_off >= 2  # without the cache, the first and the rest (at least one prefill) are read
    for a, b in zip(cached, uncached):
        assert a["text_output"] == b["text_output"]
        assert a["details"]["logprobs"] == b["details"]["logprobs"]
