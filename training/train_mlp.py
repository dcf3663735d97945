"""Train the from-scratch numpy MLP (training/scratch_mlp) on Fashion-MNIST, export its ONNX graph with a
parity check against the numpy forward pass, and write its card.

    zooserve train-mlp                                   # the shipped fashion-mlp
    zooserve train-mlp --hidden 256 --epochs 10 --name my-mlp

The images come through the same pipeline as the CNNs' (training.tasks.image_classification.prepare: the
same split, the same normalisation), so the card's preprocess is theirs and /classify treats the MLP
alike; torch only loads and normalises them there. Everything after that is numpy: the forward pass,
backpropagation and mini-batch gradient descent with momentum (training/scratch_mlp/model.py). The epoch
with the best validation accuracy is kept; the test split is measured once, at the end.

Outputs: `<out>/<name>/<version>/model.onnx` + `model.json`, and under `<runs>/<name>/` `history.json`,
`curves.png` and `confusion.png`.
"""

from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from training.engine.history import confusion_matrix, plot_confusion, plot_curves, save_json
from training.export.card import next_version, write_card
from training.scratch_mlp import onnx_graph
from training.scratch_mlp.model import MLP, MomentumSGD, cross_entropy
from training.tasks import image_classification as task

DRY_RUN_IMAGES = 512
PARITY_INPUTS = 1000


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default="fashion-mlp", help="model name in the repository")
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 256], help="sigmoid hidden layer widths")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine decay to 0 over the run)")
    p.add_argument("--momentum", type=float, default=0.9, help="0 for plain mini-batch gradient descent")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 on the weights (not the biases)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data", help="folder with the Fashion-MNIST idx files")
    p.add_argument("--val-size", type=int, default=5000, help="validation images taken from the 60k train set")
    p.add_argument("--out", type=Path, default=None, help="model repository to write (default: models/)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where history and plots go")
    p.add_argument("--version", type=int, help="version to write (default: the next free one)")
    p.add_argument("--dry-run", action="store_true",
                   help=f"one epoch on {DRY_RUN_IMAGES} images; writes only under <runs>/dry-run/")
    return p.parse_args(argv)


def metrics(mlp: MLP, x: np.ndarray, y: np.ndarray, split: str) -> dict:
    logits = mlp.logits(x)
    return {"split": split, "examples": len(y), "accuracy": float(np.mean(logits.argmax(1) == y)),
            "cross_entropy": cross_entropy(logits, y)}


