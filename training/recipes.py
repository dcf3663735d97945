"""Named recipes: the exact settings that trained each model shipped in `models/`.

`zooserve train NAME` reproduces one; any flag on the command line overrides the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Recipe:
    arch: str
    description: str
    model: dict = field(default_factory=dict)  # overrides of the architecture's config dataclass
    train: dict = field(default_factory=dict)  # overrides of TrainConfig
    optim: dict = field(default_factory=dict)  # overrides of OptimConfig
    augment_pad: int = 0  # random-crop padding in pixels; 0 disables the crop
    augment_flip: bool = False
    max_batch_size: int = 64  # batching hints written into the card
    max_delay_ms: float = 2.0


# Nesterov SGD with a one-cycle schedule: the deeper nets' shared recipe.
SGD_ONE_CYCLE = {"name": "sgd", "lr": 0.1, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle"}

RECIPES: dict[str, Recipe] = {
    "fashion-lenet": Recipe(
        arch="lenet",
        description="LeNet-5 (ReLU, max pooling) on Fashion-MNIST",
        train={"epochs": 30, "batch_size": 128, "max_norm": 4.0, "monitor": "val_accuracy"},
        optim={"name": "adamw", "lr": 3e-3, "weight_decay": 5e-4, "schedule": "onecycle"},
        augment_flip=True,
        max_batch_size=128,
    ),
    "fashion-vgg": Recipe(
        arch="vgg",
        description="VGG-style net (3x3 conv stacks, BatchNorm, Dropout) on Fashion-MNIST",
        train={"epochs": 15, "batch_size": 128, "monitor": "val_accuracy"},
        optim={"name": "sgd", "lr": 0.05, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle"},
        augment_pad=2, augment_flip=True,
    ),
    "fashion-resnet": Recipe(
        arch="resnet",
        description="ResNet (3 stages x 2 basic blocks, widths 16/32/64) on Fashion-MNIST",
        model={"widths": (16, 32, 64), "blocks": (2, 2, 2)},
        train={"epochs": 18, "batch_size": 128, "monitor": "val_accuracy"},
        optim=SGD_ONE_CYCLE,
        augment_pad=2, augment_flip=True,
    ),
    "fashion-mobilenet": Recipe(
        arch="mobilenet",
        description="MobileNet-style net (depthwise-separable convs, width multiplier 0.5) on Fashion-MNIST",
        model={"width_multiplier": 0.5},
        train={"epochs": 6, "batch_size": 128, "monitor": "val_accuracy"},
        optim=SGD_ONE_CYCLE,
        augment_pad=2, augment_flip=True,
    ),
    "fashion-alexnet": Recipe(
        arch="alexnet",
        description="AlexNet-style net (5 convs with ReLU and BatchNorm, overlapping max pooling, "
                    "two dense 1024 layers with dropout) scaled to 28x28 Fashion-MNIST",
        model={"widths": (32, 64, 64, 64, 64), "kernels": (5, 3, 3, 3, 3), "hidden": 1024, "norm": "batch"},
        train={"epochs": 12, "batch_size": 128, "monitor": "val_accuracy"},
        optim={"name": "sgd", "lr": 0.05, "nesterov": True, "weight_decay": 5e-4, "schedule": "onecycle"},
        augment_pad=2, augment_flip=True,
    ),
    "fashion-inception": Recipe(
        arch="inception",
        description="Inception-style net (1x1, 3x3, factorised 1xn+nx1 and pooling branches) on Fashion-MNIST",
        train={"epochs": 12, "batch_size": 128, "monitor": "val_accuracy"},
        optim=SGD_ONE_CYCLE,
        augment_pad=2, augment_flip=True,
    ),
}


@dataclass(frozen=True)
class LMRecipe:
    """A recurrent LM's settings: model overrides of RNNLMConfig, TrainConfig and OptimConfig, and the
    truncated-BPTT window."""

    description: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    optim: dict = field(default_factory=dict)
    bptt: int = 100


# Adam with gradient clipping, as the seeds train their char LSTM; cosine decay for the last epochs.
ADAM_CLIPPED = {"name": "adam", "lr": 2e-3, "schedule": "cosine"}

LM_RECIPES: dict[str, LMRecipe] = {
    "island-lstm": LMRecipe(
        description="char-level LSTM (embedding 256, 1 x 512) on The Mysterious Island",
        model={"cell": "lstm", "embedding_dim": 256, "hidden_size": 512, "layers": 1, "dropout": 0.1},
        train={"epochs": 12, "batch_size": 64, "clip_grad": 1.0, "monitor": "val_loss"},
        optim=ADAM_CLIPPED,
    ),
    "island-gru": LMRecipe(
        description="char-level GRU (embedding 256, 1 x 512) on The Mysterious Island",
        model={"cell": "gru", "embedding_dim": 256, "hidden_size": 512, "layers": 1, "dropout": 0.1},
        train={"epochs": 8, "batch_size": 64, "clip_grad": 1.0, "monitor": "val_loss"},
        optim=ADAM_CLIPPED,
    ),
    "island-rnn": LMRecipe(
        description="char-level Elman RNN (tanh; embedding 64, 1 x 512) on The Mysterious Island",
        model={"cell": "rnn", "embedding_dim": 64, "hidden_size": 512, "layers": 1},
        train={"epochs": 10, "batch_size": 64, "clip_grad": 1.0, "monitor": "val_loss"},
        optim={**ADAM_CLIPPED, "lr": 1e-3},
    ),
}


@dataclass(frozen=True)
class GenRecipe:
    """A generative model's settings: the trainer (`autoencoder`, `vae` or `dcgan`), overrides of its config
    dataclass (training.zoo.generative), TrainConfig and OptimConfig."""

    kind: str
    description: str
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    optim: dict = field(default_factory=dict)
    max_batch_size: int = 64
    max_delay_ms: float = 2.0


GEN_RECIPES: dict[str, GenRecipe] = {
    "fashion-autoencoder": GenRecipe(
        kind="autoencoder",
        description="convolutional autoencoder (stride-2 convs -> 32-d code -> transposed convs, sigmoid) on "
                    "Fashion-MNIST, trained on squared error per pixel; outputs the code and the reconstruction",
        model={"dim": 32, "channels": 16},
        train={"epochs": 8, "batch_size": 128, "monitor": "val_loss"},
        optim={"name": "adam", "lr": 2e-3, "schedule": "cosine"},
    ),
    "fashion-vae": GenRecipe(
        kind="vae",
        description="variational autoencoder (conv encoder -> mean and log-variance of a 16-d Gaussian code, "
                    "transposed-conv decoder) on Fashion-MNIST; Bernoulli likelihood: binary cross-entropy "
                    "over the 784 grey pixels in [0, 1], N(0, I) prior, analytic KL",
        model={"dim": 16, "channels": 16},
        train={"epochs": 10, "batch_size": 128, "monitor": "val_loss"},
        optim={"name": "adam", "lr": 2e-3, "schedule": "cosine"},
    ),
    "fashion-dcgan": GenRecipe(
        kind="dcgan",
        description="class-conditional DCGAN on Fashion-MNIST: generator z(64) + label embedding -> dense -> "
                    "128x7x7 -> transposed convs with BatchNorm -> 1x28x28 tanh; projection discriminator; "
                    "one discriminator and one (non-saturating) generator step per iteration",
        model={"dim": 64, "embed": 16, "channels": 64, "d_channels": 32},
        train={"epochs": 10, "batch_size": 128},  # no LR schedule: the 14-epoch run stopped after 10 is this
        optim={"name": "adam", "lr": 2e-4, "betas": (0.5, 0.999)},
    ),
}
