"""One router per resource; `create_app` includes every router listed in `ROUTERS`.

A new resource (for example `metrics.py` with GET /metrics) adds its router here.
"""

from fastapi import APIRouter

from gateway.routes import health, jobs, predict

ROUTERS: tuple[APIRouter, ...] = (health.router, predict.router, jobs.router)
