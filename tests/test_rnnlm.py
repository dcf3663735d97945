"""Recurrent LMs: the three cells, truncated-BPTT batches and state carrying, the stepping ONNX graph
(whole sequence, step by step, prompt in one call), and stream scoring."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.export import rnn_export
from training.export.onnx_export import session
from training.tasks.rnn_lm import StreamBatches, TBPTTObjective
from training.zoo.rnnlm import RNNLMConfig

V = 23


def tiny(cell: str, **kw):
    torch.manual_seed(0)
    return RNNLMConfig(cell=cell, vocab_size=V, embedding_dim=8, hidden_size=12, layers=2, **kw).build().eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_state_shapes_and_continuation(cell):
    m = tiny(cell)
    x = torch.randint(0, V, (3, 10))
    logits, *state = m(x)
    assert logits.shape == (3, 10, V)
    assert [tuple(s.shape) for s in state] == [(2, 3, 12)] * len(m.cfg.state_names)
    # Running 10 tokens at once equals running 6 then 4 with the state carried over.
    a, *mid = m(x[:, :6])
    b, *_ = m(x[:, 6:], *mid)
    torch.testing.assert_close(torch.cat([a, b], 1), logits, atol=1e-6, rtol=0)


def test_tied_weights_need_equal_sizes():
    m = RNNLMConfig(vocab_size=V, embedding_dim=12, hidden_size=12, tie_weights=True).build()
    assert m.head.weight is m.embedding.weight
    with pytest.raises(ValueError, match="embedding_dim == hidden_size"):
        RNNLMConfig(vocab_size=V, embedding_dim=8, hidden_size=12, tie_weights=True).build()
    with pytest.raises(ValueError, match="unknown cell"):
        RNNLMConfig(cell="transformer", vocab_size=V).build()


def test_stream_batches_continue_row_by_row():
    stream = np.arange(1000)
    batches = StreamBatches(stream, rows=4, bptt=30)
    windows = list(batches)
    assert len(windows) == len(batches)
    assert bool(windows[0][2]) and not any(bool(w[2]) for w in windows[1:])
    x = torch.cat([w[0] for w in windows], 1)
    y = torch.cat([w[1] for w in windows], 1)
    assert torch.equal(y, x + 1)  # targets are the next tokens
    assert torch.equal(x[1, 1:] - x[1, :-1], torch.ones(x.shape[1] - 1, dtype=x.dtype))  # one contiguous slice per row
    assert x[1, 0] == x[0, -1] + 1


def test_stream_offsets_move_between_epochs():
    batches = StreamBatches(np.arange(5000), rows=4, bptt=50, shuffle_offset=True, seed=1)
    starts = set()
    for epoch in range(1, 6):
        batches.set_epoch(epoch)
        starts.add(int(next(iter(batches))[0][0, 0]))
        assert len(list(batches)) == len(batches)
    assert len(starts) > 1


def test_tbptt_objective_carries_then_resets_the_state():
    m = tiny("lstm")
    obj = TBPTTObjective()
    x = torch.randint(0, V, (2, 8))
    first = obj(m, (x, x, torch.tensor(True)))
    carried = obj(m, (x, x, torch.tensor(False)))
    assert carried.count == 16 and not torch.isclose(first.loss, carried.loss)
    again = obj(m, (x, x, torch.tensor(True)))
    torch.testing.assert_close(again.loss, first.loss)
    assert all(not s.requires_grad for s in obj.state)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_onnx_graph_steps_like_pytorch(cell, tmp_path):
    m = tiny(cell, dropout=0.2)
    path = tmp_path / "m.onnx"
    rnn_export.export(m, path)
    stream = np.random.default_rng(0).integers(0, V, size=600)
    report = rnn_export.check_parity(m, path, stream)
    assert report.max_abs_diff <= 1e-4 and report.argmax_agreement == 1.0
    sess = session(path)
    shapes = {i.name: i.shape for i in sess.get_inputs()}
    assert shapes["tokens"] == ["batch", "time"] and shapes["h0"] == [2, "batch", 12]


def test_stream_nll_matches_pytorch(tmp_path):
    m = tiny("gru")
    path = tmp_path / "m.onnx"
    rnn_export.export(m, path)
    stream = np.random.default_rng(1).integers(0, V, size=300)
    with torch.no_grad():
        logits = m(torch.from_numpy(stream[None, :-1]))[0][0]
        want = torch.nn.functional.cross_entropy(logits, torch.from_numpy(stream[1:]), reduction="sum").item()
    assert rnn_export.stream_nll(session(path), stream, chunk=64) == pytest.approx(want, rel=1e-5)


def test_broken_graph_fails_parity(tmp_path):
    m = tiny("lstm")
    path = tmp_path / "m.onnx"
    rnn_export.export(m, path)
    with torch.no_grad():
        m.head.bias += 0.01  # the module now differs from what was exported
    with pytest.raises(rnn_export.ParityError):
        rnn_export.check_parity(m, path, np.random.default_rng(0).integers(0, V, size=600))
