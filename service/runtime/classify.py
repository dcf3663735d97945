"""The classify task for people: decode images, or tokenise texts, as the card says; return top-k labels."""

from __future__ import annotations

import base64
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from zooserve.card import ImagePreprocess
from service.runtime.errors import BadInput, shown, json_type, task_noun
from service.runtime.infer import infer
from service.runtime.repository import Loaded
from zooserve.numeric import softmax
from zooserve.text import ATTENTION_MASK, INPUT_IDS

MAX_PIXELS = 4096 * 4096  # refuse decompression bombs before decoding them
MAX_TEXT_CHARS = 100_000  # truncation keeps max_length tokens anyway; this bounds the tokenizer's work


def decode_image(blob: bytes, where: str) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(blob))
        if img.width * img.height > MAX_PIXELS:
            raise BadInput(f"{where}: {img.width}x{img.height} image is larger than {MAX_PIXELS} pixels")
        img.load()
        return img
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError, ValueError) as exc:
        raise BadInput(f"{where}: not a decodable PNG or JPEG image ({exc})") from None


def decode_base64(text: str, where: str) -> bytes:
    if not isinstance(text, str):
        raise BadInput(f"{where} must be a base64 string")
    if text.startswith("data:"):  # accept data URLs as browsers produce them
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(f"{where} is not valid base64") from None


def image_to_array(img: Image.Image, pre: ImagePreprocess) -> np.ndarray:
    """Any PIL image -> (C, H, W) float32, resized and normalised as the model was trained."""
    img = img.convert("L" if pre.channels == 1 else "RGB").resize((pre.width, pre.height), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32) * pre.scale
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)  # (C, H, W)
    return normalise(x, pre)


def normalise(x: np.ndarray, pre: ImagePreprocess) -> np.ndarray:
    mean = np.asarray(pre.mean, np.float32)[:, None, None]
    std = np.asarray(pre.std, np.float32)[:, None, None]
    return ((x - mean) / std).astype(np.float32)


def array_to_input(raw, pre: ImagePreprocess, where: str) -> np.ndarray:
    """A nested list of raw pixel values (H, W) or (C, H, W) in 0-255 -> (C, H, W) normalised."""
    try:
        x = np.asarray(raw, dtype=np.float32)
    except (ValueError, TypeError):
        raise BadInput(f"{where} must be a nested list of numbers") from None
    if x.ndim == 2 and pre.channels == 1:
        x = x[None]
    if x.shape != (pre.channels, pre.height, pre.width):
        raise BadInput(f"{where}: shape must be [{pre.height}, {pre.width}] or "
                       f"[{pre.channels}, {pre.height}, {pre.width}], got {list(x.shape)}")
    return normalise(x * pre.scale, pre)


def top_k(probs: np.ndarray, labels: list[str], k: int) -> list[list[dict]]:
    order = np.argsort(-probs, axis=-1)[:, :k]
    return [[{"label": labels[j], "index": int(j), "probability": float(row[j])} for j in idx]
            for row, idx in zip(probs, order)]


def _check_k(loaded: Loaded, k: int) -> None:
    if not 1 <= k <= len(loaded.card.labels):
        raise BadInput(f"top_k must be between 1 and {len(loaded.card.labels)}, got {k}")


async def classify_images(loaded: Loaded, images: list[np.ndarray], *, k: int, timeout_s: float) -> list[list[dict]]:
    """Preprocessed images (C, H, W) -> per image, the k most likely labels with probabilities."""
    card = loaded.card
    if card.task != "image-classification":
        raise BadInput(f"model {shown(card.name)} is {task_noun(card.task)}, not an image classifier")
    if not images:
        raise BadInput("no images given")
    _check_k(loaded, k)
    batch = np.stack(images)  # (N, C, H, W)
    out = await infer(loaded, {card.inputs[0].name: batch}, timeout_s=timeout_s)
    return top_k(softmax(out[card.outputs[0].name]), card.labels, k)


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


async def classify_texts(loaded: Loaded, texts: list[str], *, k: int, timeout_s: float,
                         field: str = "texts") -> list[list[dict]]:
    """Checked texts -> per text, the k most likely labels with probabilities.

    Each text is tokenised alone (ids (T_i,), [CLS] ... [SEP], truncated to max_length) and queued as its own
    request, so the batcher pads it only to the longest text of the batch it joins, and buckets by length."""
    card, tok = loaded.card, loaded.tokenizer
    if card.task != "text-classification" or tok is None:
        raise BadInput(f"model {shown(card.name)} is {task_noun(card.task)}, not a subword text classifier")
    _check_k(loaded, k)
    ids = tok.encode(texts)
    for i, row in enumerate(ids):
        if len(row) <= tok.specials:  # only [CLS] [SEP]: the normaliser removed everything (control characters)
            where = f"{field}[{i}]" if field == "texts" else field
            raise BadInput(f"{where} has no tokens once normalised: give some text to classify")
    # Per text: input_ids (1, T_i) and an all-ones attention_mask (1, T_i); the batcher pads both.
    requests = [{INPUT_IDS: row[None], ATTENTION_MASK: np.ones((1, len(row)), dtype=np.int64)} for row in ids]
    outs = await loaded.batcher.submit_many(requests, timeout_s=timeout_s)
    logits = np.concatenate([o[card.outputs[0].name] for o in outs])  # (N, C)
    return top_k(softmax(logits), card.labels, k)
