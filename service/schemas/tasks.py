"""Bodies of the task endpoints for people: classify (images, pixel arrays or texts) and score (a text); the image
fields that /reconstruct and /embed share with /classify (their bodies: schemas.images)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field, WithJsonSchema

from service.runtime.tasks.language_model import MAX_CHARS
from service.schemas.base import Body

MAX_IMAGES = 1024  # per request, whatever the model; each model takes at most its max_batch_size

TopK = Annotated[int | None, Field(None, ge=1, description="labels per item, most likely first; default 3, at most "
                                                             "the model's number of labels (more are cut to it)")]
Pixels = Annotated[Any, WithJsonSchema({
    "type": "array", "description": "raw pixel values 0-255: rows (H, W), or channels of rows (C, H, W)",
    "items": {"type": "array",
              "items": {"anyOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]}},
})]
TINY_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgAAAAAgABSK+kcQAAAABJRU5ErkJggg==")


class ImagesBody(Body):
    """Encoded images, resized and normalised as the model card says (the field every image endpoint takes)."""

    images: list[str] = Field(min_length=1, max_length=MAX_IMAGES, description="base64 PNG or JPEG, or `data:` URLs",
                              examples=[[TINY_PNG]])


class ArraysBody(Body):
    """Raw pixels of the model's size, normalised as the model card says."""

    arrays: list[Pixels] = Field(min_length=1, max_length=MAX_IMAGES)


class ClassifyImages(ImagesBody):
    """Image classifiers: encoded images, resized and normalised as the model card says."""

    top_k: TopK


class ClassifyArrays(ArraysBody):
    """Image classifiers: raw pixels of the model's size, normalised as the model card says."""

    top_k: TopK


class ClassifyTexts(Body):
    """Text classifiers: texts tokenised with the model's tokenizer.json, as in training."""

    texts: list[str] = Field(min_length=1, description="at most the model's max_batch_size texts",
                             examples=[["I love this!", "worst day ever"]])
    top_k: TopK


class ClassifyText(Body):
    """Text classifiers: one text."""

    text: str = Field(examples=["I love this!"])
    top_k: TopK


IMAGE_BODIES = {"images": ClassifyImages, "arrays": ClassifyArrays}
TEXT_BODIES = {"texts": ClassifyTexts, "text": ClassifyText}


class Label(BaseModel):
    label: str
    index: int = Field(ge=0)
    probability: float = Field(ge=0, le=1)


class ClassifyResponse(BaseModel):
    model: str
    version: str
    predictions: list[list[Label]] = Field(description="per image or text, its top_k labels, most likely first")


class ScoreRequest(Body):
    text: str = Field(min_length=1, max_length=MAX_CHARS, examples=["The engineer looked at the sea."])


class TokenScore(BaseModel):
    token: str
    id: int = Field(ge=0)
    logprob: float = Field(description="natural log of the token's probability given the tokens before it")


class ScoreResponse(BaseModel):
    model: str
    version: str
    tokens: list[TokenScore]
    token_count: int = Field(ge=1)
    logprob: float = Field(description="sum of the tokens' logprob")
    cross_entropy: float = Field(description="nats per token")
    bits_per_token: float
    perplexity: float
