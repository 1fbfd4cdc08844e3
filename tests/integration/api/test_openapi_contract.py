"""The OpenAPI document is the contract: schemathesis fuzzes every operation against it."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES_PER_OPERATION = 20


def test_openapi_document_needs_a_login_like_every_api_route(api_ro):
    resp = api_ro.client.get("/api/v1/openapi.json")
    assert resp.status_code == 401 and resp.json()["detail"]


def test_openapi_document_describes_every_endpoint_and_bearer_auth(api_ro):
    doc = api_ro.client.get("/api/v1/openapi.json", headers=api_ro.headers("viewer")).json()
    paths = set(doc["paths"])
    for path in (
        "/api/v1/mismatches",
        "/api/v1/mismatches/{mismatch_id}",
        "/api/v1/mismatches/{mismatch_id}/resolve",
        "/api/v1/mismatches/bulk",
        "/api/v1/mismatches/export",
        "/api/v1/stats",
        "/api/v1/connectors",
        "/api/v1/connectors/{name}/{action}",
        "/api/v1/audit",
        "/api/v1/users",
        "/healthz",
        "/readyz",
    ):
        assert path in paths
    assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    item = doc["components"]["schemas"]["MismatchItem"]["properties"]
    assert {"id", "sector", "record_key", "citizen_id", "rule", "resolution"} <= set(item)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzzed_requests_never_get_a_5xx_or_an_answer_outside_the_schema(api, mode):
    headers = api.headers("admin")
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", api.client.app, headers=headers)
    checks = [
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
        content_type_conformance,
    ]
    operations = [r.ok() for r in schema.get_all_operations()]
    unsatisfiable: list[str] = []
    assert len(operations) >= 20
    for operation in operations:

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case):
            case.call_and_validate(headers=headers, checks=checks)

        try:
            run()
        except Unsatisfiable:
            # No invalid request exists for it (e.g. /healthz takes no input).
            assert mode is GenerationMode.NEGATIVE
            unsatisfiable.append(operation.label)
    assert len(unsatisfiable) <= 3, unsatisfiable
