"""Domain errors shared by training and serving.

Each carries a stable `reason` code: the gateway maps the class to an HTTP status in one
place, and tests assert on the reason rather than on message wording.
"""


class CatDogError(Exception):
    """Base class for every error this project raises on purpose."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason


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


class ModelNotAvailableError(CatDogError):
    """No model could be loaded from the configured source."""

    reason = "model_not_available"


class DataSourceError(CatDogError):
    """The training data could not be found or fetched."""

    reason = "data_source"
