"""GET /v1/models/{model}[/versions/{version}]/card: a serving model version's card (`model.json`), read-only.

The card is what a user needs to trust a model: its test figures, dataset, parity check and training
config. It is shown as the server validated it, except that file paths, which training may have recorded
(an n-gram's `train_config.corpus`, say), are cut to their file names: the API names files, never the
paths of the machine that made or serves them.
"""

from __future__ import annotations

import re

from fastapi import APIRouter

from service.deps import ModelName, Repo, Version
from service.schemas.operations import errors

router = APIRouter(prefix="/v1/models", tags=["models"])
# Absolute, home- or dot-relative, or Windows paths; "cnn/lenet", "T-shirt/top" and Hugging Face ids are not.
_PATH = re.compile(r"^(?:/|~|\.{1,2}[\\/]|[A-Za-z]:[\\/]|\\\\)")


def without_paths(value):
    """`value` (a JSON document) with every string that is a file path cut to the file's name."""
    if isinstance(value, dict):
        return {k: without_paths(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_paths(v) for v in value]
    if isinstance(value, str) and _PATH.match(value):
        return re.split(r"[\\/]", value.rstrip("\\/"))[-1]
    return value


def _card(repo: Repo, model: str, version: int | None) -> dict:
    served = repo.get(model, version)  # 404 for an unknown model or version, 503 when it does not serve
    return without_paths(served.card.model_dump(mode="json", by_alias=True))


DOC = {"responses": errors(400, 404, 503),
       "response_description": "the model card (schema: `python -m zooserve.card` prints it)"}


@router.get("/{model}/card", **DOC)
async def model_card(model: ModelName, repo: Repo) -> dict:
    """The card of the version that serves by default (the newest ready one)."""
    return _card(repo, model, None)


@router.get("/{model}/versions/{version}/card", **DOC)
async def version_card(model: ModelName, version: Version, repo: Repo) -> dict:
    """The card of one version."""
    return _card(repo, model, version)
