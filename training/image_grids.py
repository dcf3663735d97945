"""Picture grids of the shipped generators' samples and the autoencoders' reconstructions, for the docs.

    python -m training.image_grids                   # every generator and autoencoder -> docs/images/
    python -m training.image_grids --dry-run         # one small grid per model into a temporary folder

Made from the ONNX files with onnxruntime (training.generated), by the rule /sample follows: a conditional
generator gets one row per class (`"class": label`), any other generator `rows x cols` images from the seed,
so `POST /v1/models/<name>/sample {"n": 10, "seed": S + row, "class": label}` gives row `row` again.
Autoencoders get pairs of rows: test images (the first of each class), then their reconstructions.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import fashion_mnist
from training.generated import Generated
from zooserve.card import SHIPPED_REPOSITORIES, find_cards, load_card

ROOT = Path(__file__).resolve().parents[1]


def tile(rows: list[np.ndarray], scale: int = 2, gap: int = 2) -> Image.Image:
    """Rows of uint8 images (cols, H, W) -> one greyscale picture, each image scaled up `scale` times
    (nearest neighbour) with `gap` pixels of white between them."""
    cols, h, w = rows[0].shape
    H, W = h * scale + gap, w * scale + gap
    canvas = np.full((len(rows) * H + gap, cols * W + gap), 255, np.uint8)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            big = img.repeat(scale, axis=0).repeat(scale, axis=1)
            canvas[gap + r * H: gap + r * H + h * scale, gap + c * W: gap + c * W + w * scale] = big
    return Image.fromarray(canvas, mode="L")


def sample_rows(model: Generated, rows: int, cols: int, seed: int) -> list[np.ndarray]:
    labels = model.card.labels or []
    if model.card.latent.condition is not None:  # one row per class, each from its own seed
        return [model.sample(cols, seed + i, classes=i) for i in range(len(labels))]
    return [model.sample(cols, seed + i) for i in range(rows)]


def reconstruction_rows(model: Generated, images: np.ndarray, labels: np.ndarray, cols: int) -> list[np.ndarray]:
    """The first test image of each class (cols of them) and its reconstruction, twice over if cols < 10."""
    picked = np.array([np.flatnonzero(labels == c)[k] for k in range(2) for c in range(10)])[: 2 * cols]
    out = []
    for chunk in (picked[:cols], picked[cols:2 * cols]):
        out += [images[chunk], model.reconstruct(images[chunk])]
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=os.pathsep.join(str(ROOT / r) for r in SHIPPED_REPOSITORIES.split(os.pathsep)),
                   help="model repository: a folder, or several joined by ':' (default: models:models-extra)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="where the PNG files go")
    p.add_argument("--rows", type=int, default=8, help="rows of samples for an unconditional generator")
    p.add_argument("--cols", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--data", help="folder with the Fashion-MNIST idx files")
    p.add_argument("--dry-run", action="store_true", help="2 rows of 4, into a temporary folder")
    args = p.parse_args(argv)
    if args.dry_run:
        args.rows, args.cols, args.out = 2, 4, Path(tempfile.mkdtemp(prefix="zooserve-grids-"))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    data = None
    for card_path in find_cards(args.models):
        card = load_card(card_path)
        if card.latent is None:
            continue
        model = Generated(card_path.parent, threads=1)
        made = {}
        if model.samples:
            made["samples"] = tile(sample_rows(model, args.rows, args.cols, args.seed))
        if card.task == "autoencoder":
            data = data or fashion_mnist.load(args.data, allow_download=False)
            made["reconstructions"] = tile(reconstruction_rows(model, data.test_images, data.test_labels, args.cols))
        for kind, picture in made.items():
            path = args.out / f"{card.name}-{kind}.png"
            picture.save(path, optimize=True)
            print(f"{path}  ({picture.width}x{picture.height})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
