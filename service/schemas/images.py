"""Bodies of the image-making endpoints: /sample (generators, VAEs), /reconstruct and /embed (autoencoders).

/reconstruct and /embed take images as /classify does (`images`, `arrays`, or multipart `files`); images
come back as base64 PNGs or, with `"format": "array"`, as uint8 pixel lists.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, WithJsonSchema, field_validator

from service.runtime.generation.sampling import SEED_LIMIT
from service.schemas.base import Body
from service.schemas.tasks import MAX_IMAGES, ArraysBody, ImagesBody

FORMAT_DOC = ('"png": each image a base64 PNG (8-bit grey, or RGB); "array": each image its uint8 pixels, '
              "rows (H, W) or (H, W, C)")
Format = Annotated[Literal["png", "array"], Field(description=FORMAT_DOC)]
Image = Annotated[Any, WithJsonSchema({
    "anyOf": [{"type": "string", "contentEncoding": "base64", "contentMediaType": "image/png"},
              {"type": "array", "items": {"type": "array", "items": {
                  "anyOf": [{"type": "integer", "minimum": 0, "maximum": 255},
                            {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 255}}]}}}],
    "description": "a base64 PNG, or with format \"array\" the pixels"})]
ClassName = Annotated[Any, WithJsonSchema({
    "anyOf": [{"type": "string"}, {"type": "integer", "minimum": 0}],
    "description": "conditional generators only: every image of this class, a label of the model (GET "
                   "/v2/models/{model} lists them) or its index; left out, each image's class is drawn from "
                   "the seed", "examples": ["Bag"]})]


class SampleRequest(Body):
    """New images from a generator's or VAE's prior: image i depends only on the seed and i (n=25 gives the
    first 25 of n=64 with the same seed), never on what else shares the batch."""

    n: int = Field(1, ge=1, le=MAX_IMAGES, description="how many images; at most the model's max_batch_size",
                   examples=[25])
    seed: int | None = Field(None, ge=0, lt=SEED_LIMIT, description="the same seed gives the same images; left "
                                                                   "out, the server draws one and returns it",
                             examples=[1])
    label: ClassName = Field(None, alias="class")
    format: Format = "png"

    @field_validator("label")
    @classmethod
    def _label_or_index(cls, value):
        if value is not None and (not isinstance(value, (str, int)) or isinstance(value, bool)):
            raise ValueError("must be a label (a string) or its index (an integer)")
        return value


class SampleResponse(BaseModel):
    model: str
    version: str
    seed: int = Field(description="the seed the images came from (the request's, or the one the server drew)")
    images: list[Image]
    classes: list[str] | None = Field(None, description="conditional generators: each image's class")


class ReconstructImages(ImagesBody):
    """Autoencoders: encoded images through the code and back."""

    format: Format = "png"


class ReconstructArrays(ArraysBody):
    """Autoencoders: pixel images through the code and back."""

    format: Format = "png"


class EmbedImages(ImagesBody):
    """Autoencoders: encoded images to their codes."""


class EmbedArrays(ArraysBody):
    """Autoencoders: pixel images to their codes."""


class ReconstructResponse(BaseModel):
    model: str
    version: str
    images: list[Image] = Field(description="per image, its reconstruction, in the order sent")


class EmbedResponse(BaseModel):
    model: str
    version: str
    codes: list[list[float]] = Field(description="per image, its code (the encoder's output; a VAE's posterior "
                                                 "mean), in the order sent")


RECONSTRUCT_BODIES = {"images": ReconstructImages, "arrays": ReconstructArrays}
EMBED_BODIES = {"images": EmbedImages, "arrays": EmbedArrays}
