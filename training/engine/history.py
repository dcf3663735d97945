"""Per-epoch history as JSON, PNG curves of loss and accuracy, and a confusion-matrix PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def save_json(history: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(history, indent=2) + "\n")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: training runs on servers and in CI
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict], path: Path, title: str, metrics: list[str] | None = None) -> None:
    """One panel per metric: by default each found in both train_* and val_* keys (loss, accuracy, ...); a
    metric named in `metrics` plots whichever of train_<m>, val_<m> and <m> itself the history has (a GAN's
    discriminator and generator losses have no validation twin)."""
    plt = _pyplot()
    metrics = metrics or sorted({k[4:] for row in history for k in row if k.startswith("val_")})
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.5), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, metric in zip(axes[0], metrics):
        for key in (f"train_{metric}", f"val_{metric}", metric):
            if any(key in row for row in history):
                ax.plot(epochs, [row.get(key, np.nan) for row in history], marker="o",
                        label=key.removesuffix(f"_{metric}") if key != metric else metric)
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) counts: row = true class, column = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def plot_confusion(cm: np.ndarray, labels: list[str], path: Path, title: str) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    fig.colorbar(im)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
