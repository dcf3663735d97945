"""Errors the data plane raises; `service.errors` maps each to an HTTP status with `{"error": ...}`."""


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


class ModelLoadError(ServiceError):
    """A model's files are missing, corrupt, or disagree with its card."""


class PayloadTooLarge(ServiceError):
    """The body (after decompression) is larger than the server accepts."""

    status = 413
