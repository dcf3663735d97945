"""Shared fixtures: a tiny fake Fashion-MNIST on disk, class-dependent image tensors, and a network guard.

Nothing here needs the real 30 MB dataset or the network.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) does not put the repo on sys.path
    sys.path.insert(0, str(ROOT))

from training.data import fashion_mnist  # noqa: E402
from training.data.idx import write_idx  # noqa: E402

torch.set_num_threads(1)  # the machine has 2 cores and is busy training models


def pytest_configure(config):
    # Noise from torch.onnx's exporter internals, not from this project.
    config.addinivalue_line("filterwarnings", "ignore:`isinstance\\(treespec, LeafSpec\\)` is deprecated:FutureWarning")


def class_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 (N, 28, 28): dim noise plus a bright vertical bar whose column depends on the class."""
    images = rng.integers(0, 60, size=(len(labels), 28, 28), dtype=np.uint8)
    for i, label in enumerate(labels):
        col = 2 + 2 * int(label)
        images[i, 4:24, col:col + 3] = rng.integers(200, 256, size=(20, 3), dtype=np.uint8)
    return images


def balanced_labels(n: int, rng: np.random.Generator, classes: int = 10) -> np.ndarray:
    return rng.permutation(np.arange(n) % classes).astype(np.uint8)


LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any download attempt fails loudly instead of reaching the internet (requests to this machine, e.g. a
    test server, still go through); tests that need a download replace urlopen with a fake."""
    real_urlopen = urllib.request.urlopen

    def guarded(url, *args, **kwargs):
        full = url.full_url if isinstance(url, urllib.request.Request) else str(url)
        if urllib.parse.urlsplit(full).hostname in LOCAL_HOSTS:
            return real_urlopen(url, *args, **kwargs)
        raise urllib.error.URLError(f"tests must not touch the network (tried {full})")

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@pytest.fixture(scope="session")
def make_fake_fashion(tmp_path_factory):
    """Factory: write the four Fashion-MNIST idx files (random but class-dependent) and return their folder."""

    def make(n_train: int = 96, n_test: int = 32, *, seed: int = 0, compress: bool = True,
             n_train_labels: int | None = None) -> Path:
        rng = np.random.default_rng(seed)
        d = tmp_path_factory.mktemp("fashion")
        train_labels = balanced_labels(n_train, rng)
        test_labels = balanced_labels(n_test, rng)
        arrays = {
            "train_images": class_images(train_labels, rng),
            "train_labels": train_labels if n_train_labels is None else balanced_labels(n_train_labels, rng),
            "test_images": class_images(test_labels, rng),
            "test_labels": test_labels,
        }
        for key, (fname, _) in fashion_mnist.FILES.items():
            write_idx(d / (fname if compress else fname.removesuffix(".gz")), arrays[key], compress=compress)
        return d

    return make


@pytest.fixture
def hermetic_search(monkeypatch, tmp_path):
    """Point the system and cache locations at empty temporary folders and clear $ZOOSERVE_DATA, so the
    machine's real dataset is never found. Returns (system_dir, cache_dir)."""
    system, cache = tmp_path / "system", tmp_path / "cache"
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", system)
    monkeypatch.setattr(fashion_mnist, "CACHE_DIR", cache)
    monkeypatch.delenv("ZOOSERVE_DATA", raising=False)
    return system, cache


@pytest.fixture
def make_image_tensors():
    """Factory: (x float32 (N, 1, 28, 28) roughly standardised, y int64 (N,)) of class-dependent images."""

    def make(n: int = 64, *, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(seed)
        labels = balanced_labels(n, rng)
        images = class_images(labels, rng)
        x = torch.from_numpy(images).float().div_(255.0).sub_(0.2).div_(0.3).unsqueeze(1)
        return x.contiguous(), torch.from_numpy(labels.astype(np.int64))

    return make


FAKE_WORDS = ("the island engineer sailor reporter boy dog balloon fire sea rock cave wind storm ship north "
              "south coast granite house smith nab pencroft herbert spilett harding cyrus top").split()


def fake_book(n_paragraphs: int = 120, *, seed: int = 0) -> str:
    """A Gutenberg-style book: header, title line, wrapped paragraphs of sentences, end marker; CRLF lines."""
    rng = np.random.default_rng(seed)
    paras = []
    for _ in range(n_paragraphs):
        sentences = []
        for _ in range(rng.integers(1, 5)):
            words = [FAKE_WORDS[i] for i in np.minimum(rng.zipf(1.3, size=rng.integers(3, 14)) - 1, len(FAKE_WORDS) - 1)]
            sentences.append(" ".join(words).capitalize() + str(rng.choice([".", "!", "?", ","])))
        text = " ".join(sentences)
        # Hard-wrap at about 60 columns, as Gutenberg texts are.
        lines, line = [], ""
        for word in text.split():
            if len(line) + len(word) > 60:
                lines.append(line)
                line = ""
            line = f"{line} {word}".strip()
        paras.append("\n".join(lines + [line]))
    body = "THE MYSTERIOUS ISLAND\n\n" + "\n\n".join(paras) + "\n\n"
    text = "The Project Gutenberg EBook (fake)\n\n*** START ***\n\n" + body + "End of the Project Gutenberg EBook\n"
    return text.replace("\n", "\r\n")


@pytest.fixture(scope="session")
def fake_corpus(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "book.txt"
    path.write_bytes(("\ufeff" + fake_book()).encode("utf-8"))
    return path
