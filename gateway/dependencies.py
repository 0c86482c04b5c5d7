"""Dependencies as `Annotated` aliases, so a route names what it needs in its signature.

Every dependency is `async def`, even one that only reads `app.state`: FastAPI runs a plain
`def` dependency in a worker thread, and a /predict took four such hops (about 0.5 ms at
concurrency 1, measured with cProfile; bench/README.md)."""

from typing import Annotated

from fastapi import Depends, Request

from common.settings import Settings
from gateway.auth import Caller, authenticate
from gateway.services import Services


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_request_id(request: Request) -> str:
    request_id: str = request.scope.get("state", {}).get("request_id", "")
    return request_id


async def get_caller(request: Request) -> Caller:
    return await authenticate(request, await get_services(request))


ServicesDep = Annotated[Services, Depends(get_services)]
CallerDep = Annotated[Caller, Depends(get_caller)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
