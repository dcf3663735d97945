"""The from-scratch numpy MLP: backpropagation agrees with central differences, gradient descent learns,
the ONNX graph built from the weights computes the numpy forward pass, and `zooserve train-mlp --dry-run`
writes a valid card."""

from __future__ import annotations

import numpy as np
import pytest

from zooserve.card import load_card
from training import report, train_mlp
from training.export.onnx_export import run_onnx, session
from training.scratch_mlp import onnx_graph
from training.scratch_mlp.model import MLP, MomentumSGD, cross_entropy, sigmoid

EPS = 1e-6  # central-difference step, in float64
REL_TOL = 1e-6  # bound on |analytic - numeric| / max(|analytic| + |numeric|, tiny) for every weight


def numeric_grads(mlp: MLP, x: np.ndarray, y: np.ndarray, weight_decay: float) -> list[np.ndarray]:
    """d loss / d p for every entry of every parameter, by (L(p + eps) - L(p - eps)) / (2 eps)."""
    grads = []
    for p in mlp.parameters:
        g = np.zeros_like(p)
        for i in np.ndindex(p.shape):
            keep = p[i]
            p[i] = keep + EPS
            up = mlp.loss_and_grads(x, y, weight_decay)[0]
            p[i] = keep - EPS
            down = mlp.loss_and_grads(x, y, weight_decay)[0]
            p[i] = keep
            g[i] = (up - down) / (2 * EPS)
        grads.append(g)
    return grads


@pytest.mark.parametrize("sizes", [[6, 5, 4], [7, 5, 4, 3]])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_backprop_matches_central_differences(sizes, weight_decay):
    rng = np.random.default_rng(0)
    mlp = MLP.init(sizes, rng, dtype=np.float64)
    for b in mlp.biases:  # non-zero biases, so that their gradients are exercised too
        b += rng.normal(0, 0.5, b.shape)
    x, y = rng.normal(size=(9, sizes[0])), rng.integers(0, sizes[-1], 9)
    _, analytic = mlp.loss_and_grads(x, y, weight_decay)
    numeric = numeric_grads(mlp, x, y, weight_decay)
    assert [a.shape for a in analytic] == [p.shape for p in mlp.parameters]
    for a, n in zip(analytic, numeric):
        rel = np.abs(a - n) / np.maximum(np.abs(a) + np.abs(n), 1e-8)
        assert rel.max() < REL_TOL, rel.max()


def test_sigmoid_is_stable_and_exact_at_the_extremes():
    z = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0], np.float32)
    s = sigmoid(z)
    assert s.dtype == np.float32 and np.isfinite(s).all()
    with np.errstate(over="ignore"):  # the float64 reference itself overflows to inf at -1000, giving 0
        want = 1 / (1 + np.exp(-z.astype(np.float64)))
    np.testing.assert_allclose(s, want, rtol=1e-6, atol=1e-30)


def test_gradient_descent_learns_a_separable_problem():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 3, (3, 4))
    y = rng.integers(0, 3, 300)
    x = (centres[y] + rng.normal(0, 0.5, (300, 4))).astype(np.float32)
    mlp = MLP.init([4, 8, 3], rng)
    opt = MomentumSGD(0.9)
    before = cross_entropy(mlp.logits(x), y)
    for _ in range(200):
        idx = rng.choice(300, 32, replace=False)
        opt.step(mlp.parameters, mlp.loss_and_grads(x[idx], y[idx])[1], lr=0.1)
    logits = mlp.logits(x)
    assert cross_entropy(logits, y) < before / 5
    assert np.mean(logits.argmax(1) == y) > 0.95


def test_onnx_graph_computes_the_numpy_forward_pass(tmp_path):
    rng = np.random.default_rng(2)
    mlp = MLP.init([28 * 28, 16, 12, 10], rng)
    x = rng.normal(size=(5, 1, 28, 28)).astype(np.float32)
    path = onnx_graph.export(mlp, tmp_path / "model.onnx", (1, 28, 28))
    got = run_onnx(session(path), x)
    np.testing.assert_allclose(got, mlp.logits(x), atol=1e-5)
    parity = onnx_graph.check_parity(mlp, path, x)
    assert parity["reference"] == "numpy" and parity["argmax_agreement"] == 1.0 and parity["inputs"] == 5
    other = MLP.init([28 * 28, 16, 12, 10], np.random.default_rng(3))  # a graph of different weights fails
    with pytest.raises(onnx_graph.ParityError):
        onnx_graph.check_parity(other, path, x)
    with pytest.raises(ValueError, match="784"):
        onnx_graph.build_graph(mlp, (1, 27, 28))


def test_dry_run_writes_a_valid_card(make_fake_fashion, tmp_path):
    data = make_fake_fashion(96, 32, seed=5)
    runs = tmp_path / "runs"
    assert train_mlp.main(["--data", str(data), "--runs", str(runs), "--dry-run", "--hidden", "32", "16",
                           "--val-size", "32", "--batch-size", "16"]) == 0
    model_dir = runs / "dry-run" / "models" / "fashion-mlp" / "1"
    card = load_card(model_dir)
    assert (card.task, card.family, card.training.arch, card.training.torch) == (
        "image-classification", "mlp/sigmoid", "mlp", None)
    assert card.parity.reference == "numpy" and card.parity.argmax_agreement == 1.0
    assert card.inputs[0].shape == [-1, 1, 28, 28] and card.outputs[0].shape == [-1, 10]
    assert card.training.parameters == 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10
    assert card.preprocess.kind == "image" and card.preprocess.scale == pytest.approx(1 / 255)
    assert {m.split for m in card.metrics} == {"validation", "test"}
    assert (runs / "dry-run" / "fashion-mlp" / "history.json").is_file()
    assert (runs / "dry-run" / "fashion-mlp" / "curves.png").is_file()
    # zooserve report times its ONNX graph alone: there is no PyTorch model to compare with.
    model, note = report.torch_model(card, runs)
    assert model is None and "without PyTorch" in note
