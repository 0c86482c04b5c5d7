"""Every error this project raises on purpose, in one module.

Each carries a stable `reason` code: clients and tests branch on it, the message says what
happened in words. The gateway maps each class to an HTTP status in one table
(`gateway/errors.py`), and rebuilds a worker's reported error from its reason
(`error_for_reason`). Torch-free.
"""


class CatDogError(Exception):
    """Base class for every error this project raises on purpose."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


# --- images ------------------------------------------------------------------------------


class InvalidImageError(CatDogError):
    """The bytes are not a usable image: empty, truncated, not an image, undecodable, tiny."""

    reason = "invalid_image"


class UnsupportedMediaTypeError(CatDogError):
    """The bytes are an image format we do not accept (for example SVG or a PDF)."""

    reason = "unsupported_media_type"


class ImageTooLargeError(CatDogError):
    """The file is bigger than the per-image byte limit."""

    reason = "too_large"


class DecompressionBombError(InvalidImageError):
    """The header declares more pixels than we are willing to allocate."""

    reason = "decompression_bomb"


# --- requests ----------------------------------------------------------------------------


class MissingFieldError(CatDogError):
    """The multipart body lacks the expected field (or is not multipart at all)."""

    reason = "missing_field"


class InvalidFieldError(CatDogError):
    reason = "invalid_field"


class MalformedRequestError(CatDogError):
    reason = "malformed_request"


class InvalidHTTPError(CatDogError):
    """Bytes that are not an HTTP/1.1 request (a header value with a control character, a
    broken request line): refused by the HTTP parser before any route runs."""

    reason = "invalid_http"


class TooManyFilesError(CatDogError):
    reason = "too_many_files"


class RequestTooLargeError(CatDogError):
    reason = "request_too_large"


class IdempotencyConflictError(CatDogError):
    reason = "idempotency_conflict"


class IdempotencyKeyReusedError(CatDogError):
    """The Idempotency-Key names a job whose upload was different: a client bug, never a
    retry, so the old job is not returned as if it were this one."""

    reason = "idempotency_key_reused"


# --- jobs --------------------------------------------------------------------------------


class JobNotFoundError(CatDogError):
    reason = "job_not_found"


class JobExpiredError(CatDogError):
    reason = "job_expired"


class JobFinishedError(CatDogError):
    """The job already ended (succeeded or failed), so it cannot be cancelled."""

    reason = "job_finished"


# --- capacity and the workers ------------------------------------------------------------


class RetryLaterError(CatDogError):
    """Refused for now: the answer says after how many seconds to try again."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = max(1, retry_after_s)


class QueueFullError(RetryLaterError):
    reason = "queue_full"


class StorageFullError(RetryLaterError):
    """Redis refused a write at its `maxmemory`: uploads wait until results expire or are
    collected."""

    reason = "storage_full"


class InsufficientStorageError(RetryLaterError):
    """The upload would take Redis past the share of its memory uploads may use: refused
    before a byte of it is stored."""

    reason = "insufficient_storage"


class NoWorkerError(CatDogError):
    reason = "no_worker"


class BrokerUnavailableError(CatDogError):
    reason = "broker_unavailable"


class PredictTimeoutError(CatDogError):
    reason = "timeout"


class ModelNotAvailableError(CatDogError):
    """No model could be loaded from the configured source."""

    reason = "model_not_available"


class InferenceFailedError(CatDogError):
    reason = "inference_failed"


class CallbackRefusedError(InvalidFieldError):
    """The callback URL points somewhere a callback must never go (inside the deployment)."""

    reason = "callback_url_refused"


class CallbackError(CatDogError):
    """The job-end callback's receiver did not answer 2xx or could not be reached.
    `retryable` is False for answers that another try would not change (most 4xx)."""

    reason = "callback_failed"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# --- callers ---------------------------------------------------------------------------


class UnauthorizedError(CatDogError):
    """No API key, or one that is unknown, revoked or expired."""

    reason = "invalid_api_key"


class RateLimitedError(RetryLaterError):
    reason = "rate_limited"


class TooManyJobsError(RetryLaterError):
    reason = "too_many_jobs"


class ByteBudgetError(RetryLaterError):
    """The key's jobs already hold as many uploaded bytes as it may store at once."""

    reason = "byte_budget_exceeded"


# --- live quality and offline metrics ----------------------------------------------------


class PredictionNotFoundError(CatDogError):
    """No recorded prediction has that id (or job id and index): unknown, expired, still
    pending, or the item failed."""

    reason = "prediction_not_found"


class FeedbackConflictError(CatDogError):
    """The prediction already received feedback with a different label."""

    reason = "feedback_conflict"


class OfflineMetricsUnavailableError(CatDogError):
    """The tracking server cannot be reached, or it knows no such version or metrics."""

    reason = "offline_metrics_unavailable"


# --- training ----------------------------------------------------------------------------


class DataSourceError(CatDogError):
    """The training data could not be found or fetched."""

    reason = "data_source"


def _subclasses(cls: type[CatDogError]) -> list[type[CatDogError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _subclasses(sub))]


def error_for_reason(reason: str, message: str) -> CatDogError:
    """The exception a worker meant by `reason`. Image reasons without a class of their own
    (empty, truncated, not_an_image, too_small, ...) are invalid images."""
    for cls in _subclasses(CatDogError):
        # Errors that need more than a message (RetryLaterError) never come from a worker.
        if cls.reason == reason and cls.__init__ is CatDogError.__init__:
            return cls(message, reason=reason)
    return InvalidImageError(message, reason=reason)
