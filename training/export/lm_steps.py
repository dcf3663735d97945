"""A recurrent language model's "steps" graph: K tokens per call, sampled inside the graph.

The served step graph (model.onnx) reads tokens (B, T) and a state, and gives logits (B, T, V) and the new
state: generating one token per call costs the caller a graph call and the sampling in numpy for every token.
This graph wraps the same nodes in an ONNX Loop that feeds each sampled token back in, so one call makes K
tokens per row (docs/generation.md, "Several tokens per call"):

    inputs   token (B,) int64        each row's pending token, the first one the model reads
             h0 [, c0] (L, B, H)     the state before it, as model.onnx takes it
             uniforms (B, K) float64 each row's next K uniform numbers; K (the trip count) is their 2nd axis
             temperature (B,) float64  0 = greedy (argmax), else the logits are divided by it
    outputs  tokens (B, K) int64     the K tokens sampled, in order
             logits (B, K, V) float32  the model's logits for each of them (log-probabilities are made from
                                     these by the caller, for the rows that ask)
             hn [, cn] (L, B, H)     the state after reading every token but the last sampled one, which is
                                     the next call's `token`

Sampling follows the service's plain rule (service/runtime/generation/sampling.py; no top-k, top-p nor
repetition penalty, which stay with one token per call): float64, z = logits / temperature,
cdf = cumsum(exp(z - max z)), token = the number of cdf[:V-1] values <= u * cdf[V-1] (zooserve.numeric), so a
row's tokens equal stepping model.onnx and sampling each step in numpy with the same numbers (the parity check
below, and tests/test_lm_steps.py), unless exp rounds differently in the last bit right at a boundary. A
greedy row goes through the same nodes (GREEDY_DIVISOR), which gives numpy's argmax. Whatever can be done once
per call (each row's divisor, the numbers' layout) is done outside the Loop: at B = 32 the sampling nodes cost
the INT8 LSTM's step more than the Loop itself does.

    python -m training.export.lm_steps models/island-lstm/1 [more version folders]   # add or rebuild
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from training.export.onnx_eval import run_steps, session, zero_state
from training.export.onnx_export import file_digest, opset_of
from zooserve.card import Graph, load_card, save_card
from zooserve.numeric import cumexp, inverse_cdf

ROLE = "steps"
FILE = "steps.onnx"
P = "steps/"  # prefix of every name this builder adds, so none collides with the step graph's own names


def _const(name: str, values, dtype=TensorProto.INT64, dims=None) -> onnx.NodeProto:
    values = list(np.atleast_1d(values))
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name + "/value", dtype, [len(values)] if dims is None else dims, values))


# Greedy rows divide their logits by this power of two (z * 2^600, exact) and draw u = 0: exp(z - max z) is then
# 1 at the row's maxima and 0 elsewhere (the smallest gap between two float32 logits, 1.4e-45, scales to 5.8e135),
# so the count of cdf values <= 0 is the index of the first maximum, numpy's argmax. The same sampling nodes
# serve every row, where an ArgMax and a Where per token cost a B=32 step of the INT8 LSTM about 2 us.
GREEDY_DIVISOR = 2.0 ** -600


def _sampler(opset: int, vocab: int) -> list[onnx.NodeProto]:
    """Body nodes: logits (B, 1, V) float32, this iteration's numbers u (B, 1, 1) -> token (B, 1) int64 by the
    plain rule. Every tensor keeps the step graph's (B, 1, ...) shape, so the body has no Squeeze or Unsqueeze."""
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18, an attribute before
        reduce_max = helper.make_node("ReduceMax", [P + "z", P + "axis2"], [P + "zmax"], keepdims=1)
    else:
        reduce_max = helper.make_node("ReduceMax", [P + "z"], [P + "zmax"], axes=[2], keepdims=1)
    return [
        helper.make_node("Cast", [P + "logits3"], [P + "z64"], to=TensorProto.DOUBLE),
        helper.make_node("Div", [P + "z64", P + "temp_b11"], [P + "z"]),  # (B, 1, V) / (B, 1, 1)
        reduce_max,  # (B, 1, 1)
        helper.make_node("Sub", [P + "z", P + "zmax"], [P + "zc"]),
        helper.make_node("Exp", [P + "zc"], [P + "e"]),
        helper.make_node("CumSum", [P + "e", P + "axis2_scalar"], [P + "cdf"]),  # (B, 1, V), unnormalised
        helper.make_node("Slice", [P + "cdf", P + "last_lo", P + "last_hi", P + "axis2"], [P + "total"]),  # (B,1,1)
        helper.make_node("Slice", [P + "cdf", P + "zero", P + "last_lo", P + "axis2"], [P + "head"]),  # (B,1,V-1)
        helper.make_node("Gather", [P + "u_kb11", P + "i"], [P + "u"], axis=0),  # (B, 1, 1)
        helper.make_node("Mul", [P + "u", P + "total"], [P + "threshold"]),
        helper.make_node("LessOrEqual", [P + "head", P + "threshold"], [P + "below"]),
        # Counted in float32 (exact up to 2^24 values): onnxruntime's float ReduceSum is vectorised, its int64
        # one is not (4 us of a 26 us sampler at B=32, V=80).
        helper.make_node("Cast", [P + "below"], [P + "below32"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", [P + "below32", P + "axis2"], [P + "count"], keepdims=0),  # (B, 1)
        helper.make_node("Cast", [P + "count"], [P + "token_out"], to=TensorProto.INT64),
    ]


def build(step: onnx.ModelProto, vocab: int) -> onnx.ModelProto:
    """The steps graph around a recurrent step graph: inputs tokens (B, T) + states, outputs logits (B, T, V)
    + the states in the same order (the language-model card's contract)."""
    g = step.graph
    states_in = [i.name for i in g.input[1:]]
    states_out = [o.name for o in g.output[1:]]
    # The loop-carried token is (B, 1), the step graph's tokens at T = 1, so the body feeds it straight in.
    rename = {g.input[0].name: P + "token_in", g.output[0].name: P + "logits3",
              **{s: P + "in/" + s for s in states_in}, **{s: P + "out/" + s for s in states_out}}
    body_nodes = [_const(P + "axis2", [2]), _const(P + "axis2_scalar", [2], dims=[]),
                  _const(P + "last_lo", [vocab - 1]), _const(P + "last_hi", [vocab]), _const(P + "zero", [0])]
    for node in g.node:
        n = copy.deepcopy(node)
        n.input[:] = [rename.get(x, x) for x in n.input]
        n.output[:] = [rename.get(x, x) for x in n.output]
        body_nodes.append(n)
    body_nodes += _sampler(opset_of(step), vocab)
    body_nodes += [helper.make_node("Identity", [P + "cond"], [P + "cond_out"]),
                   helper.make_node("Identity", [P + "token_out"], [P + "token_scan"])]

    def info(name, elem, shape):
        return helper.make_tensor_value_info(name, elem, shape)

    state_types = {i.name: i.type for i in g.input[1:]}
    state_info = [helper.make_value_info(P + "in/" + s, state_types[s]) for s in states_in]
    body = helper.make_graph(
        body_nodes, "step",
        [info(P + "i", TensorProto.INT64, []), info(P + "cond", TensorProto.BOOL, []),
         info(P + "token_in", TensorProto.INT64, ["batch", 1]), *state_info],
        [info(P + "cond_out", TensorProto.BOOL, []), info(P + "token_out", TensorProto.INT64, ["batch", 1]),
         *[helper.make_value_info(P + "out/" + o, t.type) for o, t in zip(states_out, g.output[1:])],
         info(P + "token_scan", TensorProto.INT64, ["batch", 1]),
         info(P + "logits3", TensorProto.FLOAT, ["batch", 1, vocab])])
    # Once per call, outside the Loop: each row's divisor and numbers in the shapes the body reads.
    outer = [
        helper.make_node("Shape", ["uniforms"], [P + "shape_u"]),
        _const(P + "one", [1], dims=[]),
        helper.make_node("Gather", [P + "shape_u", P + "one"], [P + "trips"], axis=0),  # K, a scalar
        _const(P + "zero64", [0.0], TensorProto.DOUBLE, dims=[]),
        _const(P + "greedy_divisor", [GREEDY_DIVISOR], TensorProto.DOUBLE, dims=[]),
        _const(P + "axes12", [1, 2]),
        _const(P + "axes23", [2, 3]),
        _const(P + "axis1_outer", [1]),
        _const(P + "axis2_outer", [2]),
        helper.make_node("Equal", ["temperature", P + "zero64"], [P + "greedy"]),  # (B,)
        helper.make_node("Where", [P + "greedy", P + "greedy_divisor", "temperature"], [P + "temp_rows"]),
        helper.make_node("Unsqueeze", [P + "temp_rows", P + "axes12"], [P + "temp_b11"]),  # (B, 1, 1)
        helper.make_node("Unsqueeze", [P + "greedy", P + "axis1_outer"], [P + "greedy_b1"]),  # (B, 1)
        helper.make_node("Where", [P + "greedy_b1", P + "zero64", "uniforms"], [P + "u_bk"]),  # (B, K)
        helper.make_node("Transpose", [P + "u_bk"], [P + "u_kb"], perm=[1, 0]),
        helper.make_node("Unsqueeze", [P + "u_kb", P + "axes23"], [P + "u_kb11"]),  # (K, B, 1, 1)
        helper.make_node("Unsqueeze", ["token", P + "axis1_outer"], [P + "token_b1"]),  # (B, 1)
        helper.make_node("Loop", [P + "trips", "", P + "token_b1", *states_in],
                         [P + "token_last", *states_out, P + "tokens_kb1", P + "logits_kb1v"], body=body),
        helper.make_node("Squeeze", [P + "tokens_kb1", P + "axis2_outer"], [P + "tokens_kb"]),  # (K, B, 1) -> (K, B)
        helper.make_node("Transpose", [P + "tokens_kb"], ["tokens"], perm=[1, 0]),  # -> (B, K)
        helper.make_node("Squeeze", [P + "logits_kb1v", P + "axis2_outer"], [P + "logits_kbv"]),  # -> (K, B, V)
        helper.make_node("Transpose", [P + "logits_kbv"], ["logits"], perm=[1, 0, 2]),  # -> (B, K, V)
    ]
    graph = helper.make_graph(
        outer, "steps",
        [info("token", TensorProto.INT64, ["batch"]), *g.input[1:],
         info("uniforms", TensorProto.DOUBLE, ["batch", "steps"]), info("temperature", TensorProto.DOUBLE, ["batch"])],
        [info("tokens", TensorProto.INT64, ["batch", "steps"]),
         info("logits", TensorProto.FLOAT, ["batch", "steps", vocab]), *g.output[1:]],
        initializer=list(g.initializer))
    model = helper.make_model(graph, opset_imports=list(step.opset_import), producer_name="zooserve lm_steps")
    model.ir_version = step.ir_version
    onnx.checker.check_model(model)
    return model


@dataclasses.dataclass
class StepsParity:
    reference: str
    max_abs_diff: float  # logits, steps graph against model.onnx stepped
    argmax_agreement: float  # share of tokens that equal the stepped reference's
    inputs: int  # tokens compared
    opset: int
    onnxruntime: str


def reference_tokens(step: ort.InferenceSession, token, state: dict, u: np.ndarray, temperature: np.ndarray):
    """model.onnx stepped one token at a time, each sampled in numpy by the plain rule -> tokens (B, K),
    logits (B, K, V)."""
    names = [o.name for o in step.get_outputs()]
    tokens, logits = [], []
    for k in range(u.shape[1]):
        out = dict(zip(names, step.run(None, {"tokens": token[:, None], **state})))
        z = out[names[0]][:, -1].astype(np.float64)  # (B, V)
        greedy = temperature == 0
        drawn = inverse_cdf(cumexp(z / np.where(greedy, 1.0, temperature)[:, None])[1], u[:, k:k + 1])
        token = np.where(greedy, np.argmax(z, axis=-1), drawn)
        tokens.append(token)
        logits.append(out[names[0]][:, -1])
        state = {i.name: out[o] for i, o in zip(step.get_inputs()[1:], names[1:])}
    return np.stack(tokens, 1), np.stack(logits, 1)


def check(step_path: Path, steps_path: Path, vocab: int, *, rows: int = 8, k: int = 64, seed: int = 0) -> StepsParity:
    """Rows of several temperatures (greedy, 0.5, 0.8, 1, 1.3) from states made by reading random tokens."""
    step, steps = session(step_path, threads=1), session(steps_path, threads=1)
    rng = np.random.default_rng(seed)
    prime = rng.integers(0, vocab, (rows, 16))
    _, state = run_steps(step, prime[:, :-1], zero_state(step, rows), prime.shape[1])
    state = dict(zip((i.name for i in step.get_inputs()[1:]), state))
    token = prime[:, -1].astype(np.int64)
    u = rng.random((rows, k))
    temperature = np.resize(np.array([0.0, 0.5, 0.8, 1.0, 1.3]), rows)
    want, want_logits = reference_tokens(step, token, state, u, temperature)
    got = dict(zip([o.name for o in steps.get_outputs()],
                   steps.run(None, {"token": token, **state, "uniforms": u, "temperature": temperature})))
    return StepsParity("onnx-step", float(np.abs(got["logits"] - want_logits).max()),
                       float((got["tokens"] == want).mean()), int(want.size), opset_of(step_path), ort.__version__)


def add_steps(model_dir: Path) -> StepsParity:
    """Build (or rebuild) `steps.onnx` beside a recurrent language model's model.onnx, check it, and list it in
    the card's graphs (role "steps"). Raises if any token differs from the stepped reference."""
    model_dir = Path(model_dir)
    card = load_card(model_dir)
    if card.task != "language-model" or not card.family.startswith("rnn/"):
        raise ValueError(f"{model_dir}: a steps graph is for recurrent language models, not {card.family}")
    vocab = card.outputs[0].shape[-1]
    path = model_dir / FILE
    onnx.save(build(onnx.load(str(model_dir / card.artifact.file)), vocab), str(path))
    parity = check(model_dir / card.artifact.file, path, vocab)
    if parity.argmax_agreement != 1.0:
        raise RuntimeError(f"{path}: {parity.argmax_agreement:.4f} of the tokens agree with model.onnx stepped")
    graph = Graph(
        role=ROLE,
        inputs=[{"name": "token", "datatype": "INT64", "shape": [-1]}, *card.inputs[1:],
                {"name": "uniforms", "datatype": "FP64", "shape": [-1, -1]},
                {"name": "temperature", "datatype": "FP64", "shape": [-1]}],
        outputs=[{"name": "tokens", "datatype": "INT64", "shape": [-1, -1]},
                 {"name": "logits", "datatype": "FP32", "shape": [-1, -1, vocab]}, *card.outputs[1:]],
        parity=dataclasses.asdict(parity),
        artifact=file_digest(path))
    others = [g for g in card.graphs if g.role != ROLE]
    save_card(model_dir, card.model_copy(update={"graphs": [*others, graph]}))
    return parity


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dirs", nargs="+", type=Path, help="version folders of recurrent language models")
    args = ap.parse_args(argv)
    for d in args.model_dirs:
        p = add_steps(d)
        print(f"{d}: {FILE} written; {p.inputs} tokens agree with model.onnx stepped, logits max |diff| "
              f"{p.max_abs_diff:.2e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
