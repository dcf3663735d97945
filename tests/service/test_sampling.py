"""Sampling: greedy, temperature, top-k, top-p, repetition penalty, seeds that do not depend on the batch,
reported log-probabilities, and parameter validation."""

from __future__ import annotations

import numpy as np
import pytest

from service.runtime.errors import BadInput
from zooserve.numeric import log_softmax
from service.runtime.generation.sampling import (Draws, SamplingParams, Uniforms, choose, filtered_logprobs,
                                                 generator, penalise, step)

V = 50


def logits(seed: int = 0, rows: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 2, size=(rows, V)).astype(np.float32)


def draws(row, params, n=4000, seed=0, history=()):
    rng = np.random.default_rng(seed)
    return np.bincount([choose(row, params, np.array(history, dtype=np.int64), rng) for _ in range(n)], minlength=V)


def test_temperature_zero_is_argmax_with_lowest_id_on_ties():
    row = np.zeros(V, np.float32)
    row[[7, 9]] = 3.0
    assert choose(row, SamplingParams(temperature=0), np.array([], np.int64), np.random.default_rng(0)) == 7


def test_draws_follow_the_softmax_at_temperature_one():
    row = logits(1)[0]
    counts = draws(row, SamplingParams(), n=20000)
    expected = np.exp(log_softmax(row)) * 20000
    big = expected > 200  # a chi-square-like check on the well-populated tokens
    assert np.all(np.abs(counts[big] - expected[big]) < 5 * np.sqrt(expected[big]))


def test_top_k_keeps_exactly_k_tokens():
    row = logits(2)[0]
    counts = draws(row, SamplingParams(top_k=3), n=3000)
    assert set(np.flatnonzero(counts)) <= set(np.argsort(-row)[:3])
    lp = filtered_logprobs(row, SamplingParams(top_k=3), np.array([], np.int64))
    assert np.isfinite(lp).sum() == 3 and np.isclose(np.exp(lp).sum(), 1.0)


def test_top_p_keeps_the_smallest_set_reaching_p():
    row = np.log(np.array([0.5, 0.3, 0.15, 0.05] + [1e-9] * (V - 4)))
    lp = filtered_logprobs(row, SamplingParams(top_p=0.7), np.array([], np.int64))
    assert np.flatnonzero(np.isfinite(lp)).tolist() == [0, 1]  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7
    np.testing.assert_allclose(np.exp(lp[:2]), [0.5 / 0.8, 0.3 / 0.8], rtol=1e-6)
    one = filtered_logprobs(row, SamplingParams(top_p=0.01), np.array([], np.int64))
    assert np.isfinite(one).sum() == 1  # the most likely token always survives


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits():
    row = np.array([2.0, -2.0, 1.0] + [0.0] * (V - 3), np.float32)
    out = penalise(row, np.array([0, 1, 1]), 2.0)
    assert out[:3].tolist() == [1.0, -4.0, 1.0]
    greedy = SamplingParams(temperature=0, repetition_penalty=3.0)
    assert choose(row, greedy, np.array([0]), np.random.default_rng(0)) == 2


def test_a_rows_choice_does_not_depend_on_the_other_rows():
    params = SamplingParams(temperature=0.8, top_p=0.9, seed=42)
    alone_draws = Draws([Uniforms(generator(42)[0])])
    batch = logits(3, rows=5)
    alone = [step(batch[2:3], [params], [np.array([], np.int64)], alone_draws).tokens[0] for _ in range(20)]
    draws = Draws([Uniforms(generator(s)[0]) for s in (1, 2, 42, 4, 5)])
    together = [step(batch, [SamplingParams(temperature=t) for t in (0.5, 1.0)] + [params]
                     + [SamplingParams(top_k=2)] * 2, [np.array([], np.int64)] * 5, draws).tokens[2] for _ in range(20)]
    assert alone == together


def test_logprobs_are_the_models_own():
    batch = logits(4, rows=2)
    params = [SamplingParams(temperature=0.3, top_k=2, logprobs=5), SamplingParams(temperature=0)]
    tokens, choices = step(batch, params, [np.array([], np.int64)] * 2, Draws([Uniforms(np.random.default_rng(0))] * 2))
    model = log_softmax(batch)
    assert choices[0].token == tokens[0] and choices[0].logprob == pytest.approx(model[0, choices[0].token])
    assert [t for t, _ in choices[0].top] == np.argsort(-model[0])[:5].tolist()
    assert list(choices) == [0] and tokens[1] == int(np.argmax(batch[1]))  # row 1 asked for none


def test_generator_reports_the_seed_it_used():
    rng, seed = generator(None)
    again, same = generator(seed)
    assert same == seed and rng.random() == again.random()


@pytest.mark.parametrize("kw", [{"temperature": -1}, {"top_k": -1}, {"top_k": 2.5}, {"top_p": 0}, {"top_p": 1.5},
                                {"repetition_penalty": 0}, {"seed": -3}, {"seed": True}, {"logprobs": 21},
                                {"temperature": "hot"}])
def test_bad_parameters_are_bad_input(kw):
    with pytest.raises(BadInput, match=next(iter(kw))):
        SamplingParams(**kw)


def test_uniforms_in_blocks_are_the_generators_own_sequence():
    blocks, calls = Uniforms(np.random.default_rng(7)), np.random.default_rng(7)
    numbers = [calls.random() for _ in range(200)]  # one call each
    taken = [blocks.take(1), blocks.take(70), blocks.take(2)]  # across blocks of 64
    blocks.give_back(taken[-1][1:])  # the last number taken, unused, comes next again
    taken.append(blocks.take(127))
    assert np.concatenate(taken).tolist() == numbers[:73] + numbers[72:199]


def test_a_row_without_logprobs_reports_none():
    _, choices = step(logits(5, rows=2), [SamplingParams(logprobs=0), SamplingParams()], [np.array([], np.int64)] * 2,
                      Draws([Uniforms(np.random.default_rng(s)) for s in (0, 1)]))
    assert list(choices) == [0] and np.isfinite(choices[0].logprob) and choices[0].top == ()


def test_a_rows_numbers_are_its_generators_whatever_batches_it_passes_through():
    """Draws reads the rows' numbers a column at a time; a row that leaves a batch (release) and joins
    another, in other company, still reads its generator's sequence, across refills."""
    row = Uniforms(np.random.default_rng(3))
    got = []
    for size, steps in ((1, 30), (3, 50), (2, 70)):  # the row is always first; its company changes
        draws = Draws([row] + [Uniforms(np.random.default_rng(100 + size + k)) for k in range(size - 1)])
        got += [draws.next().item(0) for _ in range(steps)]
        draws.release()
    assert got == np.random.default_rng(3).random(150).tolist()
