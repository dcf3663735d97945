"""Parsing a JSON body into its pydantic model, with a 400 that names the field in the API's own words.

`describe` turns pydantic's errors into the sentences the hand-written checks used before: the field, what
it must be, and what came, as JSON (`"top_k" must be an integer, got "3"`). The route handlers' bodies and
FastAPI's path and query parameters both go through it, so every validation error reads alike.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from service.protocol.v2 import load_json
from service.runtime.errors import BadInput, json_type, shown

M = TypeVar("M", bound=BaseModel)


class Body(BaseModel):
    """A request body. Unknown fields are refused (a misspelt parameter must not be silently ignored), and
    JSON types are kept: strict, so "3" is not an integer and true is not 1."""

    model_config = ConfigDict(extra="forbid", strict=True)


def parse(model: type[M], doc: Any, what: str = "the request body") -> M:
    """An already decoded JSON document -> `model`, or BadInput naming each field that is wrong."""
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        raise BadInput(describe(exc.errors(include_url=False), model, what)) from None


def parse_json(model: type[M], raw: bytes, what: str = "the request body") -> M:
    """Body bytes -> `model`. orjson decodes whatever Content-Type the client sent, as before the models."""
    return parse(model, load_json(raw, what), what)


# -- pydantic's errors in the API's words --------------------------------------------------------------------

_WHERE = {"query": "query parameter ", "path": "path parameter ", "header": "header "}
_PHRASES = {  # error type -> what the value must be; {…} from the error's ctx
    "string_type": "must be a string", "int_type": "must be an integer", "int_parsing": "must be an integer",
    "int_from_float": "must be an integer", "float_type": "must be a number", "float_parsing": "must be a number",
    "bool_type": "must be true or false", "bool_parsing": "must be true or false", "list_type": "must be a list",
    "dict_type": "must be a JSON object", "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object", "greater_than_equal": "must be at least {ge}",
    "greater_than": "must be greater than {gt}", "less_than_equal": "must be at most {le}",
    "less_than": "must be less than {lt}", "literal_error": "must be {expected}", "enum": "must be {expected}",
}


def _path(loc: tuple) -> tuple[str, str]:
    """(where the value was, its path): ("body", "texts[1]"), ("query", "top_k"), ..."""
    where = loc[0] if loc and loc[0] in ("body", *_WHERE) else "body"
    parts = loc[1:] if loc and loc[0] == where else loc
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return where, text


def _phrase(e: dict) -> str:
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"must be a non-empty string, got {shown(value)}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "is empty: give at least one"
    if kind in ("string_too_long", "too_long"):
        unit = "characters" if kind == "string_too_long" else "items"
        return f"has {len(value)} {unit}; the limit is {ctx.get('max_length')}"
    if kind in _PHRASES:
        return f"{_PHRASES[kind].format(**ctx)}, got {shown(value) if kind != 'model_type' else json_type(value)}"
    msg = e.get("msg", kind)
    msg = msg.removeprefix("Value error, ")
    return f"{msg[:1].lower()}{msg[1:]}, got {shown(value)}"


def _known_fields(model: type[BaseModel] | None, loc: tuple) -> list[str]:
    """The fields of the (nested) model that holds `loc`'s last key, for 'unknown field' messages."""
    for key in loc[:-1]:
        field = model.model_fields.get(key) if model is not None and isinstance(key, str) else None
        model = field.annotation if field is not None and isinstance(field.annotation, type) else None
    return list(model.model_fields) if model is not None and issubclass(model, BaseModel) else []


def describe(errors: list[dict], model: type[BaseModel] | None = None, what: str = "the request body") -> str:
    """One sentence per error, joined by "; ". A bare field name is quoted, a path is not: `"top_k" must ...`,
    `texts[1] must ...`, `parameters.temperature must ...`."""
    out = []
    for e in errors:
        if e["type"] == "json_invalid":  # FastAPI's own JSON decoding
            out.append(f"{what} is not valid JSON: {(e.get('ctx') or {}).get('error', e.get('msg'))}")
            continue
        where, path = _path(tuple(e.get("loc", ())))
        if not path:
            out.append(f"{what} {_phrase(e)}")
            continue
        name = f'"{path}"' if path.isidentifier() else path
        sentence = f"{_WHERE.get(where, '')}{name} {_phrase(e)}"
        known = _known_fields(model, tuple(e["loc"])) if e["type"] == "extra_forbidden" else []
        out.append(sentence + (f" (known: {', '.join(known)})" if known else ""))
    return "; ".join(out)
