"""Export a recurrent LM as one stepping graph and prove it computes what the PyTorch module computes.

Graph: tokens (B, T) int64, h0 (L, B, H) [, c0 (L, B, H)] -> logits (B, T, V), hn [, cn]; B and T dynamic.

This uses the TorchScript exporter (`dynamo=False`). The dynamo exporter in torch 2.13 unrolls
`nn.RNN(tanh)` over time, which fixes T at the example's length, and leaves T static in the logits' shape
for LSTM and GRU; the TorchScript exporter maps all three cells to ONNX's RNN/LSTM/GRU operators with both
axes dynamic, which is also what onnxruntime runs fastest.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from training.export.onnx_eval import run_steps, stream_nll, zero_state  # noqa: F401  (re-exported)
from training.export.onnx_export import ParityError, ParityReport, session
from training.zoo.rnnlm import RNNLM

OPSET = 17


def io_names(model: RNNLM) -> tuple[list[str], list[str]]:
    states = model.cfg.state_names
    return ["tokens", *(f"{s}0" for s in states)], ["logits", *(f"{s}n" for s in states)]


def export(model: RNNLM, path: Path) -> int:
    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs, outputs = io_names(model)
    tokens = torch.zeros(2, 3, dtype=torch.int64)
    dynamic = {"tokens": {0: "batch", 1: "time"}, "logits": {0: "batch", 1: "time"}}
    dynamic |= {n: {1: "batch"} for n in inputs[1:] + outputs[1:]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter warns that batch_first RNNs with a given state are unusual
        torch.onnx.export(model, (tokens, *model.initial_state(2)), str(path), input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, opset_version=OPSET, dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return OPSET


def check_parity(model: RNNLM, path: Path, stream: np.ndarray, *, atol: float = 1e-4) -> ParityReport:
    """Three checks on real tokens, all within `atol` with equal argmax:
    1. a batch of 4 sequences x 128 tokens, from random states, PyTorch vs onnxruntime (logits and state);
    2. step-by-step decoding (T = 1, carrying the state) vs PyTorch's full-sequence forward;
    3. a 64-token prompt as one onnxruntime call vs the same prompt fed one token at a time.
    """
    model = model.eval().cpu()
    sess = session(path)
    rng = np.random.default_rng(0)
    starts = rng.integers(0, len(stream) - 129, size=4)
    batch = np.stack([stream[s:s + 128] for s in starts])  # (4, 128)
    state = [rng.standard_normal(s.shape).astype(np.float32) * 0.5 for s in zero_state(sess, 4)]
    with torch.no_grad():
        want = [t.numpy() for t in model(torch.from_numpy(batch), *map(torch.from_numpy, state))]
    got = sess.run(None, dict(zip([i.name for i in sess.get_inputs()], [batch, *state])))
    diffs = [float(np.max(np.abs(g - w))) for g, w in zip(got, want)]
    agree = [float(np.mean(got[0].argmax(-1) == want[0].argmax(-1)))]

    stepped, _ = run_steps(sess, batch[:1], zero_state(sess, 1), chunk=1)  # (1, 128, V)
    with torch.no_grad():
        full = model(torch.from_numpy(batch[:1]))[0].numpy()
    diffs.append(float(np.max(np.abs(stepped - full))))
    agree.append(float(np.mean(stepped.argmax(-1) == full.argmax(-1))))

    prompt = batch[1:2, :64]
    one_call, state_a = run_steps(sess, prompt, zero_state(sess, 1), chunk=64)
    one_by_one, state_b = run_steps(sess, prompt, zero_state(sess, 1), chunk=1)
    diffs += [float(np.max(np.abs(one_call - one_by_one)))] + [float(np.max(np.abs(a - b))) for a, b in zip(state_a, state_b)]
    agree.append(float(np.mean(one_call.argmax(-1) == one_by_one.argmax(-1))))

    report = ParityReport("torch", max(diffs), min(agree), int(batch.size + 128 + 64), OPSET, ort.__version__)
    if report.max_abs_diff > atol or report.argmax_agreement < 1.0:
        raise ParityError(f"{path}: max |diff| {report.max_abs_diff:.3g} (tolerance {atol}) over batch, stepped and "
                          f"prompt checks; argmax agreement {report.argmax_agreement:.4f}")
    return report
