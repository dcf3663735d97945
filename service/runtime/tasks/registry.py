"""Which `ServedModel` class serves a card: keyed on the card's task and its family's kind (the part of
`family` before the slash: "cnn/resnet" -> "cnn"). A task's `None` entry serves the families it does not
name. A new family of an existing task is one line here (and its class, if the task's default does not fit
it); a new task is its classes, its entries here, its card `task` value and its route."""

from __future__ import annotations

from service.runtime.errors import ModelLoadError
from service.runtime.tasks.base import ServedModel
from service.runtime.tasks.classifiers import ImageClassifier, TextClassifier
from service.runtime.tasks.generative import Autoencoder, ImageGenerator
from service.runtime.tasks.language_model import NgramLanguageModel, RecurrentLanguageModel
from zooserve.card import ModelCard

SERVED: dict[tuple[str, str | None], type[ServedModel]] = {
    ("image-classification", None): ImageClassifier,
    ("text-classification", None): TextClassifier,
    ("language-model", "rnn"): RecurrentLanguageModel,
    ("language-model", "ngram"): NgramLanguageModel,
    ("image-generation", None): ImageGenerator,
    ("autoencoder", None): Autoencoder,
}


def served_class(card: ModelCard) -> type[ServedModel]:
    kind = card.family.split("/", 1)[0]
    found = SERVED.get((card.task, kind)) or SERVED.get((card.task, None))
    if found is None:
        known = sorted(f"{t} {k or '(any)'}" for t, k in SERVED)
        raise ModelLoadError(f"no served-model class for task {card.task!r} and family {card.family!r}; known: {known}")
    return found
