"""The MLP itself, by hand: sigmoid hidden layers, a softmax cross-entropy output, backpropagation written
out layer by layer, and mini-batch gradient descent with (optional) momentum.

Why by hand: the seeds teach the perceptron this way, and writing the chain rule out is the point. The
gradients are checked against central differences in tests/test_scratch_mlp.py.

Notation, for a batch of B rows and layer l = 1..L with weights W_l (n_{l-1}, n_l) and biases b_l (n_l,):

    a_0 = x                                   (B, n_0)
    z_l = a_{l-1} W_l + b_l                   (B, n_l)
    a_l = sigmoid(z_l)  for l < L;  z_L are the logits (B, classes)
    loss = mean_i [ logsumexp(z_L[i]) - z_L[i, y_i] ]  (+ weight_decay/2 * sum ||W_l||^2)

    backward: dz_L = (softmax(z_L) - onehot(y)) / B
              dW_l = a_{l-1}^T dz_l,  db_l = sum_i dz_l[i],  da_{l-1} = dz_l W_l^T
              dz_{l-1} = da_{l-1} * a_{l-1} * (1 - a_{l-1})      (sigmoid' = s (1 - s))
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from zooserve.numeric import log_softmax, softmax


def sigmoid(z: np.ndarray) -> np.ndarray:
    # Split by sign so that exp never overflows: for z < 0, sigmoid(z) = e^z / (1 + e^z).
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    """Mean softmax cross-entropy in nats of logits (B, K) against labels (B,)."""
    return float(-log_softmax(logits)[np.arange(len(y)), y].mean())  # float64


@dataclass
class MLP:
    """Weights W_l (n_{l-1}, n_l) and biases b_l (n_l,) of a fully connected net with sigmoid hidden units."""

    weights: list[np.ndarray]
    biases: list[np.ndarray]

    @classmethod
    def init(cls, sizes: list[int], rng: np.random.Generator, dtype=np.float32) -> "MLP":
        """Glorot-uniform weights (limit sqrt(6 / (fan_in + fan_out)); for sigmoid units Glorot & Bengio scale
        it by 4), zero biases. The seeds' N(0, 0.01) start saturates or stalls a deep sigmoid net."""
        weights, biases = [], []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            gain = 4.0 if i < len(sizes) - 2 else 1.0  # the layer feeding a sigmoid gets the x4 gain
            limit = gain * np.sqrt(6.0 / (n_in + n_out))
            weights.append(rng.uniform(-limit, limit, (n_in, n_out)).astype(dtype))
            biases.append(np.zeros(n_out, dtype))
        return cls(weights, biases)

    @property
    def sizes(self) -> list[int]:
        return [self.weights[0].shape[0]] + [w.shape[1] for w in self.weights]

    @property
    def parameters(self) -> list[np.ndarray]:
        return [p for pair in zip(self.weights, self.biases) for p in pair]  # W_1, b_1, W_2, b_2, ...

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Logits (B, classes) for rows x (B, n_0), and the activations a_0..a_{L-1} that backward needs."""
        activations = [x]
        a = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            a = sigmoid(a @ w + b)  # (B, n_l)
            activations.append(a)
        return a @ self.weights[-1] + self.biases[-1], activations

    def logits(self, x: np.ndarray, batch_size: int = 2048) -> np.ndarray:
        """Logits (N, classes) for images (N, 1, 28, 28) or rows (N, n_0), in batches."""
        x = x.reshape(len(x), -1)
        return np.concatenate([self.forward(x[i:i + batch_size])[0] for i in range(0, len(x), batch_size)])

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, weight_decay: float = 0.0) -> tuple[float, list[np.ndarray]]:
        """Mean cross-entropy (+ L2 on the weights, not the biases) of rows x (B, n_0) with labels y (B,), and
        its gradient with respect to each of `parameters`, in the same order."""
        logits, activations = self.forward(x)
        loss = cross_entropy(logits, y)
        loss += 0.5 * weight_decay * sum(float((w.astype(np.float64) ** 2).sum()) for w in self.weights)

        dz = softmax(logits)  # (B, K), in the weights' dtype
        dz[np.arange(len(y)), y] -= 1.0
        dz /= len(y)
        grads: list[np.ndarray] = []
        for layer in range(len(self.weights) - 1, -1, -1):  # l = L..1
            a_prev = activations[layer]  # (B, n_{l-1})
            w = self.weights[layer]
            grads[:0] = [a_prev.T @ dz + weight_decay * w, dz.sum(axis=0)]  # dW_l (n_{l-1}, n_l), db_l (n_l,)
            if layer:
                dz = (dz @ w.T) * a_prev * (1.0 - a_prev)  # through W_l, then through the sigmoid
        return loss, grads


@dataclass
class MomentumSGD:
    """v <- momentum * v - lr * g;  p <- p + v  (classical momentum; momentum 0 is plain gradient descent)."""

    momentum: float = 0.9
    velocity: list[np.ndarray] = field(default_factory=list)

    def step(self, params: list[np.ndarray], grads: list[np.ndarray], lr: float) -> None:
        if not self.velocity:
            self.velocity = [np.zeros_like(p) for p in params]
        for p, g, v in zip(params, grads, self.velocity):
            v *= self.momentum
            v -= lr * g
            p += v  # in place: `params` are the model's own arrays
