"""uvicorn's HTTP protocol with the gateway's error body for requests its parser refuses.

uvicorn answers bytes that are not valid HTTP/1.1 (an `X-Request-ID` with a control
character, a broken request line) itself, before any route or middleware runs, with a
plain-text "Invalid HTTP request received.". This subclass sends that refusal in the body
every other error has (`{"detail", "reason"}`), so a client can branch on `reason` here too.
"""

import json

from uvicorn.protocols.http.auto import AutoHTTPProtocol

from common.errors import InvalidHTTPError
from gateway.errors import error_body, status_for

_REFUSAL = InvalidHTTPError(
    "the request is not valid HTTP/1.1: a header holds a character HTTP does not allow "
    "(a control character, for example) or the request line is broken; nothing was processed"
)


def refusal_bytes() -> bytes:
    body = json.dumps(error_body(_REFUSAL.message, _REFUSAL.reason)).encode()
    head = (
        f"HTTP/1.1 {status_for(_REFUSAL)} Bad Request\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


class GatewayHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    def send_400_response(self, msg: str) -> None:
        # Both of uvicorn's parsers (httptools, h11) call this and then stop reading.
        self.transport.write(refusal_bytes())
        self.transport.close()
