"""The batched sampling path gives every row the token `choose` gives it alone, for any mix of greedy and
tempered rows (the vectorised path reuses the step's softmax when every tempered row has temperature 1)."""

from __future__ import annotations

import numpy as np
import pytest

from service.runtime.generation.sampling import Draws, SamplingParams, Uniforms, choose, step


@pytest.mark.parametrize("temps", [(1.0,), (1.0, 1.0, 1.0), (0.0, 1.0, 0.7), (1.7, 0.5), (0.0,)])
@pytest.mark.parametrize("vocab", [80, 9204])
def test_batched_rows_equal_choose_alone(temps, vocab):
    rows = 24
    gen = np.random.default_rng(vocab + len(temps))
    for trial in range(20):
        logits = gen.normal(0, 3, (rows, vocab)).astype(np.float32)
        params = [SamplingParams(temperature=temps[i % len(temps)]) for i in range(rows)]
        history = [np.array([], np.int64)] * rows
        draws = Draws([Uniforms(np.random.default_rng(trial * 100 + i)) for i in range(rows)])
        batched = step(logits, params, history, draws).tokens.tolist()
        alone = [choose(logits[i], params[i], history[i], np.random.default_rng(trial * 100 + i)) for i in range(rows)]
        assert batched == alone
