"""The page's static files: served by the gateway itself, all of them, and nothing else."""

import re

import pytest
from fastapi.testclient import TestClient

from common.settings import Settings
from gateway.app import create_app
from gateway.routes.web import ASSETS, WEB_DIR


@pytest.fixture(scope="module")
def client() -> TestClient:
    # No `with`: the lifespan (Redis) never starts; these routes need none of it.
    return TestClient(create_app(Settings(), configure_logs=False))


def test_the_page_is_served_at_the_root_with_a_same_origin_policy(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "<title>" in response.text


def test_every_file_the_page_loads_is_served_from_the_gateway(client: TestClient) -> None:
    page = (WEB_DIR / "index.html").read_text()
    scripts = "".join((WEB_DIR / name).read_text() for name in ASSETS if name.endswith(".js"))
    loaded = set(re.findall(r'(?:src|href)="/web/([^"]+)"', page))
    loaded |= set(re.findall(r'from "\./([^"]+)"', scripts))
    assert loaded == set(ASSETS)
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page), "nothing may come from a CDN"
    for name in loaded:
        response = client.get(f"/web/{name}")
        assert response.status_code == 200, name
        assert response.headers["content-type"] == ASSETS[name]


def test_every_file_of_the_front_end_is_listed() -> None:
    on_disk = {p.name for p in WEB_DIR.iterdir()} - {"index.html"}
    assert on_disk == set(ASSETS)


@pytest.mark.parametrize("name", ["nope.js", "index.html", "app.py"])
def test_anything_else_under_web_is_404_in_the_error_format(client: TestClient, name: str) -> None:
    response = client.get(f"/web/{name}")
    assert response.status_code == 404
    assert response.json()["reason"] == "not_found"


def test_the_page_stays_out_of_the_api_documentation(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(path.startswith("/web/") for path in paths)
    assert client.get("/docs").status_code == 200
