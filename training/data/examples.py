"""Write the example images the README's quickstart sends: the first test image of each Fashion-MNIST class.

    python -m training.data.examples            # -> examples/<class>.png (shirt.png, sneaker.png, ...)

Taken from the official test split, which no shipped model trained on; the files are 28x28 8-bit grey PNGs,
as a user would upload them. `tests/test_examples.py` checks that the shipped files are these images.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import fashion_mnist

ROOT = Path(__file__).resolve().parents[2]


def file_name(label: str) -> str:
    """"T-shirt/top" -> "t-shirt.png", "Ankle boot" -> "ankle-boot.png"."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower().split("/")[0]).strip("-") + ".png"


def first_of_each_class(labels: np.ndarray) -> list[int]:
    """Index of the first test image of each class, in class order."""
    return [int(np.flatnonzero(labels == c)[0]) for c in range(len(fashion_mnist.LABELS))]


def write(out: Path, data_dir: str | None = None) -> list[Path]:
    ds = fashion_mnist.load(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for c, i in enumerate(first_of_each_class(ds.test_labels)):
        path = out / file_name(fashion_mnist.LABELS[c])
        Image.fromarray(ds.test_images[i]).save(path, optimize=True)  # (28, 28) uint8: 8-bit grey
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "examples", help="folder to write (default: examples/)")
    p.add_argument("--data", help="folder with the Fashion-MNIST idx files")
    args = p.parse_args(argv)
    for path in write(args.out, args.data):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
