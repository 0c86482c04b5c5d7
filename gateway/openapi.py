"""Helpers that keep the OpenAPI document complete: error responses and streamed bodies."""

from typing import Any

from gateway.schemas import ErrorResponse

_DESCRIPTIONS = {
    401: "No API key, or one that is unknown, revoked or expired",
    404: "No such job (or not one of this API key's)",
    409: "Conflicts with the job's state or with a concurrent request",
    410: "The job expired and its results were deleted",
    413: "A file or the request is over its size limit, or too many files",
    415: "The file is an image format (or a document) that is not accepted",
    422: "Missing or wrong field; empty, truncated, undecodable or bomb image",
    429: "The queue is full, or the API key is over a limit; see Retry-After",
    503: "Redis, the queue or a worker with a model is unavailable",
    504: "No worker answered within the configured timeout",
    507: "The upload would not fit in the memory the service keeps for uploads; see Retry-After",
}


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": _DESCRIPTIONS[code]} for code in codes}


def multipart_body(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """The request body of a route that parses its multipart stream by hand."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": fields, "required": required}
                }
            },
        }
    }
