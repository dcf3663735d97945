"""Fashion-MNIST: find or download the four idx files, verify them, and split train/validation/test.

Search order: `--data DIR`, then `$ZOOSERVE_DATA`, then `/usr/share/datasets/fashion-mnist/` (Debian's
`dataset-fashion-mnist`), then the download cache. Failing those, the official files are downloaded and
checked. Checksums are over the *decompressed* idx bytes, because redistributors (Debian among them)
recompress the `.gz` files, which changes their bytes but not the data.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.data.download import DatasetUnavailable, fetch_verified
from training.data.idx import decompress, parse_idx, read_idx_bytes

NAME = "fashion-mnist"
URL_BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "zooserve" / NAME
LABELS = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

# sha256 of each file's decompressed idx bytes.
FILES = {
    "train_images": ("train-images-idx3-ubyte.gz", "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train_labels": ("train-labels-idx1-ubyte.gz", "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "test_images": ("t10k-images-idx3-ubyte.gz", "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "test_labels": ("t10k-labels-idx1-ubyte.gz", "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

HOW_TO_GET = (
    "Fashion-MNIST was not found. Get it one of these ways:\n"
    "  * apt-get install dataset-fashion-mnist   (installs to /usr/share/datasets/fashion-mnist/)\n"
    "  * download the four *-ubyte.gz files from https://github.com/zalandoresearch/fashion-mnist and\n"
    "    pass their folder with --data DIR or ZOOSERVE_DATA=DIR"
)


@dataclass(frozen=True)
class FashionMNIST:
    """Raw arrays: images uint8 (N, 28, 28), labels int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    source: Path
    sha256: dict[str, str]  # file name -> sha256 of its decompressed bytes
    official: bool  # every checksum matches the official release


def candidate_dirs(data_dir: str | os.PathLike | None) -> list[Path]:
    dirs = [Path(data_dir)] if data_dir else []
    if os.environ.get("ZOOSERVE_DATA"):
        dirs.append(Path(os.environ["ZOOSERVE_DATA"]))
    return dirs + [SYSTEM_DIR, CACHE_DIR]


def _has_all(d: Path) -> bool:
    return all(_find(d, fname) is not None for fname, _ in FILES.values())


def _find(d: Path, fname: str) -> Path | None:
    # Accept both the .gz files and already-decompressed ones.
    for p in (d / fname, d / fname.removesuffix(".gz")):
        if p.is_file():
            return p
    return None


def download(dest: Path | None = None, *, timeout: float = 30.0) -> Path:
    """Download the official files into `dest` (default: the cache), verifying each checksum before keeping it."""
    dest = dest or CACHE_DIR
    for fname, sha in FILES.values():
        fetch_verified(URL_BASE + fname, dest / fname, sha, how_to_get=HOW_TO_GET, timeout=timeout,
                       digest_of=lambda blob, url=URL_BASE + fname: decompress(blob, source=url))
    return dest


def load(data_dir: str | os.PathLike | None = None, *, allow_download: bool = True) -> FashionMNIST:
    """Find (or download) and parse the dataset. An explicit `data_dir` must hold the files."""
    if data_dir and not _has_all(Path(data_dir)):
        raise DatasetUnavailable(f"{data_dir} does not hold the four Fashion-MNIST idx files.\n{HOW_TO_GET}")
    source = next((d for d in candidate_dirs(data_dir) if _has_all(d)), None)
    if source is None:
        if not allow_download:
            raise DatasetUnavailable(HOW_TO_GET)
        source = download()
    arrays, digests = {}, {}
    for key, (fname, _) in FILES.items():
        path = _find(source, fname)
        raw = read_idx_bytes(path)
        digests[fname.removesuffix(".gz")] = hashlib.sha256(raw).hexdigest()
        arrays[key] = parse_idx(raw, source=str(path))
    official = all(digests[f.removesuffix(".gz")] == sha for f, sha in FILES.values())
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise ValueError(f"{source}: {split} has {n_img} images but {n_lab} labels")
    return FashionMNIST(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"].astype(np.int64),
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"].astype(np.int64),
        source=source,
        sha256=digests,
        official=official,
    )


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed, seeded split of the official training set into train and validation indices."""
    if not 0 < val_size < n:
        raise ValueError(f"val_size must be in (0, {n}), got {val_size}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])


def main(argv: list[str] | None = None) -> int:
    """Locate or download Fashion-MNIST and print where it is and whether it is the official release."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--data", help="folder with the four idx files")
    p.add_argument("--no-download", action="store_true", help="fail instead of downloading")
    p.add_argument("--dry-run", action="store_true", help="only look on disk: same as --no-download")
    args = p.parse_args(argv)
    try:
        ds = load(args.data, allow_download=not (args.no_download or args.dry_run))
    except DatasetUnavailable as exc:
        print(exc, file=sys.stderr)
        return 2
    print(f"{NAME}: {len(ds.train_labels)} train + {len(ds.test_labels)} test images from {ds.source} "
          f"({'official checksums' if ds.official else 'checksums differ from the official release'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
