"""Text classification: tokenised batches, the objective, figures, and the ONNX export with its parity checks.

Every split is tokenised once into (N, max_length) id and mask tensors; each batch is then cut to its
own longest text, so short tweets do not pay for max_length. The exported graph takes
`input_ids`/`attention_mask` (B, T) int64 with both axes dynamic and returns `logits` (B, C) float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from tokenizers import Tokenizer
from torch import nn

from training.engine.trainer import StepResult
from training.export import onnx_eval
from training.export.onnx_export import ParityError, ParityReport, opset_of, session
from training.text_tokenizer import encode

INPUTS = ("input_ids", "attention_mask")
PARITY_BATCH_SIZES = (1, 3, 16, 64)


def trim(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop the columns that are padding in every row: (B, T) -> (B, longest)."""
    longest = int(mask.sum(1).max())
    return ids[:, :longest], mask[:, :longest]


def objective(model: nn.Module, batch) -> StepResult:
    ids, mask, y = batch  # (B, T), (B, T) int64, y (B,) int64
    logits = model(*trim(ids, mask))  # (B, C)
    loss = F.cross_entropy(logits, y)
    return StepResult(loss, len(y), {"correct": float((logits.argmax(1) == y).sum())})


@dataclass
class Encoded:
    ids: torch.Tensor  # (N, T) int64
    mask: torch.Tensor  # (N, T) int64
    y: torch.Tensor  # (N,) int64

    @classmethod
    def of(cls, tok: Tokenizer, texts: list[str], y: np.ndarray) -> "Encoded":
        ids, mask = encode(tok, texts)
        return cls(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(y))

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0) -> "LengthBatches":
        return LengthBatches(self, batch_size, shuffle=shuffle, seed=seed)


class LengthBatches:
    """(ids, mask, y) batches of texts of similar length, so little of each batch is padding.

    Shuffled, each epoch: permute all rows, sort windows of 50 batches by length, cut them into batches,
    and permute the batches. Attention costs grow with the longest text in a batch; this cuts the
    training time about in half on tweets, and the masking makes the result independent of the grouping.
    """

    WINDOW = 50  # batches per sorted window

    def __init__(self, data: Encoded, batch_size: int, *, shuffle: bool, seed: int):
        self.data, self.batch_size, self.shuffle, self.seed, self.epoch = data, batch_size, shuffle, seed, 0
        self.lengths = data.mask.sum(1)  # (N,)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.data.y) // self.batch_size)

    def _order(self) -> list[torch.Tensor]:
        n, size = len(self.data.y), self.batch_size
        if not self.shuffle:
            return list(torch.arange(n).split(size))
        gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        perm = torch.randperm(n, generator=gen)
        batches = []
        for window in perm.split(size * self.WINDOW):
            window = window[self.lengths[window].argsort(stable=True)]
            batches.extend(window.split(size))
        return [batches[i] for i in torch.randperm(len(batches), generator=gen)]

    def __iter__(self):
        d = self.data
        for idx in self._order():
            yield d.ids[idx], d.mask[idx], d.y[idx]


def calibration_batches(data: Encoded, n: int = 512, seed: int = 0, batch_size: int = 32):
    """INT8 calibration feeds: `n` random texts of `data` (the training split), in batches of similar length,
    each cut to its longest text: {"input_ids": (B, T), "attention_mask": (B, T)} int64."""
    ids, mask = data.ids.numpy(), data.mask.numpy()
    pick = np.random.default_rng(seed).permutation(len(ids))[:n]
    for rows, longest in onnx_eval.length_batches(mask.sum(1), pick, batch_size):
        yield {"input_ids": ids[rows, :longest], "attention_mask": mask[rows, :longest]}


def figures(split: str, logits: np.ndarray, y: np.ndarray) -> dict:
    """Card metrics of one split from its logits (N, C) and labels (N,)."""
    logp = torch.log_softmax(torch.from_numpy(logits).double(), 1)
    ce = float(-logp[torch.arange(len(y)), torch.from_numpy(y)].mean())
    pred = logits.argmax(1)
    return {"split": split, "examples": len(y), "accuracy": float((pred == y).mean()), "cross_entropy": ce,
            "macro_f1": float(f1_score(y, pred, average="macro"))}


@torch.no_grad()
def torch_logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    model = model.eval().cpu()
    return np.concatenate([model(*trim(ids[i:i + batch_size], mask[i:i + batch_size])).numpy()
                           for i in range(0, len(ids), batch_size)])


def onnx_logits(sess: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits (N, C) of the graph on texts (N, T), batched by length (see onnx_eval.text_logits)."""
    return onnx_eval.text_logits(sess, ids, mask, batch_size)


def export(model: nn.Module, path: Path) -> int:
    """Write the classifier with dynamic batch and sequence axes (dynamo exporter); return the opset."""
    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    # A sample with T > 1 and B > 1 so that neither axis is specialised to a constant.
    T = min(8, model.cfg.max_length)
    sample = (torch.full((2, T), 5, dtype=torch.int64), torch.ones(2, T, dtype=torch.int64))
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("sequence", min=1, max=model.cfg.max_length)
    program = torch.onnx.export(model, sample, input_names=list(INPUTS), output_names=["logits"],
                                dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}), dynamo=True,
                                external_data=False)
    program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    for inp in proto.graph.input:
        dims = inp.type.tensor_type.shape.dim
        if any(d.HasField("dim_value") for d in dims):
            raise ParityError(f"{path}: input {inp.name} has a fixed axis {[d.dim_value for d in dims]}; "
                              "batch and sequence must both be dynamic")
    return opset_of(path)


def check_parity(model: nn.Module, path: Path, ids: torch.Tensor, mask: torch.Tensor, *, opset: int,
                 atol: float = 1e-4) -> ParityReport:
    """Compare onnxruntime with PyTorch on real texts, in batches of several sizes (so several lengths).

    Each batch is also run padded to the full max_length, which proves the padding is masked in the graph.
    """
    model = model.eval().cpu()
    sess = session(path)
    diffs, agree, n, start = [], [], 0, 0
    for size in PARITY_BATCH_SIZES:
        b_ids, b_mask = ids[start:start + size], mask[start:start + size]
        start += size
        with torch.no_grad():
            expected = model(*trim(b_ids, b_mask)).numpy()  # (B, C)
        for x_ids, x_mask in (trim(b_ids, b_mask), (b_ids, b_mask)):
            got = sess.run(["logits"], {"input_ids": x_ids.numpy(), "attention_mask": x_mask.numpy()})[0]
            diffs.append(float(np.abs(got - expected).max()))
            agree.append(got.argmax(1) == expected.argmax(1))
            n += len(got)
    diff, agreement = max(diffs), float(np.concatenate(agree).mean())
    report = ParityReport("torch", diff, agreement, n, opset, ort.__version__)
    if not diff <= atol or agreement < 1.0:
        raise ParityError(f"{path}: max |ORT - torch| = {diff:.3g} (tolerance {atol}), argmax agreement {agreement:.4f}")
    return report
