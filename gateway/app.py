"""The application factory: settings in, a FastAPI app out. Connections open in the lifespan,
never at import."""

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from common.logging_setup import configure_logging
from common.settings import Settings, get_settings
from common.store import api_keys
from gateway.errors import install_error_handlers
from gateway.monitoring import build_quality_tracker, install_monitoring
from gateway.monitoring.middleware import RequestContextMiddleware
from gateway.routes import ROUTERS
from gateway.services import Services

DESCRIPTION = """
Cats-vs-dogs classification. `POST /predict` answers one photo synchronously; `POST /jobs`
takes hundreds of photos and runs them in the background, with progress, paged results,
cancellation, idempotency and a signed callback. Every error body is
`{"detail": "...", "reason": "<stable code>"}`.
"""


def _route_server_logs_to_root() -> None:
    # Uvicorn's loggers write plain text through their own handlers: send them to the
    # JSON root handler instead; the access log is replaced by our request-id-aware one.
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    logging.getLogger("uvicorn.access").disabled = True


async def _refuse_prod_without_keys(services: Services) -> None:
    """A production gateway with auth on and no usable key would refuse every caller: it
    stops at start instead, saying what to do."""
    settings = services.settings
    if settings.environment != "prod" or settings.auth == "off":
        return
    now = time.time()
    if not any(key.refusal(now) is None for key in await services.store(api_keys.every())):
        await services.close()
        raise RuntimeError(
            "no usable API key: create one with `catdog keys create --name NAME`, or set"
            " CATDOG_AUTH=off to serve without keys"
        )


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    if app.state.configure_logging:
        configure_logging(settings.log_level, settings.log_json)
        _route_server_logs_to_root()
    services = Services(settings)
    app.state.services = services
    await _refuse_prod_without_keys(services)
    # Live quality (feedback, drift against the test set); opens no connection of its own.
    app.state.quality = build_quality_tracker(services)
    logging.getLogger(__name__).info(
        "gateway started",
        extra={
            "realtime_queue": settings.realtime_queue,
            "bulk_queue": settings.bulk_queue,
            "auth": settings.auth,
        },
    )
    try:
        yield
    finally:
        await services.close()


def create_app(settings: Settings | None = None, *, configure_logs: bool = True) -> FastAPI:
    app = FastAPI(
        title="catdog",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings or get_settings()
    app.state.configure_logging = configure_logs
    app.add_middleware(RequestContextMiddleware)
    # Added last, so it wraps the request-id middleware: it counts every request, including
    # those refused before a route runs, and sees the route template once routing is done.
    install_monitoring(app)
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
