"""The OpenAPI document is complete: every route, its bodies, its errors, with examples."""

from typing import Any

import pytest

from common.settings import Settings
from gateway.app import create_app


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return create_app(Settings(), configure_logs=False).openapi()


def test_every_contracted_route_is_documented(spec: dict[str, Any]) -> None:
    routes = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes >= {
        ("/livez", "get"),
        ("/readyz", "get"),
        ("/predict", "post"),
        ("/jobs", "post"),
        ("/jobs/{job_id}", "get"),
        ("/jobs/{job_id}", "delete"),
    }


def test_every_operation_has_a_summary_text(spec: dict[str, Any]) -> None:
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op.get("description"), f"{method.upper()} {path} has no docstring"


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/predict", "post", {"200", "413", "415", "422", "429", "503", "504"}),
        ("/jobs", "post", {"202", "409", "413", "422", "429", "503"}),
        ("/jobs/{job_id}", "get", {"200", "404", "410", "422"}),
        ("/jobs/{job_id}", "delete", {"200", "404", "409", "410"}),
        ("/readyz", "get", {"200", "503"}),
    ],
)
def test_error_responses_are_documented(
    spec: dict[str, Any], path: str, method: str, codes: set[str]
) -> None:
    assert set(spec["paths"][path][method]["responses"]) >= codes


def test_uploads_are_documented_as_multipart(spec: dict[str, Any]) -> None:
    predict = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert predict["schema"]["required"] == ["file"]
    jobs = spec["paths"]["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert set(jobs["schema"]["properties"]) == {"files", "callback_url"}
    headers = [p["name"] for p in spec["paths"]["/jobs"]["post"]["parameters"]]
    assert "Idempotency-Key" in headers


@pytest.mark.parametrize(
    "schema",
    [
        "PredictResponse",
        "JobAccepted",
        "JobStatusResponse",
        "CancelResponse",
        "ErrorResponse",
        "Readiness",
    ],
)
def test_response_schemas_carry_examples(spec: dict[str, Any], schema: str) -> None:
    assert spec["components"]["schemas"][schema].get("examples"), schema
