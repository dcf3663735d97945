"""FastAPI dependencies as `Annotated` aliases, so routes declare what they need in one word."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.runtime.repository import ModelRepository
from service.settings import Settings


def _repository(request: Request) -> ModelRepository:
    return request.app.state.repository


def _settings(request: Request) -> Settings:
    return request.app.state.settings


Repo = Annotated[ModelRepository, Depends(_repository)]
Config = Annotated[Settings, Depends(_settings)]
