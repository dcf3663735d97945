"""FastAPI dependencies and path parameters as `Annotated` aliases, so routes declare what they need in one word.

The dependencies are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, which
cost two thread hops per request on the hot path (measured in benchmarks/serve_bench.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request

from service.runtime.repository import ModelRepository
from service.settings import Settings


async def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


Repo = Annotated[ModelRepository, Depends(_repository)]
Config = Annotated[Settings, Depends(_settings)]
ModelName = Annotated[str, Path(description="a model in the repository (GET /v1/models lists them)",
                                examples=["fashion-lenet"])]
Version = Annotated[int, Path(ge=1, description="one version of the model; without it, the newest ready one",
                              examples=[1])]
