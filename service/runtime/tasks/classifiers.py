"""The classify task: image classifiers decode images, subword text classifiers tokenise texts, as their
cards say; both answer the k most likely labels with their probabilities."""

from __future__ import annotations

import asyncio

import numpy as np

from service.runtime.errors import BadInput, ModelLoadError, json_type, shown
from service.runtime.tasks.base import ClassifyRequest, ServedModel
from service.runtime.tasks.images import ImageInputs
from zooserve.numeric import softmax
from zooserve.text import ATTENTION_MASK, INPUT_IDS, SubwordTokenizer

DEFAULT_K = 3
MAX_TEXT_CHARS = 100_000  # truncation keeps max_length tokens anyway; this bounds the tokenizer's work


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[list[dict]]:
    """probs (N, C) -> per row, the k best labels, most likely first."""
    order = np.argsort(-probs, axis=-1)[:, :k]
    return [[{"label": labels[j], "index": int(j), "probability": float(row[j])} for j in idx]
            for row, idx in zip(probs, order)]


class Classifier(ServedModel):
    """What both classifiers share: top-k over the card's labels."""

    def k(self, top_k: int | None) -> int:
        """The k to answer: the request's (clipped to the number of labels), else DEFAULT_K."""
        labels = len(self.card.labels)
        k = DEFAULT_K if top_k is None else top_k  # 0 is a value, not "not given"
        k = min(k, labels) if k > 0 else k
        if not 1 <= k <= labels:
            raise BadInput(f"top_k must be between 1 and {labels}, got {k}")
        return k

    def answer(self, logits: np.ndarray, k: int) -> list[list[dict]]:
        """logits (N, C) -> per row, the k best labels with probabilities."""
        return top_k(softmax(logits), self.card.labels, k)


class ImageClassifier(Classifier, ImageInputs):
    noun = "an image classifier"

    async def classify(self, request: ClassifyRequest, *, timeout_s: float) -> list[list[dict]]:
        """Encoded images or pixel lists -> batch (N, C, H, W), preprocessed as the card says -> top-k."""
        if request.texts is not None:
            raise BadInput(f"model {shown(self.name)} is an image classifier: send \"images\" (base64 PNG/JPEG), "
                           f"\"arrays\" (pixel lists) or multipart \"files\", not \"{request.field}\"")
        batch = await self.image_batch(request)
        k = self.k(request.top_k)  # before the model runs: a bad k costs nothing
        out = await self.infer({self.card.inputs[0].name: batch}, timeout_s=timeout_s)  # checks the batch
        return self.answer(out[self.card.outputs[0].name], k)


def check_texts(texts, field: str, limit: int) -> list[str]:
    """A non-empty list of at most `limit` non-empty strings, or BadInput naming `field` (and the item)."""
    if not isinstance(texts, list):
        raise BadInput(f'"{field}" must be a list of strings, got {json_type(texts)}')
    if not texts:
        raise BadInput(f'"{field}" is empty: give at least one text')
    if len(texts) > limit:
        raise BadInput(f'"{field}": at most {limit} texts per request (this model\'s max_batch_size), got {len(texts)}')
    for i, t in enumerate(texts):
        where = f"{field}[{i}]" if field == "texts" else field
        if not isinstance(t, str):
            raise BadInput(f"{where} must be a string, got {json_type(t)}")
        if not t.strip():
            raise BadInput(f"{where} is empty: give some text to classify")
        if len(t) > MAX_TEXT_CHARS:
            raise BadInput(f"{where} has {len(t)} characters, more than the {MAX_TEXT_CHARS} accepted")
    return texts


def subword_tokenizer(card, files: dict[str, bytes]) -> SubwordTokenizer:
    """A wordpiece/bpe card's tokenizer.json, which must be one of its checked (sha256) extra files."""
    pre = card.preprocess
    if pre.kind != "text" or not pre.tokenizer_file:
        raise ModelLoadError("a text classifier needs a tokenizer (preprocess.tokenizer_file)")
    if pre.tokenizer_file not in files:
        raise ModelLoadError(f"{pre.tokenizer_file} is not listed in the card's extra_files (size and sha256), so it "
                             f"cannot be checked")
    if sorted(i.name for i in card.inputs) != sorted((INPUT_IDS, ATTENTION_MASK)):
        raise ModelLoadError(f"a {pre.tokenizer} text model takes {INPUT_IDS} and {ATTENTION_MASK}, the card lists "
                             f"{[i.name for i in card.inputs]}")
    try:
        return SubwordTokenizer(files[pre.tokenizer_file], max_length=pre.max_length,
                                special_tokens=pre.special_tokens, vocab_size=pre.vocab_size)
    except ValueError as exc:
        raise ModelLoadError(f"{pre.tokenizer_file}: {exc}") from exc


class TextClassifier(Classifier):
    noun = "a text classifier"

    def __init__(self, card, session, *, files, settings, **kw):
        self.tokenizer = subword_tokenizer(card, files)  # first: the batcher pads with its values
        super().__init__(card, session, files=files, settings=settings, **kw)

    def pad_values(self) -> dict[str, int]:
        return self.tokenizer.pad_values

    def index_bounds(self) -> dict[str, tuple[int, int]]:
        return {INPUT_IDS: (0, self.card.preprocess.vocab_size - 1), ATTENTION_MASK: (0, 1)}

    def max_length(self) -> int | None:
        return self.card.preprocess.max_length  # the position table's size

    async def classify(self, request: ClassifyRequest, *, timeout_s: float) -> list[list[dict]]:
        """Checked texts -> per text, the k most likely labels with probabilities.

        Each text is tokenised alone (ids (T_i,), [CLS] ... [SEP], truncated to max_length) and queued as its
        own request, so the batcher pads it only to the longest text of the batch it joins, and buckets by
        length."""
        if request.texts is None:
            raise BadInput(f"model {shown(self.name)} is a text classifier: give exactly one of \"texts\" (a list of "
                           f"strings) or \"text\" (a string)")
        field, tok = request.field, self.tokenizer
        texts = check_texts(request.texts, field, self.batcher.max_batch_size)
        k = self.k(request.top_k)
        # In a thread: pure Python (zooserve.wordpiece) holds the GIL, but the event loop gets it back every
        # switch interval, so a request of long texts delays other requests' I/O without stopping it.
        ids = await asyncio.to_thread(tok.encode, texts)
        for i, row in enumerate(ids):
            if len(row) <= tok.specials:  # only [CLS] [SEP]: the normaliser removed everything (control characters)
                where = f"{field}[{i}]" if field == "texts" else field
                raise BadInput(f"{where} has no tokens once normalised: give some text to classify")
        # Per text: input_ids (1, T_i) and an all-ones attention_mask (1, T_i); the batcher pads both.
        requests = [{INPUT_IDS: row[None], ATTENTION_MASK: np.ones((1, len(row)), dtype=np.int64)} for row in ids]
        outs = await self.batcher.submit_many(requests, timeout_s=timeout_s)
        logits = np.concatenate([o[self.card.outputs[0].name] for o in outs])  # (N, C)
        return self.answer(logits, k)
