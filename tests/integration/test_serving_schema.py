"""Schemathesis over the gateway's own OpenAPI document, against the real stack: whatever a
client sends that the schema allows (and much that it does not), the gateway answers without
a 5xx, with a status the document lists for the operation, and with a body that matches it.

Every operation is fuzzed; a few examples each keeps the run short on a 2-core machine.
`/predict` and `/jobs` get random bytes as photos, so they exercise the refusals (415, 422)
rather than a classification; the bad-input suite covers real images.
"""

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.schemas import BaseSchema

from tests.integration.processes import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def api_schema(stack: Stack) -> BaseSchema:
    return schemathesis.openapi.from_url(f"{stack.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=20,
    deadline=None,  # a /predict waits for the worker: seconds are normal on this machine
    database=None,  # no .hypothesis/ directory in the checkout
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same examples every run: a failure here is reproducible
)
def test_every_operation_answers_within_its_schema(case: schemathesis.Case, stack: Stack) -> None:
    case.call_and_validate(base_url=stack.url, checks=CHECKS, timeout=30)


def test_the_schema_lists_every_route_it_is_fuzzed_over(stack: Stack) -> None:
    paths = httpx.get(f"{stack.url}/openapi.json", timeout=10).json()["paths"]
    assert {"/predict", "/jobs", "/jobs/{job_id}", "/feedback", "/readyz", "/livez"} <= set(paths)
