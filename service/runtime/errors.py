"""Every error the data plane raises, in one place; `service.http_errors` maps each to an HTTP status."""

import json


class ServiceError(Exception):
    status = 500


class BadInput(ServiceError):
    """The client sent something the model cannot take; the message names the field and the problem."""

    status = 400


class ModelNotFound(ServiceError):
    status = 404


class ModelNotReady(ServiceError):
    status = 503


class Overloaded(ServiceError):
    """The model's queue is full; the client should retry later."""

    status = 503
    retry_after_s = 1


class DeadlineExceeded(ServiceError):
    """The request waited in the queue past its deadline and was dropped before running."""

    status = 504


class ModelFailed(ServiceError):
    """onnxruntime failed on this request (run on its own: the other requests of its batch were answered)."""


class BatchCountError(ServiceError):
    """The model returned a different number of rows than the batch held."""


class GenerationFailed(ServiceError):
    """The model's step raised; every sequence in that step ends with this error."""


class ClientDisconnected(ServiceError):
    """The client of a non-stream request went away before its answer was ready (nobody reads the answer;
    nginx's 499 "client closed request", so the request metrics tell it from a server error)."""

    status = 499


class ModelLoadError(ServiceError):
    """A model's files are missing, corrupt, or disagree with its card."""


class PayloadTooLarge(ServiceError):
    """The body (after decompression) is larger than the server accepts."""

    status = 413


# -- how messages show what the client sent: as JSON, the language of the request ---------------------------

_JSON_TYPES = ((type(None), "null"), (bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
               ((list, tuple), "an array"), (dict, "an object"))


def shown(value, limit: int = 60) -> str:
    """`value` as JSON text (null, true, "text", [1, 2]), shortened to `limit` characters."""
    try:
        text = json.dumps(value.tolist() if hasattr(value, "tolist") else value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def json_type(value) -> str:
    """The JSON type of a parsed value, with its article: "null", "a string", "an object", ..."""
    return next((name for kind, name in _JSON_TYPES if isinstance(value, kind)), type(value).__name__)


def value_types(data: list) -> set[type]:
    """The Python types of the values in (nested) lists, as parsed from JSON: {int, float} for numbers.
    numpy would read "1" as 1.0 and true as 1, so callers check this before converting. One pass of
    `type` over a flat list costs about what numpy's conversion does (15 us for 784 values)."""
    types = set(map(type, data))
    if list in types:
        types.discard(list)
        for x in data:
            if type(x) is list:
                types |= value_types(x)
    return types
