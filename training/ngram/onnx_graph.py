"""An `NgramLM` as an ONNX graph: context (B, N-1) int64 [, candidates (B or 1, K) int64] -> log_probs (B, K).

`candidates` holds the tokens whose log-probabilities are wanted, per row (B, K) or for every row (1, K).
It is optional: its default (an initializer, which onnxruntime lets a feed override) is every token,
arange(V) as (1, V), so a caller that sends only `context` gets the whole distribution (B, V), as a
sampler needs, and one that sends each position's next token as (B, 1) gets one log-probability per row,
as scoring needs, from the SAME lookup tables (no second copy in the file or in memory): the
recursion below is independent per candidate token w.

The graph runs the interpolation recursion of `training.ngram.model` with exact table lookups, using
`ai.onnx.ml` LabelEncoder (opset 4, tensor-valued keys and values) over int64 keys:

    context ids:  id_1 = last token; id_j = Enc_j(id_{j-1} * V + token_{-j})        (-1 when unseen,
                  or when a token is outside [0, V))
    p_0 = uniform[w]                                           (B or 1, K)
    level k:      alpha_k = EncA_k(id_{k-1} * V + w)           (B, K), default 0 (alpha_1 = a table row)
                  gamma_k = EncG_k(id_{k-1})                   (B, 1), default 1
                  p = alpha_k + gamma_k * p
    output:       log(p), or LOG_ZERO (the ARPA -99 in log10) where p = 0, i.e. for `<s>`;
                  NaN for a candidate outside [0, V), which is no token (the server refuses those)

Keys are `id * V + token` with id < #types of that order, so they are unique by construction (no
hashing); `export` checks that the largest key fits in int64. An unseen context has id -1, so its keys
are negative and miss every table, which is exactly the back-off to the shorter context.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from training.ngram.model import LOG_ZERO, NgramLM

OPSET, ML_OPSET = 18, 4
INT64_MAX = np.iinfo(np.int64).max


def _encoder(name: str, inp: str, out: str, keys: np.ndarray, values: np.ndarray, default) -> onnx.NodeProto:
    values = np.asarray(values)
    return helper.make_node(
        "LabelEncoder", [inp], [out], name=name, domain="ai.onnx.ml",
        keys_tensor=numpy_helper.from_array(keys.astype(np.int64), f"{name}_keys"),
        values_tensor=numpy_helper.from_array(values, f"{name}_values"),
        default_tensor=numpy_helper.from_array(np.array([default], dtype=values.dtype), f"{name}_default"),
    )


def build_graph(lm: NgramLM, *, doc: str = "") -> onnx.ModelProto:
    V, n = lm.vocab_size, lm.order - 1
    largest = max([len(lev) for lev in lm.levels] + [1]) * V + V
    if largest > INT64_MAX:
        raise OverflowError(f"lookup keys up to {largest} do not fit in int64")
    inits = [numpy_helper.from_array(np.array(V, np.int64), "V"),
             # The optional input's default: every token, (1, V). A feed of `candidates` replaces it.
             numpy_helper.from_array(np.arange(V, dtype=np.int64)[None, :], "candidates"),
             numpy_helper.from_array(lm.uniform.astype(np.float32), "uniform"),  # (V,) p_0
             numpy_helper.from_array(np.array(np.nan, np.float32), "nan")]
    nodes: list[onnx.NodeProto] = []

    def mul_add(a: str, b: str, c: str, out: str):
        nodes.append(helper.make_node("Mul", [a, b], [f"{out}_mul"]))
        nodes.append(helper.make_node("Add", [f"{out}_mul", c], [out]))

    # Context ids, right to left: ctx_j (B,) is the j-gram made of the last j context tokens.
    for j in range(1, n + 1):
        inits.append(numpy_helper.from_array(np.array([n - j], np.int64), f"col_{j}"))
        nodes.append(helper.make_node("Gather", ["context", f"col_{j}"], [f"tok_{j}_2d"], axis=1))  # (B, 1)
        nodes.append(helper.make_node("Squeeze", [f"tok_{j}_2d", "axis1"], [f"tok_{j}"]))  # (B,)
        # A token outside [0, V) makes the context unseen (-1): its key would otherwise alias a real one.
        nodes += [helper.make_node("GreaterOrEqual", [f"tok_{j}", "zero"], [f"tok_{j}_ge0"]),
                  helper.make_node("Less", [f"tok_{j}", "V"], [f"tok_{j}_ltV"]),
                  helper.make_node("And", [f"tok_{j}_ge0", f"tok_{j}_ltV"], [f"tok_{j}_ok"])]
        if j == 1:
            nodes.append(helper.make_node("Where", ["tok_1_ok", "tok_1", "minus_one"], ["ctx_1"]))
            continue
        lev = lm.levels[j - 1]
        mul_add(f"ctx_{j - 1}", "V", f"tok_{j}", f"ctx_{j}_raw_key")
        nodes.append(helper.make_node("Where", [f"tok_{j}_ok", f"ctx_{j}_raw_key", "minus_one"], [f"ctx_{j}_key"]))
        nodes.append(_encoder(f"context_{j}", f"ctx_{j}_key", f"ctx_{j}", lev.suffix * V + lev.first,
                              np.arange(len(lev), dtype=np.int64), -1))
    inits += [numpy_helper.from_array(np.array([1], np.int64), "axis1"),
              numpy_helper.from_array(np.array(0, np.int64), "zero"),
              numpy_helper.from_array(np.array(-1, np.int64), "minus_one")]

    # Candidates (C, K), C = B or 1: a token outside [0, V) would alias another key or wrap around in
    # Gather, so it reads token 0 and its p_0 is NaN, which every level carries to the output.
    nodes += [helper.make_node("GreaterOrEqual", ["candidates", "zero"], ["cand_ge0"]),
              helper.make_node("Less", ["candidates", "V"], ["cand_ltV"]),
              helper.make_node("And", ["cand_ge0", "cand_ltV"], ["cand_ok"]),
              helper.make_node("Where", ["cand_ok", "candidates", "zero"], ["cand"]),
              helper.make_node("Gather", ["uniform", "cand"], ["uniform_w"], axis=0),
              helper.make_node("Where", ["cand_ok", "uniform_w", "nan"], ["p_0"])]  # (C, K)
    p = "p_0"
    for k, lev in enumerate(lm.levels, start=1):
        keep = lev.alpha > 0
        alpha = np.zeros(V, np.float32)
        if k == 1:  # the empty context: alpha_1 is one row (V,), read at the candidates
            alpha[lev.last[keep]] = lev.alpha[keep]
            inits += [numpy_helper.from_array(alpha, "alpha_1_row"),
                      numpy_helper.from_array(np.array([[lev.gamma[0]]], np.float32), "gamma_1")]
            nodes.append(helper.make_node("Gather", ["alpha_1_row", "cand"], ["alpha_1"], axis=0))  # (C, K)
        else:
            nodes.append(helper.make_node("Unsqueeze", [f"ctx_{k - 1}", "axis1"], [f"ctx_{k - 1}_col"]))  # (B, 1)
            mul_add(f"ctx_{k - 1}_col", "V", "cand", f"alpha_{k}_key")  # (B, K)
            nodes.append(_encoder(f"alpha_{k}", f"alpha_{k}_key", f"alpha_{k}",
                                  lev.prefix[keep] * V + lev.last[keep], lev.alpha[keep].astype(np.float32), 0.0))
            used = np.flatnonzero(lev.gamma != 1.0)
            nodes.append(_encoder(f"gamma_{k}", f"ctx_{k - 1}", f"gamma_{k}_flat", used,
                                  lev.gamma[used].astype(np.float32), 1.0))
            nodes.append(helper.make_node("Unsqueeze", [f"gamma_{k}_flat", "axis1"], [f"gamma_{k}"]))  # (B, 1)
        mul_add(f"gamma_{k}", p, f"alpha_{k}", f"p_{k}")
        p = f"p_{k}"
    inits += [numpy_helper.from_array(np.array(0, np.float32), "zero_f"),
              numpy_helper.from_array(np.array(LOG_ZERO, np.float32), "log_zero")]
    # p <= 0 rather than p > 0 picks LOG_ZERO, so that a NaN (a candidate that is no token) stays NaN.
    nodes += [helper.make_node("Log", [p], ["log_p"]),
              helper.make_node("LessOrEqual", [p, "zero_f"], ["p_zero"]),
              helper.make_node("Where", ["p_zero", "log_zero", "log_p"], ["log_probs"])]

    graph = helper.make_graph(
        nodes, f"ngram{lm.order}",
        [helper.make_tensor_value_info("context", TensorProto.INT64, ["batch", max(n, 1)]),
         helper.make_tensor_value_info("candidates", TensorProto.INT64, ["candidate_rows", "candidates"])],
        [helper.make_tensor_value_info("log_probs", TensorProto.FLOAT, ["batch", "candidates"])],
        initializer=inits, doc_string=doc,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET),
                                                    helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
                              producer_name="zooserve")
    model.ir_version = 10
    return model


def export(lm: NgramLM, path: Path, *, doc: str = "") -> Path:
    model = build_graph(lm, doc=doc)
    onnx.checker.check_model(model, full_check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
