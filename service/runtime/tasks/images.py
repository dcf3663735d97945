"""Images as the image models read them: PNG/JPEG (raw or base64) or pixel lists in, (C, H, W) float32
out, resized and normalised as the card's preprocess says (as training did); and images as the generative
models answer them: uint8 pixels out as base64 PNGs or pixel lists.

`ImageInputs` is what every model that reads images (classifiers, autoencoders) does with a `/classify`-style
request: check its count, decode it off the event loop, stack it into one batch.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io

import numpy as np
from PIL import Image, UnidentifiedImageError

from service.runtime.errors import BadInput, value_types
from service.runtime.tasks.base import ClassifyRequest, ServedModel
from zooserve.card import ImagePreprocess
from zooserve.images import to_input

FORMATS = ("png", "array")  # how image answers come: base64 PNG, or uint8 pixel lists

MAX_PIXELS = 4096 * 4096  # refuse decompression bombs before decoding them


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
    x = np.asarray(img, dtype=np.float32)
    return to_input(x[None] if x.ndim == 2 else x.transpose(2, 0, 1), pre)  # (C, H, W)


def array_to_input(raw, pre: ImagePreprocess, where: str) -> np.ndarray:
    """A nested list of raw pixel values (H, W) or (C, H, W) in 0-255 -> (C, H, W) normalised."""
    if not isinstance(raw, list) or not value_types(raw) <= {int, float}:  # numpy takes "1" and true as numbers
        raise BadInput(f"{where} must be a nested list of numbers (pixel values from 0 to 255)")
    try:
        with np.errstate(over="ignore"):  # beyond the FP32 range becomes Inf, refused below
            x = np.asarray(raw, dtype=np.float32)
    except ValueError:
        raise BadInput(f"{where} must be a nested list of numbers with rows of equal length") from None
    if not np.isfinite(x).all():  # the model would answer NaN probabilities (null in JSON)
        raise BadInput(f"{where} holds numbers beyond the FP32 range; give pixel values from 0 to 255")
    if x.ndim == 2 and pre.channels == 1:
        x = x[None]
    if x.shape != (pre.channels, pre.height, pre.width):
        raise BadInput(f"{where}: shape must be [{pre.height}, {pre.width}] or "
                       f"[{pre.channels}, {pre.height}, {pre.width}], got {list(x.shape)}")
    return to_input(x, pre)


class ImageInputs(ServedModel):
    """A model that reads images (N, C, H, W) as its card's preprocess says."""

    async def image_batch(self, request: ClassifyRequest) -> np.ndarray:
        """Encoded images or pixel lists -> one batch (N, C, H, W) float32, preprocessed as the card says."""
        self.check_rows(len(request.images) + len(request.arrays))  # before decoding: 65 large PNGs took 17 s
        pre = self.card.preprocess
        images = [array_to_input(raw, pre, where) for where, raw in request.arrays]
        if request.images:  # decoding a large PNG takes a while: in a thread, so the event loop serves on
            images += await asyncio.to_thread(self.decode, request.images)
        if not images:
            raise BadInput("no images given")
        return np.stack(images)

    def decode(self, images: list[tuple[str, bytes | str]]) -> list[np.ndarray]:
        """Encoded images (raw or base64) -> (C, H, W) each, preprocessed as the card says. Blocking."""
        pre = self.card.preprocess
        return [image_to_array(decode_image(blob if isinstance(blob, bytes) else decode_base64(blob, where), where), pre)
                for where, blob in images]


def png_base64(pixels: np.ndarray) -> str:
    """uint8 pixels (H, W) or (H, W, C) -> a base64 PNG."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


async def encoded(pixels: np.ndarray, fmt: str) -> list[str] | np.ndarray:
    """uint8 images (N, H, W[, C]) -> one base64 PNG each ("png"), or the array itself ("array"), which the
    response's orjson writes as nested lists of 0-255 (64 images of 28x28: 0.4 ms, against 1.9 ms through
    Python lists). PNG encoding runs in a thread: those 64 cost 3.3-8 ms of CPU (docs/api.md), which the event
    loop would otherwise spend not serving."""
    if fmt == "array":
        return np.ascontiguousarray(pixels)  # orjson writes C-contiguous arrays only
    return await asyncio.to_thread(lambda: [png_base64(p) for p in pixels])
