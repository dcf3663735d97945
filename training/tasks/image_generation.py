"""What the generative models (autoencoder, VAE, DCGAN) share: Fashion-MNIST with pixels in [0, 1], the
autoencoders' objectives, a quick judge of generated images by a shipped classifier, and their cards.

The pixels stay in [0, 1] (scale 1/255, mean 0, std 1) rather than being standardised as the classifiers'
are: a reconstruction error or a Bernoulli likelihood is then per pixel of the image itself, and a decoder's
sigmoid output is directly an image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training import image_quality
from training.data.images import Normalisation
from training.engine.optim import OptimConfig
from training.engine.trainer import StepResult, TrainConfig
from training.image_quality import FeatureModel
from training.tasks import image_classification
from zooserve.card import ImagePostprocess
from zooserve.latent import to_pixels

UNIT = Normalisation((0.0,), (1.0,))  # raw 0-255 -> [0, 1]
DRY_RUN_IMAGES = 512  # --dry-run keeps this many images of each split


def prepare(data_dir, *, val_size: int, seed: int, batch_size: int, limit: int = 0) -> image_classification.ImageData:
    """The classifiers' split (same seed, same validation images), with pixels in [0, 1] and no augmentation."""
    return image_classification.prepare(data_dir, val_size=val_size, seed=seed, batch_size=batch_size, limit=limit,
                                        norm=UNIT)


