"""Image classification on Fashion-MNIST: data preparation, the objective, and test predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.data import fashion_mnist
from training.data.batches import TensorBatches
from training.data.images import Normalisation, RandomCropFlip
from training.engine.trainer import StepResult


def objective(model: nn.Module, batch) -> StepResult:
    x, y = batch  # x (B, C, H, W) float32, y (B,) int64
    logits = model(x)  # (B, classes)
    loss = F.cross_entropy(logits, y)
    return StepResult(loss, len(y), {"correct": float((logits.argmax(1) == y).sum())})


@dataclass
class ImageData:
    train: TensorBatches
    val: TensorBatches
    test_x: torch.Tensor  # (N, C, H, W) normalised
    test_y: torch.Tensor  # (N,)
    calibration_x: torch.Tensor  # a slice of the training split, for INT8 calibration
    norm: Normalisation
    labels: list[str]
    dataset: dict  # for the model card


def prepare(data_dir, *, val_size: int, seed: int, batch_size: int, augment_pad: int = 0, augment_flip: bool = False,
            limit: int = 0, norm: Normalisation | None = None) -> ImageData:
    """Load Fashion-MNIST, split 60k -> train/val with a fixed seed, normalise with train-split statistics
    (or with `norm`: Normalisation((0.0,), (1.0,)) keeps pixels in [0, 1], as the generative models read them).

    `limit` keeps only the first `limit` images of each split (for --dry-run).
    """
    ds = fashion_mnist.load(data_dir)
    train_idx, val_idx = fashion_mnist.split_indices(len(ds.train_labels), val_size, seed)
    if limit:
        train_idx, val_idx = train_idx[:limit], val_idx[:limit]
    test_images, test_labels = (ds.test_images[:limit], ds.test_labels[:limit]) if limit else (ds.test_images, ds.test_labels)
    norm = norm or Normalisation.fit(ds.train_images[train_idx])
    tx, vx = norm.apply(ds.train_images[train_idx]), norm.apply(ds.train_images[val_idx])
    ty, vy = torch.from_numpy(ds.train_labels[train_idx]), torch.from_numpy(ds.train_labels[val_idx])
    augment = None
    if augment_pad or augment_flip:
        # Pad with the normalised value of a black pixel (the dataset's background).
        augment = RandomCropFlip(augment_pad, augment_flip, fill=-norm.mean[0] / norm.std[0])
    calib = tx[torch.from_numpy(np.random.default_rng(seed).permutation(len(tx))[:512])]
    return ImageData(
        train=TensorBatches(tx, ty, batch_size, shuffle=True, seed=seed, transform=augment),
        val=TensorBatches(vx, vy, 512, distributed=False),
        test_x=norm.apply(test_images),
        test_y=torch.from_numpy(test_labels),
        calibration_x=calib,
        norm=norm,
        labels=list(fashion_mnist.LABELS),
        dataset={
            "name": fashion_mnist.NAME,
            "sha256": ds.sha256,
            "official": ds.official,
            "splits": {"train": len(train_idx), "validation": len(val_idx), "test": len(test_labels)},
            "split_seed": seed,
        },
    )


def card_io(data: ImageData) -> dict:
    """The card's inputs, outputs, preprocess and labels: the same for every image classifier, whatever trained
    it, so that /classify and every client treat them alike. Input (N, C, H, W) float32, output logits (N, classes)."""
    c, h, w = data.test_x.shape[1:]
    return {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, c, h, w]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, len(data.labels)]}],
        "preprocess": {"kind": "image", "height": h, "width": w, "channels": c, "scale": 1 / 255,
                       "mean": list(data.norm.mean), "std": list(data.norm.std)},
        "labels": data.labels,
    }


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """Logits (N, classes) for inputs (N, C, H, W), in eval mode."""
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def metrics(logits: torch.Tensor, y: torch.Tensor, split: str) -> dict:
    return {
        "split": split,
        "examples": len(y),
        "accuracy": float((logits.argmax(1) == y).float().mean()),
        "cross_entropy": float(F.cross_entropy(logits, y)),
    }
