"""The two pure-ASGI middlewares (neither ever buffers a streamed upload):

- `RequestContextMiddleware`: a request id for every request (the client's `X-Request-ID`
  when it is safe, else a fresh one), echoed in the answer and carried by every log line, and
  one structured access-log line per request;
- `MetricsMiddleware`: every request counted into the app's `GatewayMetrics`.
"""

import json
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from common.logging_setup import request_id_var
from gateway.monitoring.metrics import GatewayMetrics

log = logging.getLogger("gateway.access")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
# Probes would drown the log.
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
# Statuses counted as rejections of a request (with their `reason` read from the body).
REJECTION_STATUSES = frozenset({413, 415, 422, 429})
UNMATCHED_ROUTE = "unmatched"
# Error bodies are small JSON; read at most this much of one to find its `reason`.
MAX_ERROR_BODY = 4096


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == REQUEST_ID_HEADER.encode():
            text = value.decode("latin-1")
            return text if _VALID_REQUEST_ID.match(text) else None
    return None


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if scope["path"] not in _QUIET_PATHS or status >= 500:
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": route_label(scope),
                        "path": scope["path"],
                        "status": status,
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)


def route_label(scope: Scope) -> str:
    """The matched route's template (`/jobs/{job_id}`), never the raw path: raw paths carry
    ids and would make a new time series per job."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else UNMATCHED_ROUTE


def rejection_reason(body: bytes) -> str:
    """The `reason` of an error body (`{"detail": ..., "reason": ...}`), or "unknown"."""
    try:
        reason = json.loads(body).get("reason")
    except (ValueError, AttributeError):
        return "unknown"
    return reason if isinstance(reason, str) and reason else "unknown"


class MetricsMiddleware:
    """Counts every HTTP request: in flight, by route/method/status, latency, bytes received,
    and rejections by reason (read from the error body, which every error handler writes as
    `{"detail", "reason"}`). Pure ASGI: a streamed upload is counted, never buffered.

    Uses `app.state.metrics` (a GatewayMetrics) when it is set, else does nothing."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    def _metrics(self, scope: Scope) -> GatewayMetrics | None:
        if self.metrics is not None:
            return self.metrics
        app = scope.get("app")
        found = getattr(getattr(app, "state", None), "metrics", None)
        return found if isinstance(found, GatewayMetrics) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self._metrics(scope) if scope["type"] == "http" else None
        if metrics is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        received = 0
        error_body = bytearray()

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status in REJECTION_STATUSES:
                room = MAX_ERROR_BODY - len(error_body)
                if room > 0:
                    error_body.extend(message.get("body", b"")[:room])
            await send(message)

        metrics.in_flight.inc()
        try:
            await self.app(scope, counting_receive, watching_send)
        finally:
            metrics.in_flight.dec()
            route = route_label(scope)
            metrics.observe_request(route, scope["method"], status, time.perf_counter() - started)
            if received:
                metrics.observe_upload(route, received)
            if status in REJECTION_STATUSES:
                metrics.observe_rejection(status, rejection_reason(bytes(error_body)))
