"""Streaming multipart parsing with limits enforced while the body arrives.

FastAPI's `UploadFile` reads the whole body before the handler runs; here the handler sees
each part as it streams in, so a /predict upload stops at the per-image limit, a bulk upload
goes to Redis one file at a time (never whole in memory), and an oversized request is refused
from its `Content-Length` before a byte of it is read.
"""

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from common.errors import (
    CatDogError,
    ImageTooLargeError,
    MalformedRequestError,
    MissingFieldError,
    TooManyFilesError,
)

# Multipart headers and boundaries around a file: allowed on top of the byte limits.
PART_OVERHEAD_BYTES = 16 * 1024
MAX_FIELD_BYTES = 4096
MAX_FILENAME_CHARS = 255


@dataclass(frozen=True)
class PartStart:
    name: str
    filename: str | None  # None: a plain form field
    content_type: str | None


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


Event = PartStart | PartData | PartEnd


@dataclass(frozen=True)
class Upload:
    filename: str
    content_type: str | None
    data: bytes


# Characters a file name never keeps: control characters (C0, DEL, C1) could split a log
# line or a CSV row, or recolour a terminal that prints the name.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# The longest suffix a cut name keeps: `photo.jpeg` stays a .jpeg when its stem is cut.
_KEPT_SUFFIX_CHARS = 16


def clean_filename(raw: str) -> str:
    """The base name only: no directories from the client's machine, no control characters
    (each becomes U+FFFD), at most MAX_FILENAME_CHARS characters with its suffix kept."""
    name = _UNPRINTABLE.sub("\ufffd", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    if name in ("", ".", ".."):
        return "unnamed"
    if len(name) <= MAX_FILENAME_CHARS:
        return name
    stem, dot, suffix = name.rpartition(".")
    if dot and stem and len(suffix) < _KEPT_SUFFIX_CHARS:
        return stem[: MAX_FILENAME_CHARS - len(suffix) - 1] + dot + suffix
    return name[:MAX_FILENAME_CHARS]


def _decode(value: bytes) -> str:
    # Invalid UTF-8 keeps its readable part; each bad byte becomes U+FFFD.
    return value.decode("utf-8", "replace")


class _Collector:
    """python-multipart callbacks, turned into a list of events per fed chunk."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.ended = False  # the closing boundary was seen
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": lambda: self.events.append(PartEnd()),
            "on_header_field": self._header_field,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_end": self._end,
        }

    def drain(self) -> list[Event]:
        events, self.events = self.events, []
        return events

    def _end(self) -> None:
        self.ended = True

    def _part_begin(self) -> None:
        self._headers = {}

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        self.events.append(PartData(bytes(data[start:end])))

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name = self._header_value = b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition"))
        if b"name" not in options:
            raise MalformedRequestError("a multipart part has no field name")
        filename = options.get(b"filename")
        content_type = self._headers.get(b"content-type")
        self.events.append(
            PartStart(
                name=_decode(options[b"name"]),
                filename=clean_filename(_decode(filename)) if filename is not None else None,
                content_type=_decode(content_type) if content_type else None,
            )
        )


def _too_large(limit: int, error: type[CatDogError], what: str) -> CatDogError:
    return error(f"the {what} is larger than {limit} bytes")


async def multipart_events(
    request: Request, max_body_bytes: int, too_large: type[CatDogError], what: str
) -> AsyncIterator[Event]:
    """The parts of a multipart/form-data body, as they arrive.

    Raises `too_large` as soon as the body (declared or received) passes `max_body_bytes`.
    """
    content_type, params = parse_options_header(request.headers.get("content-type"))
    if content_type != b"multipart/form-data" or b"boundary" not in params:
        raise MissingFieldError("the body must be multipart/form-data")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_body_bytes:
        raise _too_large(max_body_bytes, too_large, what)
    collector = _Collector()
    parser = MultipartParser(params[b"boundary"], collector.callbacks())  # type: ignore[arg-type]
    received = 0
    try:
        async for chunk in request.stream():
            received += len(chunk)
            if received > max_body_bytes:
                raise _too_large(max_body_bytes, too_large, what)
            parser.write(chunk)
            for event in collector.drain():
                yield event
        parser.finalize()
    except MultipartParseError as exc:
        raise MalformedRequestError(f"the multipart body is malformed: {exc}") from exc
    except ClientDisconnect as exc:
        raise MalformedRequestError("the client disconnected during the upload") from exc
    if not collector.ended:
        # python-multipart's finalize() accepts a body cut short; its last part would pass
        # for a whole file (or, in a job, an item without an image).
        raise MalformedRequestError(
            "the multipart body ended before its closing boundary: the upload is incomplete"
        )
    for event in collector.drain():
        yield event


async def read_single_file(request: Request, field: str, max_bytes: int) -> Upload:
    """The one file of `field`, refused with 413 as soon as it passes `max_bytes`."""
    upload: Upload | None = None
    current: bytearray | None = None
    start: PartStart | None = None
    events = multipart_events(
        request, max_bytes + PART_OVERHEAD_BYTES, ImageTooLargeError, "upload"
    )
    async for event in events:
        if isinstance(event, PartStart):
            if event.name == field and event.filename is not None:
                if upload is not None or current is not None:
                    raise TooManyFilesError(f"send exactly one file in field '{field}'")
                current, start = bytearray(), event
        elif isinstance(event, PartData) and current is not None:
            current += event.data
            if len(current) > max_bytes:
                raise ImageTooLargeError(f"the file is larger than {max_bytes} bytes")
        elif isinstance(event, PartEnd) and current is not None and start is not None:
            upload = Upload(start.filename or "unnamed", start.content_type, bytes(current))
            current = None
    if upload is None:
        raise MissingFieldError(f"no file in multipart field '{field}'")
    return upload