def add_run_arguments(p, recipes: dict) -> None:
    """The generative trainers' shared options: the recipe, overrides of its settings, where to write, and
    (add_data_arguments) the data."""
    p.add_argument("recipe", choices=sorted(recipes), help="the recipe to run")
    for flag, kind in (("--epochs", int), ("--batch-size", int), ("--lr", float), ("--seed", int)):
        p.add_argument(flag, type=kind, help="default: the recipe's")
    p.add_argument("--out", type=Path, help="model repository to write (default: models/)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where checkpoints, history and plots go")
    p.add_argument("--version", type=int, default=1)
    p.add_argument("--classifier", type=Path, default=Path("models/fashion-resnet/1"),
                   help="the classifier whose features and predictions measure generated images")
    p.add_argument("--resume", action="store_true", help="continue from <runs>/<name>/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_arguments(p)


def run_settings(args, recipe) -> tuple[TrainConfig, OptimConfig, Path, Path]:
    """The recipe with the command line's overrides: (train config, optimiser config, model repository, run
    folder); a dry run trains 3 batches and writes under <runs>/dry-run/."""
    train = {**recipe.train, **{k: getattr(args, k) for k in ("epochs", "batch_size", "seed")
                                if getattr(args, k) is not None}}
    if args.dry_run:
        train |= {"epochs": 1, "max_batches": 3}
    optim = {**recipe.optim, **({"lr": args.lr} if args.lr else {})}
    out = args.out or (args.runs / "dry-run" / "models" if args.dry_run else Path("models"))
    run_dir = args.runs / "dry-run" / args.recipe if args.dry_run else args.runs / args.recipe
    return TrainConfig(**train, progress=not args.no_progress), OptimConfig(**optim), out, run_dir


def add_data_arguments(p) -> None:
    """The scripts' shared options: --data, --val-size, --threads, --dry-run."""
    p.add_argument("--data", help="folder with the Fashion-MNIST idx files")
    p.add_argument("--threads", type=int, default=0,
                   help="torch's intra-op threads (0: its default); 1 runs faster on a CPU that others share")
    p.add_argument("--val-size", type=int, default=5000, help="validation images taken from the 60k train set")
    p.add_argument("--dry-run", action="store_true",
                   help=f"one epoch of 3 batches on {DRY_RUN_IMAGES} images; writes only under <runs>/dry-run/")


def prepare_from_args(args, *, seed: int, batch_size: int) -> image_classification.ImageData:
    """The data as the options ask (and torch's thread count set from --threads)."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dry_run:
        return prepare(args.data, val_size=min(args.val_size, DRY_RUN_IMAGES // 4), seed=seed, batch_size=batch_size,
                       limit=DRY_RUN_IMAGES)
    return prepare(args.data, val_size=args.val_size, seed=seed, batch_size=batch_size)


def image_preprocess() -> dict:
    """The card's preprocess for the autoencoders' input: raw pixels / 255, nothing else."""
    return {"kind": "image", "height": 28, "width": 28, "channels": 1, "scale": 1 / 255, "mean": [0.0], "std": [1.0]}


# --- objectives (training.engine.trainer.Objective) --------------------------------------------------------------

def reconstruction_objective(model: nn.Module, batch) -> StepResult:
    """Squared error per pixel between x (B,1,28,28) in [0,1] and the model's reconstruction (its last output)."""
    x, _ = batch
    image = model(x)[-1]
    loss = F.mse_loss(image, x)
    return StepResult(loss, len(x), {"mse": float(loss.detach()) * len(x)})


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per row, analytic: 0.5 * sum(mean^2 + var - 1 - log_var)."""
    return 0.5 * (mean.pow(2) + log_var.exp() - 1.0 - log_var).sum(1)


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) per image in nats, each pixel's grey value x in [0,1] read as a Bernoulli target
    (binary cross-entropy summed over the 784 pixels)."""
    return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def vae_objective(model: nn.Module, batch) -> StepResult:
    """-ELBO per image = E_q[-log p(x|z)] (one reparameterised sample of z per image) + KL (analytic)."""
    x, _ = batch
    vae = getattr(model, "module", model)  # DDP wraps it
    mean, log_var = vae.encode(x)  # (B, d) each
    z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
    nll, kl = bernoulli_nll(vae.decoder.logits(z), x), gaussian_kl(mean, log_var)
    mse = F.mse_loss(vae.decoder(mean), x, reduction="none").flatten(1).mean(1)
    return StepResult((nll + kl).mean(), len(x), {"nll": float(nll.detach().sum()), "kl": float(kl.detach().sum()),
                                                  "mse": float(mse.detach().sum())})


# --- judging generated images with a shipped classifier ----------------------------------------------------------

def coverage(images: np.ndarray, post: ImagePostprocess, classifier: FeatureModel) -> dict:
    """Class shares and mean top-1 probability of a graph's images (N, 1, 28, 28) under the classifier, read as
    the uint8 pixels /sample serves (training.image_quality)."""
    _, probs = classifier.run(to_pixels(images, post))
    shares, top1 = image_quality.coverage(probs, classifier.card.labels)
    return {"class_shares": shares, "mean_top1_probability": top1}


# --- figures measured on the exported graphs (what the cards say, reproducible from the ONNX files) ---------------

ELBO_SEED = 0  # the seed of the one sample z ~ q(z|x) per image in the card's reconstruction term


def bernoulli_nll_np(probs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """bernoulli_nll from a graph's sigmoid output (N,1,28,28): probabilities clipped to [1e-7, 1 - 1e-7] (float32
    rounds a sigmoid above ~16.6 to exactly 1), in float64. Nats per image (N,)."""
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    x = x.astype(np.float64)
    return -(x * np.log(p) + (1 - x) * np.log1p(-p)).reshape(len(x), -1).sum(1)


def autoencoder_figures(main: dict[str, np.ndarray], x: np.ndarray, decode=None) -> dict:
    """A split's figures from the main graph's outputs on images x (N,1,28,28) in [0,1]: reconstruction_mse; and,
    for a VAE (outputs with `log_var`), -ELBO = reconstruction_nll + kl in nats per image, where kl is analytic
    and reconstruction_nll is one sample z = mean + exp(log_var / 2) * eps per image (eps from ELBO_SEED),
    decoded by `decode` (codes (N,d) -> images)."""
    figures = {"examples": len(x), "reconstruction_mse": float(np.mean((main["image"] - x) ** 2, dtype=np.float64))}
    if "log_var" in main:
        mean, log_var = main["code"].astype(np.float64), main["log_var"].astype(np.float64)
        kl = 0.5 * (mean ** 2 + np.exp(log_var) - 1.0 - log_var).sum(1)
        eps = np.random.default_rng(ELBO_SEED).standard_normal(mean.shape, dtype=np.float32)
        z = (main["code"] + np.exp(0.5 * main["log_var"]) * eps).astype(np.float32)
        nll = bernoulli_nll_np(decode(z), x)
        figures |= {"negative_elbo": float(np.mean(nll + kl)), "reconstruction_nll": float(np.mean(nll)),
                    "kl": float(np.mean(kl))}
    return figures


def save_grid(pixels: np.ndarray, path: Path, cols: int = 10) -> None:
    """uint8 images (N, H, W) -> one PNG, `cols` per row (training.image_grids.tile: scaled 2x, white gutters)."""
    from training.image_grids import tile

    path.parent.mkdir(parents=True, exist_ok=True)
    tile([pixels[i:i + cols] for i in range(0, len(pixels), cols)]).save(path)
