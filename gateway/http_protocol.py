"""uvicorn's HTTP protocol with the gateway's error body for requests its parser refuses.

uvicorn answers bytes that are not valid HTTP/1.1 (an `X-Request-ID` with a control
character, a broken request line) itself, before any route or middleware runs, with a
plain-text "Invalid HTTP request received.". This subclass sends that refusal in the body
every other error has (`{"detail", "reason"}`), so a client can branch on `reason` here too.
"""

import asyncio
import json
from http import HTTPStatus

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from common.errors import InvalidHTTPError
from gateway.errors import error_body, status_for

_REFUSAL = InvalidHTTPError(
    "the request is not valid HTTP/1.1: a header holds a character HTTP does not allow "
    "(a control character, for example) or the request line is broken; nothing was processed"
)


def refusal_bytes() -> bytes:
    body = json.dumps(error_body(_REFUSAL.message, _REFUSAL.reason)).encode()
    status = HTTPStatus(status_for(_REFUSAL))
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


# How long a refused connection is kept open, discarding what the client still sends.
LINGER_S = 2.0


class GatewayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    _refused = False

    def send_400_response(self, msg: str) -> None:
        # Both of uvicorn's parsers (httptools, h11) call this and then stop reading. A close
        # with the client's body still unread makes the kernel reset the connection, and the
        # client may lose the answer: close our side for writing and read on for a while
        # (nginx's lingering close).
        self.transport.write(refusal_bytes())
        self._refused = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(LINGER_S, self.transport.close)
        else:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)
