"""Run an exported graph over a whole split with onnxruntime: numpy only, no torch.

Every figure on a card is measured on the graph through these functions. Keeping them torch-free lets the
same code run in a child process on an emulated CPU (`training.export.isa_check`), where importing torch
would cost minutes: `python -m training.export.onnx_eval MODEL_DIR INPUTS.npz OUTPUTS.npz`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

from zooserve.numeric import log_softmax


def session(graph: Path | bytes, threads: int = 0) -> ort.InferenceSession:
    """A CPU session with every graph optimisation, from a file or a serialised graph; `threads` 0 is
    onnxruntime's default (one per core)."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    return ort.InferenceSession(graph if isinstance(graph, bytes) else str(graph), opts,
                                providers=["CPUExecutionProvider"])


def run_graph(path_or_session, inputs: dict[str, np.ndarray], batch_size: int = 500,
              outputs: list[str] | None = None) -> dict[str, np.ndarray]:
    """A graph's outputs (all, or the named ones) on `inputs` (same number of rows each), in batches, by name."""
    sess = path_or_session if isinstance(path_or_session, ort.InferenceSession) else session(Path(path_or_session))
    names = outputs or [o.name for o in sess.get_outputs()]
    n = len(next(iter(inputs.values())))
    parts = [sess.run(names, {k: v[i:i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)]
    return {name: np.concatenate([p[j] for p in parts]) for j, name in enumerate(names)}


def run_onnx(sess: ort.InferenceSession, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Images (N, C, H, W) float32 -> logits (N, classes), in batches of `batch_size` in order."""
    name = sess.get_inputs()[0].name
    return np.concatenate([sess.run(None, {name: x[i:i + batch_size]})[0] for i in range(0, len(x), batch_size)])


def text_logits(sess: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Texts (N, T) int64 ids and mask -> logits (N, C), in the input's order.

    Batches hold texts of similar length (a stable sort by length), each cut to its longest text, so little
    of the work is padding: tweets are mostly far shorter than max_length. A float graph's logits do not
    depend on the grouping (the padding is masked); a dynamically quantized graph's do, slightly, since its
    activation scales span the batch, so its card figure is defined by this grouping.
    """
    out = np.empty((len(ids), sess.get_outputs()[0].shape[-1]), np.float32)
    for rows, longest in length_batches(mask.sum(1), np.arange(len(ids)), batch_size):
        out[rows] = sess.run(["logits"], {"input_ids": ids[rows, :longest], "attention_mask": mask[rows, :longest]})[0]
    return out


def length_batches(lengths: np.ndarray, rows: np.ndarray, batch_size: int):
    """`rows` in batches of similar length (a stable sort by `lengths[rows]`): yields (batch rows, longest)."""
    rows = rows[np.argsort(lengths[rows], kind="stable")]
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        yield batch, int(lengths[batch].max())


def zero_state(sess: ort.InferenceSession, batch: int) -> list[np.ndarray]:
    """A recurrent graph's initial state: one (L, B, H) zero array per state input."""
    return [np.zeros((i.shape[0], batch, i.shape[2]), np.float32) for i in sess.get_inputs()[1:]]


def run_steps(sess: ort.InferenceSession, tokens: np.ndarray, state: list[np.ndarray], chunk: int) -> tuple:
    """Feed tokens (B, T) in chunks of `chunk` steps, carrying the state; -> (logits (B, T, V), state)."""
    names = [i.name for i in sess.get_inputs()]
    logits = []
    for start in range(0, tokens.shape[1], chunk):
        out = sess.run(None, dict(zip(names, [tokens[:, start:start + chunk], *state])))
        logits.append(out[0])
        state = out[1:]
    return np.concatenate(logits, axis=1), state


def stream_logits(sess: ort.InferenceSession, stream: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Logits (T - 1, V) of a recurrent LM reading stream[:-1] from a zero state: row t predicts stream[t + 1]."""
    logits, _ = run_steps(sess, stream[None, :-1], zero_state(sess, 1), chunk)
    return logits[0]


def stream_nll(sess: ort.InferenceSession, stream: np.ndarray, chunk: int = 512) -> float:
    """Total negative log-likelihood (nats) of stream[1:] given everything before, from a zero state."""
    return logits_nll(stream_logits(sess, stream, chunk), stream)


def logits_nll(logits: np.ndarray, stream: np.ndarray) -> float:
    """Total nats of stream[1:] under `stream_logits`' rows (T - 1, V)."""
    logp = log_softmax(logits)  # float64: as the service scores
    return -float(logp[np.arange(len(logp)), stream[1:]].sum())


def outputs(model_dir: Path, inputs: dict[str, np.ndarray], threads: int = 0) -> np.ndarray:
    """The graph's outputs on a split, by the card's task: `x` (images), `ids` + `mask` (texts) or `stream`
    (a recurrent LM's token stream)."""
    task = json.loads((Path(model_dir) / "model.json").read_text())["task"]
    sess = session(Path(model_dir) / "model.onnx", threads)
    if task == "image-classification":
        return run_onnx(sess, inputs["x"])
    if task == "text-classification":
        return text_logits(sess, inputs["ids"], inputs["mask"])
    if task == "language-model" and "stream" in inputs:
        return stream_logits(sess, inputs["stream"])
    raise ValueError(f"no split evaluation for a {task} model with inputs {sorted(inputs)}")


def main(argv: list[str] | None = None) -> int:
    """Child-process entry: read the inputs, write the outputs (used under an emulated CPU)."""
    model_dir, src, dst = (argv if argv is not None else sys.argv[1:])[:3]
    with np.load(src) as data:
        inputs = {k: data[k] for k in data.files}
    np.save(dst, outputs(Path(model_dir), inputs, threads=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
