"""A linear autoencoder against PCA with the same number of components, measured: the seeds' claim that an
autoencoder without nonlinearity is almost PCA.

    python -m training.linear_ae_pca                 # k in 8 16 32 64, prints the table (markdown)
    python -m training.linear_ae_pca --dry-run       # tiny, fast

For each k: PCA from numpy's SVD of the centred train split (pixels in [0, 1]), its test reconstruction error;
a linear autoencoder (training.zoo.generative.LinearAutoencoder: x -> W_e x + b_e -> W_d code + b_d) trained
with squared error through the shared engine, its test error; and how far the decoder's column space is from
the top-k principal subspace: the principal angles between the two (cosines are the singular values of
Q_ae^T U_k, both orthonormal bases), reported as the largest angle and the overlap ||Q_ae^T U_k||_F^2 / k
(1 = the same subspace). Baldi and Hornik (1989): the squared-error optimum spans exactly the PCA subspace,
though W_e and W_d need not be orthogonal, so the codes differ from the PCA scores by an invertible map.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from training.engine.optim import OptimConfig
from training.engine.trainer import TrainConfig, fit
from training.tasks import image_generation as task
from training.zoo.generative import LinearAutoencoder


def pca(train: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean (784,), top-k principal directions (784, k), orthonormal) of train (N, 784)."""
    mean = train.mean(0)
    _, _, vt = np.linalg.svd(train - mean, full_matrices=False)
    return mean, vt[:k].T


def pca_mse(x: np.ndarray, mean: np.ndarray, u: np.ndarray) -> float:
    """Per-pixel squared error of projecting x (N, 784) onto the subspace u (784, k) through the mean."""
    c = x - mean
    return float(np.mean((c - c @ u @ u.T) ** 2))


def subspace_angles(a: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spaces of a (784, k) and orthonormal u (784, k)."""
    q, _ = np.linalg.qr(a)
    cos = np.clip(np.linalg.svd(q.T @ u, compute_uv=False), 0.0, 1.0)
    return np.sort(np.arccos(cos))


def train_linear(data, k: int, train_cfg: TrainConfig, optim_cfg: OptimConfig) -> tuple[LinearAutoencoder, float]:
    torch.manual_seed(train_cfg.seed)
    model = LinearAutoencoder(k)
    result = fit(model, task.reconstruction_objective, data.train, data.val, train_cfg, optim_cfg,
                 device=torch.device("cpu"))
    return model.eval(), result.wall_time_s


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ks", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=3e-3)
    task.add_data_arguments(p)
    args = p.parse_args(argv)
    data = task.prepare_from_args(args, seed=0, batch_size=128)
    train_cfg = TrainConfig(epochs=1 if args.dry_run else args.epochs, batch_size=128, max_batches=3 if args.dry_run
                            else 0, monitor="val_loss", progress=False)
    optim_cfg = OptimConfig(name="adam", lr=args.lr, schedule="cosine")
    train = data.train.x.flatten(1).numpy().astype(np.float64)  # (N, 784) in [0, 1]
    test = data.test_x.flatten(1).numpy().astype(np.float64)
    print(f"train {len(train)} images, test {len(test)}; linear AE: Adam lr {args.lr}, cosine, {train_cfg.epochs} "
          f"epochs, batch 128, best validation epoch kept")
    print("| k | PCA test MSE | linear AE test MSE | AE / PCA | largest principal angle (deg) | subspace overlap | "
          "AE train s |")
    print("|---|---|---|---|---|---|---|")
    mean, directions = pca(train, max(args.ks))
    for k in args.ks:
        u = directions[:, :k]
        model, seconds = train_linear(data, k, train_cfg, optim_cfg)
        with torch.no_grad():
            recon = model(data.test_x)[1].flatten(1).numpy().astype(np.float64)
        ae = float(np.mean((recon - test) ** 2))
        pc = pca_mse(test, mean, u)
        angles = subspace_angles(model.decoder.weight.detach().numpy().astype(np.float64), u)
        overlap = float(np.mean(np.cos(angles) ** 2))
        print(f"| {k} | {pc:.5f} | {ae:.5f} | {ae / pc:.4f} | {np.degrees(angles[-1]):.1f} | {overlap:.4f} | "
              f"{seconds:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