def train(mlp: MLP, x: np.ndarray, y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray, args) -> tuple[MLP, list[dict], float]:
    """Mini-batch gradient descent with momentum over shuffled rows x (N, 784); returns the weights of the
    epoch with the best validation accuracy, the history, and the training wall time in seconds."""
    rng = np.random.default_rng(args.seed)
    opt = MomentumSGD(args.momentum)
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    total_steps, step = args.epochs * steps_per_epoch, 0
    history, best, best_acc, t0 = [], mlp, -1.0, time.monotonic()
    for epoch in range(1, args.epochs + 1):
        order = rng.permutation(len(x))
        loss_sum = 0.0
        for i in range(0, len(x), args.batch_size):
            idx = order[i:i + args.batch_size]
            lr = 0.5 * args.lr * (1 + math.cos(math.pi * step / total_steps))  # cosine decay, per step
            loss, grads = mlp.loss_and_grads(x[idx], y[idx], args.weight_decay)
            opt.step(mlp.parameters, grads, lr)
            loss_sum += loss * len(idx)
            step += 1
        train_m = metrics(mlp, x, y, "train")  # after the epoch, without the weight decay term
        val_m = metrics(mlp, val_x, val_y, "validation")
        row = {"epoch": epoch, "lr": lr, "train_loss": loss_sum / len(x), "train_accuracy": train_m["accuracy"],
               "val_loss": val_m["cross_entropy"], "val_accuracy": val_m["accuracy"],
               "wall_time_s": round(time.monotonic() - t0, 2)}
        history.append(row)
        print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        if val_m["accuracy"] > best_acc:
            best_acc, best = val_m["accuracy"], copy.deepcopy(mlp)
    return best, history, time.monotonic() - t0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        args.epochs = 1
    out = args.out or (args.runs / "dry-run" / "models" if args.dry_run else Path("models"))
    run_dir = args.runs / "dry-run" / args.name if args.dry_run else args.runs / args.name
    run_dir.mkdir(parents=True, exist_ok=True)
    data = task.prepare(args.data, val_size=min(args.val_size, DRY_RUN_IMAGES // 4) if args.dry_run else args.val_size,
                        seed=args.seed, batch_size=args.batch_size, augment_pad=0, augment_flip=False,
                        limit=DRY_RUN_IMAGES if args.dry_run else 0)
    # Normalised images (N, 1, 28, 28) float32, as numpy from here on; the MLP sees rows (N, 784).
    train_x, train_y = data.train.x.numpy(), data.train.y.numpy()
    val_x, val_y = data.val.x.numpy(), data.val.y.numpy()
    test_x, test_y = data.test_x.numpy(), data.test_y.numpy()
    image_shape = tuple(train_x.shape[1:])

    sizes = [int(np.prod(image_shape)), *args.hidden, len(data.labels)]
    mlp = MLP.init(sizes, np.random.default_rng(args.seed))
    mlp, history, wall = train(mlp, train_x.reshape(len(train_x), -1), train_y, val_x.reshape(len(val_x), -1), val_y, args)
    best_epoch = max(history, key=lambda r: r["val_accuracy"])["epoch"]
    save_json(history, run_dir / "history.json")
    plot_curves(history, run_dir / "curves.png", args.name)

    val, test = metrics(mlp, val_x, val_y, "validation"), metrics(mlp, test_x, test_y, "test")
    cm = confusion_matrix(test_y, mlp.logits(test_x).argmax(1), len(data.labels))
    plot_confusion(cm, data.labels, run_dir / "confusion.png", f"{args.name}: test accuracy {test['accuracy']:.4f}")
    print(f"{args.name}: test accuracy {test['accuracy']:.4f}, cross-entropy {test['cross_entropy']:.4f} "
          f"(best epoch {best_epoch}, {wall:.1f}s)", flush=True)

    version = args.version or next_version(out, args.name)
    model_dir = out / args.name / str(version)
    widths = "-".join(str(n) for n in sizes)
    onnx_graph.export(mlp, model_dir / "model.onnx", image_shape, doc=f"{args.name}: numpy MLP {widths}, sigmoid")
    parity = onnx_graph.check_parity(mlp, model_dir / "model.onnx", test_x[:PARITY_INPUTS])
    fields = {
        "name": args.name, "version": version, "task": "image-classification", "family": "mlp/sigmoid",
        "description": f"Multilayer perceptron {widths} with sigmoid hidden units, written from scratch in numpy "
                       "(backpropagation and mini-batch gradient descent with momentum by hand), on Fashion-MNIST",
        **task.card_io(data),
        "batching": {"max_batch_size": 128, "max_delay_ms": 2.0},
        "metrics": [val, test],
        "dataset": data.dataset,
        "parity": parity,
        "training": {
            "arch": "mlp",
            "model_config": {"sizes": sizes, "activation": "sigmoid", "output": "softmax cross-entropy",
                             "init": "glorot-uniform (x4 gain into sigmoid units), zero biases",
                             "implementation": "numpy, no autograd"},
            "train_config": {"epochs": args.epochs, "batch_size": args.batch_size, "seed": args.seed,
                             "monitor": "val_accuracy", "dry_run": args.dry_run},
            "optim_config": {"name": "sgd-momentum", "lr": args.lr, "momentum": args.momentum,
                             "weight_decay": args.weight_decay, "schedule": "cosine (per step, to 0)"},
            "seed": args.seed, "epochs_run": len(history), "best_epoch": best_epoch, "wall_time_s": round(wall, 1),
            "parameters": mlp.num_parameters(), "device": "cpu", "torch": None, "onnx": onnx.__version__,
        },
    }
    write_card(model_dir, fields)
    print(f"wrote {model_dir} (parity max |diff| {parity['max_abs_diff']:.2e})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
