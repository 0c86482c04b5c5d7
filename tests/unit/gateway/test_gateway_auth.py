"""How the gateway knows its caller: the key's headers, a production start without keys, and
request ids a client may not choose freely."""

import re

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from client.keys import create_key
from common.settings import Settings
from common.store.ops import Store
from gateway.app import create_app
from gateway.auth import presented_key


def request_with(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "headers": raw})


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"X-API-Key": "cdk_a"}, "cdk_a"),
        ({"Authorization": "Bearer cdk_b"}, "cdk_b"),
        ({"Authorization": "bearer  cdk_c "}, "cdk_c"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, None),
        ({"X-API-Key": "  "}, None),
        ({}, None),
    ],
)
def test_a_key_comes_as_x_api_key_or_a_bearer_token(
    headers: dict[str, str], key: str | None
) -> None:
    assert presented_key(request_with(headers)) == key


def prod_settings(redis_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        environment="prod",
        redis_url=redis_url,
        callback_secret="a-real-callback-secret-0123",
        flower_basic_auth="ops:a-real-password-0123",
    )


def test_a_production_gateway_with_auth_on_and_no_key_refuses_to_start(redis_url: str) -> None:
    app = create_app(prod_settings(redis_url), configure_logs=False)
    with pytest.raises(RuntimeError, match="catdog keys create"), TestClient(app):
        pass


def test_it_starts_with_a_key_or_with_auth_off(redis_url: str) -> None:
    off = prod_settings(redis_url).model_copy(update={"auth": "off"})
    with TestClient(create_app(off, configure_logs=False)) as client:
        assert client.get("/livez").status_code == 200
    create_key(Store.from_url(redis_url), "shelter")
    with TestClient(create_app(prod_settings(redis_url), configure_logs=False)) as client:
        assert client.get("/livez").status_code == 200


@pytest.mark.parametrize("bad", ["has space", "a\tb", "x" * 129, "é"])
def test_a_request_id_a_client_may_not_choose_is_replaced_by_a_fresh_one(
    redis_url: str, bad: str
) -> None:
    settings = Settings(_env_file=None, redis_url=redis_url, auth="off")  # type: ignore[call-arg]
    with TestClient(create_app(settings, configure_logs=False)) as client:
        echoed = client.get("/livez", headers={"X-Request-ID": bad.encode("utf-8")}).headers
        assert echoed["x-request-id"] != bad and len(echoed["x-request-id"]) == 32
        good = client.get("/livez", headers={"X-Request-ID": "shelter-42.upload:7"}).headers
        assert good["x-request-id"] == "shelter-42.upload:7"


def test_a_key_over_its_rate_is_told_a_wait_it_can_use(redis_url: str) -> None:
    """A few milliseconds short of a token used to read "retry in 0.0 s" (and could send
    Retry-After: 0, which a client takes as "at once")."""
    secret, _ = create_key(
        Store.from_url(redis_url), "quick-shelter", rate_limit_rps=20.0, rate_limit_burst=1
    )
    with TestClient(create_app(prod_settings(redis_url), configure_logs=False)) as client:
        answers = [
            client.get("/jobs/nothing-here", headers={"X-API-Key": secret}) for _ in range(5)
        ]
    refused = next(answer for answer in answers if answer.status_code == 429)
    stated = re.search(r"retry in ([0-9.]+) s", refused.json()["detail"])
    assert stated is not None and 0 < float(stated[1]) <= 0.1
    assert int(refused.headers["Retry-After"]) == 1
