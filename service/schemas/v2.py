"""The Open Inference Protocol's bodies: inference, health, server and model metadata, and the repository
extension.

The inference request is described here and never parsed by pydantic: `service.protocol.v2` reads tensor
data straight from orjson into numpy (and Triton's binary extension from the raw bytes). Its model is what
OpenAPI shows and what the tests check the parser against.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator

from service.runtime.engine.session import V2_TO_NUMPY
from service.runtime.repository import ModelState
from service.schemas.base import Body
from zooserve.card import TensorSpec

Datatype = Literal[tuple(sorted(V2_TO_NUMPY))]  # what the parser accepts
OutputDatatype = Literal[tuple(sorted({*V2_TO_NUMPY, "BYTES"}))]  # BYTES: the classification extension's entries
Elements = Annotated[list[Any], Field(description="the elements in row-major order, flat or nested")]


# -- inference ------------------------------------------------------------------------------------------------

class InputParameters(BaseModel):
    binary_data_size: int | None = Field(
        None, ge=0, description="binary extension: this tensor's bytes (little-endian) follow the JSON header, in "
                                "input order; `data` is then left out")


class InferInput(BaseModel):
    name: str = Field(examples=["input"])
    shape: list[Annotated[int, Field(ge=0)]] = Field(examples=[[1, 1, 28, 28]])
    datatype: Datatype = Field(examples=["FP32"])
    data: Elements | None = None
    parameters: InputParameters | None = None


class OutputParameters(BaseModel):
    binary_data: bool | None = Field(None, description="send this output in the binary part")
    classification: int | None = Field(
        None, ge=1, description="classification extension: the top k along the last axis, as BYTES "
                                '"score:index:label" entries, highest first')


class RequestedOutput(BaseModel):
    name: str = Field(examples=["logits"])
    parameters: OutputParameters | None = None


class RequestParameters(BaseModel):
    binary_data_output: bool | None = Field(None, description="send every output in the binary part")


class InferRequest(BaseModel):
    """An inference request: JSON, or with `Inference-Header-Content-Length` this JSON as a header followed by
    the raw tensors (Triton's binary tensor extension, `application/octet-stream`)."""

    id: str | None = Field(None, description="echoed in the response")
    parameters: RequestParameters | None = None
    inputs: list[InferInput] = Field(min_length=1, description="one tensor per model input; rows up to the "
                                                               "model's max_batch_size")
    outputs: list[RequestedOutput] | None = Field(None, description="outputs to return, in this order; default all")


class OutputParametersOut(BaseModel):
    binary_data_size: int = Field(ge=0, description="this output's bytes in the binary part")


class InferOutput(BaseModel):
    name: str
    datatype: OutputDatatype
    shape: list[Annotated[int, Field(ge=0)]]
    data: list[Any] | None = Field(None, description="flat, row-major; absent when the output is binary")
    parameters: OutputParametersOut | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = Field(None, description="the request's id, when it had one")
    outputs: list[InferOutput]


# -- health and metadata ----------------------------------------------------------------------------------------

class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelParameters(BaseModel):
    task: str = Field(examples=["image-classification"])
    family: str = Field(examples=["cnn/lenet"])
    execution_provider: str = Field(examples=["CPUExecutionProvider"])
    max_batch_size: int = Field(ge=1)
    max_delay_ms: float = Field(ge=0)
    labels: list[str] | None = None


class ModelMetadata(BaseModel):
    """A model (all its versions) or one version; inputs, outputs and parameters once it has loaded."""

    name: str
    versions: list[str]
    platform: str
    state: ModelState
    inputs: list[TensorSpec] | None = None
    outputs: list[TensorSpec] | None = None
    parameters: ModelParameters | None = None
    reason: str | None = Field(None, description="why the version is not ready")


class ModelReady(BaseModel):
    name: str
    version: str
    ready: Literal[True]


# -- repository extension -------------------------------------------------------------------------------------

class IndexRequest(BaseModel):
    """Optional; an empty body lists every version. Other fields are ignored, as Triton does."""

    ready: bool = Field(False, strict=True, description="list only the versions that are ready")


class IndexRow(BaseModel):
    name: str
    version: str
    state: ModelState
    reason: str


class LoadRequest(Body):
    """Optional (tritonclient sends `{}`)."""

    parameters: dict[str, Any] = Field(
        default_factory=dict, json_schema_extra={"maxProperties": 0},
        description="must be empty: zooserve loads the files in its repository, without Triton's `config` or "
                    "`file:` overrides")

    @field_validator("parameters")
    @classmethod
    def _no_overrides(cls, value: dict) -> dict:
        if value:
            raise ValueError("is not supported: zooserve loads the files in its repository, without config or "
                             "file overrides")
        return value


class UnloadParameters(Body):
    unload_dependents: bool = Field(False, description="accepted for Triton's clients; no model has dependents")


class UnloadRequest(Body):
    """Optional (tritonclient sends `{"parameters": {"unload_dependents": false}}`)."""

    parameters: UnloadParameters = UnloadParameters()


class VersionState(BaseModel):
    state: ModelState
    reason: str


class LoadResponse(BaseModel):
    name: str
    versions: dict[str, VersionState]


class UnloadResponse(BaseModel):
    name: str
    state: ModelState
