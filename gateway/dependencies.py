"""Dependencies as `Annotated` aliases, so a route names what it needs in its signature."""

from typing import Annotated

from fastapi import Depends, Request

from common.settings import Settings
from gateway.auth import Caller, authenticate
from gateway.services import Services


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_request_id(request: Request) -> str:
    request_id: str = request.scope.get("state", {}).get("request_id", "")
    return request_id


async def get_caller(request: Request) -> Caller:
    return await authenticate(request, get_services(request))


ServicesDep = Annotated[Services, Depends(get_services)]
CallerDep = Annotated[Caller, Depends(get_caller)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
RequestIdDep = Annotated[str, Depends(get_request_id)]
