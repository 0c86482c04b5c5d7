"""One router per resource; `create_app` includes every router listed in `ROUTERS`.

A new resource adds its router here.
"""

from fastapi import APIRouter

from gateway.routes import feedback, health, jobs, metrics, predict, web

ROUTERS: tuple[APIRouter, ...] = (
    health.router,
    predict.router,
    jobs.router,
    feedback.router,
    metrics.router,
    web.router,
)
