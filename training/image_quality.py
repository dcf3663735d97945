"""How good generated images are, measured with our own Fashion-MNIST classifier (numpy + onnxruntime only).

Two measures, both read off the shipped `fashion-resnet` graph:
- a Frechet distance between two sets of images: each set's penultimate-layer features (the 64 pooled
  channels that feed the classifier's last layer) fitted with a Gaussian, and
  d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).
  This is FID's formula on a different network: the literature's FID uses Inception-v3 features of
  299x299 RGB images, so these figures are comparable only with each other, never with published FIDs;
- class coverage: the share of images the classifier assigns to each class, and its mean top-1
  probability. A generator that collapses onto a few modes leaves classes empty or overfull, and
  images no class explains well get a low top-1 probability.

Images go in as uint8 pixels (N, 28, 28), exactly what `/sample` sends as PNG, and are preprocessed as
the classifier's card says.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from training.export.onnx_eval import run_graph, session
from zooserve.card import ModelCard, load_card
from zooserve.images import to_input
from zooserve.numeric import softmax


def _with_features(path: Path) -> tuple[bytes, str]:
    """The classifier's graph with one more output: the input of the node that makes the logits, i.e. the
    penultimate layer's features (for fashion-resnet the pooled channels, (N, 64))."""
    import onnx  # here, not at the top: onnx is a train extra, and image-grids (reconstructions) runs without it

    proto = onnx.load(str(path))
    logits = proto.graph.output[0].name
    last = next(n for n in proto.graph.node if logits in n.output)
    features = last.input[0]
    proto.graph.output.append(onnx.helper.make_tensor_value_info(features, onnx.TensorProto.FLOAT, None))
    return proto.SerializeToString(), features


@dataclass
class FeatureModel:
    """A shipped image classifier that turns uint8 images into (features, class probabilities)."""

    card: ModelCard
    session: ort.InferenceSession

    @classmethod
    def open(cls, model_dir: Path, threads: int = 0) -> "FeatureModel":
        card = load_card(model_dir)
        blob, _ = _with_features(model_dir / card.artifact.file)
        return cls(card, session(blob, threads))

    @property
    def name(self) -> str:
        return f"{self.card.name}/{self.card.version}"

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 images (N, H, W) -> features (N, F) float64 and probabilities (N, classes)."""
        x = to_input(pixels[:, None], self.card.preprocess)  # (N, 1, H, W)
        logits, feats = run_graph(self.session, {self.session.get_inputs()[0].name: x}).values()
        return feats.reshape(len(feats), -1).astype(np.float64), softmax(logits)


def gaussian(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and covariance (F, F) of features (N, F), N - 1 in the denominator."""
    return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """The symmetric square root of a positive semi-definite matrix (tiny negative eigenvalues from
    rounding are clipped to 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """d^2 between Gaussians a = (mu1, S1) and b = (mu2, S2). tr((S1 S2)^1/2) is computed as
    tr((S1^1/2 S2 S1^1/2)^1/2), whose matrix is symmetric, so eigh applies and no complex parts appear."""
    (mu1, s1), (mu2, s2) = a, b
    r1 = _sqrt_psd(s1)
    cross = np.trace(_sqrt_psd(r1 @ s2 @ r1))
    d2 = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * cross)
    return max(d2, 0.0)  # a set against itself rounds to about -1e-12


def coverage(probs: np.ndarray, labels: list[str]) -> tuple[dict[str, float], float]:
    """label -> share of the images whose top-1 class it is, and the mean top-1 probability."""
    top = probs.argmax(axis=1)
    shares = {label: float(np.mean(top == i)) for i, label in enumerate(labels)}
    return shares, float(probs.max(axis=1).mean())


# The coverage targets for generated images: every class's share within SHARE_RANGE, and a mean
# top-1 probability of at least TOP1_MIN.
SHARE_RANGE = (0.05, 0.20)
TOP1_MIN = 0.80


@dataclass(frozen=True)
class Quality:
    images: int
    frechet_distance: float
    class_shares: dict[str, float]
    mean_top1_probability: float

    def meets_targets(self, low: float = SHARE_RANGE[0], high: float = SHARE_RANGE[1],
                      top1: float = TOP1_MIN) -> bool:
        """The issue's coverage targets: every class between `low` and `high`, mean top-1 >= `top1`."""
        return (all(low <= s <= high for s in self.class_shares.values())
                and self.mean_top1_probability >= top1)


def measure(model: FeatureModel, pixels: np.ndarray, reference: tuple[np.ndarray, np.ndarray]) -> Quality:
    """The figures for uint8 images (N, H, W) against the reference Gaussian (the test images')."""
    feats, probs = model.run(pixels)
    shares, top1 = coverage(probs, model.card.labels)
    return Quality(len(pixels), frechet_distance(gaussian(feats), reference), shares, top1)
