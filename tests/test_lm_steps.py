"""The steps graph (training/export/lm_steps.py): K tokens per call, sampled inside the graph, equal to the
step graph stepped one token at a time with the service's sampling rule in numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.export import lm_steps, rnn_export
from training.zoo.rnnlm import RNNLM, RNNLMConfig
from zooserve.card import load_card
from zooserve.numeric import cumexp, inverse_cdf

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("island-rnn", "island-lstm", "island-gru", "island-lstm-int8")


@pytest.mark.parametrize("cell, layers", [("lstm", 2), ("gru", 1), ("rnn", 3)])
def test_built_from_any_recurrent_step_graph_it_matches_single_steps(tmp_path, cell, layers):
    torch.manual_seed(0)
    vocab = 23
    model = RNNLM(RNNLMConfig(cell=cell, vocab_size=vocab, embedding_dim=8, hidden_size=16, layers=layers))
    rnn_export.export(model, tmp_path / "model.onnx")
    onnx.save(lm_steps.build(onnx.load(str(tmp_path / "model.onnx")), vocab), str(tmp_path / "steps.onnx"))
    parity = lm_steps.check(tmp_path / "model.onnx", tmp_path / "steps.onnx", vocab, rows=10, k=40, seed=3)
    assert parity.argmax_agreement == 1.0 and parity.inputs == 400
    assert parity.max_abs_diff <= 1e-6  # the same kernels on the same rows


def tiny_steps(folder: Path, cell: str, vocab: int, seed: int) -> ort.InferenceSession:
    """A small untrained model's steps graph (embedding 4, hidden 8), opened."""
    torch.manual_seed(seed)
    model = RNNLM(RNNLMConfig(cell=cell, vocab_size=vocab, embedding_dim=4, hidden_size=8))
    rnn_export.export(model, folder / "model.onnx")
    onnx.save(lm_steps.build(onnx.load(str(folder / "model.onnx")), vocab), str(folder / "steps.onnx"))
    return ort.InferenceSession(str(folder / "steps.onnx"), providers=["CPUExecutionProvider"])


def test_temperature_zero_is_argmax_and_k_comes_from_the_uniforms(tmp_path):
    sess = tiny_steps(tmp_path, "gru", 11, seed=1)
    h = np.zeros((1, 2, 8), np.float32)
    for k in (1, 7):
        tokens, logits, hn = sess.run(None, {"token": np.array([3, 4]), "h0": h, "uniforms": np.full((2, k), 0.999),
                                             "temperature": np.zeros(2)})
        assert tokens.shape == (2, k) and logits.shape == (2, k, 11) and hn.shape == (1, 2, 8)
        np.testing.assert_array_equal(tokens, logits.argmax(-1))  # u = 0.999 would pick a high id if sampled


def test_a_uniform_picks_by_the_inverse_cdf(tmp_path):
    """Temperature 1 and u just below / at a cumulative boundary: the token is the one whose interval holds u."""
    sess = tiny_steps(tmp_path, "rnn", 5, seed=2)
    h = np.zeros((1, 1, 8), np.float32)
    _, logits, _ = sess.run(None, {"token": np.array([0]), "h0": h, "uniforms": np.zeros((1, 1)),
                                   "temperature": np.ones(1)})
    p = np.exp(logits[0, 0].astype(np.float64) - logits[0, 0].max())
    cdf = np.cumsum(p) / p.sum()
    for want in range(5):
        u = (cdf[want - 1] if want else 0.0) + 0.5 * (cdf[want] - (cdf[want - 1] if want else 0.0))
        tokens, *_ = sess.run(None, {"token": np.array([0]), "h0": h, "uniforms": np.array([[u]]),
                                     "temperature": np.ones(1)})
        assert tokens[0, 0] == want


def table_step(table: np.ndarray) -> onnx.ModelProto:
    """A step graph whose logits for token t are table[t] (V, V), with a state it passes through: logits chosen
    by hand, ties and extremes included."""
    vocab = table.shape[0]
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Gather", ["table", "tokens"], ["logits"], axis=0),  # (B, 1, V)
         onnx.helper.make_node("Identity", ["h0"], ["hn"])], "table",
        [onnx.helper.make_tensor_value_info("tokens", onnx.TensorProto.INT64, ["batch", "time"]),
         onnx.helper.make_tensor_value_info("h0", onnx.TensorProto.FLOAT, [1, "batch", 2])],
        [onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["batch", "time", vocab]),
         onnx.helper.make_tensor_value_info("hn", onnx.TensorProto.FLOAT, [1, "batch", 2])],
        initializer=[onnx.numpy_helper.from_array(table.astype(np.float32), "table")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_greedy_rows_take_the_first_maximum_beside_sampled_rows():
    """Temperature 0 is numpy's argmax (the first of tied maxima) whatever the logits' scale: float32's smallest
    gap, its largest values, a maximum in the last place; rows sampled beside them keep the inverse-CDF rule."""
    tiny = np.float32(1.4e-45)  # the smallest float32 above 0
    big = np.finfo(np.float32).max
    table = np.array([[1, 3, 3, 0, -2], [0, tiny, tiny, 0, 0], [big, big, -big, 0, 1], [-2, -1, -1, -1, -3],
                      [0, 0, 0, 0, 1e-3]], np.float32)
    sess = ort.InferenceSession(lm_steps.build(table_step(table), 5).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    rows = np.arange(5)
    for u in (0.0, 0.5, 0.999999):
        tokens, logits, _ = sess.run(None, {"token": rows, "h0": np.zeros((1, 5, 2), np.float32),
                                            "uniforms": np.full((5, 3), u), "temperature": np.zeros(5)})
        want = [np.argmax(table[r]) for r in rows]  # 1, 1, 0, 1, 4
        assert tokens[:, 0].tolist() == want == [1, 1, 0, 1, 4]
        assert tokens[:, 1].tolist() == [np.argmax(table[t]) for t in want]
    # A greedy row and sampled rows in one batch: each row by its own rule.
    temperature, u = np.array([0.0, 1.0, 0.7]), np.array([[0.9], [0.3], [0.8]])
    tokens, *_ = sess.run(None, {"token": np.array([0, 3, 4]), "h0": np.zeros((1, 3, 2), np.float32),
                                 "uniforms": u, "temperature": temperature})
    z = table[[3, 4]].astype(np.float64) / temperature[1:, None]
    want = inverse_cdf(cumexp(z)[1], u[1:])
    assert tokens[:, 0].tolist() == [1, *want.tolist()]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_steps_graphs_are_listed_and_agree_on_new_draws(name):
    folder = ROOT / "models" / name / "1"
    card = load_card(folder)
    graph = card.graph("steps")
    assert graph.parity.reference == "onnx-step" and graph.parity.argmax_agreement == 1.0
    assert [t.name for t in graph.inputs] == ["token", *(t.name for t in card.inputs[1:]), "uniforms", "temperature"]
    parity = lm_steps.check(folder / "model.onnx", folder / graph.artifact.file, card.outputs[0].shape[-1],
                            rows=6, k=50, seed=11)
    assert parity.argmax_agreement == 1.0
