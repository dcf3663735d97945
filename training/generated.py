"""Images from a shipped generator or autoencoder, made with onnxruntime from its files alone (no torch): the
same seed -> codes rule (`zooserve.latent`) and the same pixels as `/sample` and `/reconstruct` serve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.export.onnx_eval import run_graph, session
from zooserve.card import ModelCard, load_card
from zooserve.images import to_input
from zooserve.latent import draw, to_pixels


class Generated:
    """A generator's or autoencoder's graphs: `sample` decodes codes drawn from the prior, `reconstruct` runs
    the main graph on images."""

    def __init__(self, model_dir: Path, threads: int = 0):
        self.card: ModelCard = load_card(model_dir)
        latent = self.card.latent
        decoding = self.card.graph(latent.graph).artifact.file if latent.graph else self.card.artifact.file
        self.decoder = session(model_dir / decoding, threads)
        self.main = self.decoder if latent.graph is None else session(model_dir / self.card.artifact.file, threads)

    @property
    def name(self) -> str:
        return f"{self.card.name}/{self.card.version}"

    @property
    def samples(self) -> bool:
        """Whether codes can be drawn: a prior (VAE, GAN), not a plain autoencoder."""
        return self.card.latent.prior is not None

    def _pixels(self, sess, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Inputs with N rows -> uint8 images (N, H, W)."""
        out = self.card.postprocess.output
        return to_pixels(run_graph(sess, inputs, outputs=[out])[out], self.card.postprocess)

    def sample(self, n: int, seed: int, classes: int | None = None) -> np.ndarray:
        """n images (n, H, W) uint8 from `seed`; a conditional generator draws classes from the seed unless
        `classes` (an index into the card's labels) is given."""
        inputs = draw(self.card.latent, n, seed, classes=classes, labels=len(self.card.labels or []))
        return self._pixels(self.decoder, inputs)

    def reconstruct(self, pixels: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W) -> the autoencoder's reconstructions, uint8 (N, H, W)."""
        x = to_input(pixels[:, None], self.card.preprocess)  # (N, 1, H, W)
        return self._pixels(self.main, {self.card.inputs[0].name: x})
