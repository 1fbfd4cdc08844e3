"""The OpenAPI document is the contract: schemathesis fuzzes every operation against it.

Every operation is tested in schemathesis' examples, coverage (boundary values, missing and
unsupported methods) and fuzzing phases, positive and negative data, with every conformance
check the installed version has. ``HUB_CONTRACT_EXAMPLES`` raises the fuzzing budget for a
longer manual run (the default keeps the whole module near a minute)."""

from __future__ import annotations

import os

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from schemathesis.pytest.lazy import get_all_tests

pytestmark = pytest.mark.heavy(100)

EXAMPLES_PER_OPERATION = int(os.environ.get("HUB_CONTRACT_EXAMPLES", "10"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
]


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


def send_undeclared_empty_parameters(case) -> None:
    """A negative case may add an undeclared query parameter whose value is an empty list,
    which no client serialises: it would reach the server as nothing at all and be judged
    'accepted'. Send it with an empty value instead, as a real client misspelling one."""
    if not case.query:
        return
    for name, value in list(case.query.items()):
        if value in ([], None) and case.operation.get_parameter(name, "query") is None:
            case.query[name] = ""


def test_every_operation_conforms_to_the_published_schema(api):
    headers = api.headers("admin")
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", api.client.app, headers=headers)
    settings = hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    cases = 0

    def run(case):
        nonlocal cases
        if case.query and any(isinstance(v, dict) for v in case.query.values()):
            # A negative case may turn a string parameter into an object, which a URL
            # carries only as a string again: with `q` (any text) it arrives valid and is
            # rightly accepted, which the check would call a failure. No API query takes one.
            return
        cases += 1
        send_undeclared_empty_parameters(case)
        case.call_and_validate(headers=headers, checks=CHECKS)

    failures: dict[str, str] = {}
    tests = list(get_all_tests(schema=schema, test_func=run, settings=settings, given_kwargs={}))
    assert len(tests) >= 20
    for result in tests:
        operation, test = result.ok()
        try:
            test()
        except (Exception, BaseExceptionGroup) as exc:  # collected, then all reported
            failures[operation.label] = str(exc)[:3000]
    print(f"schemathesis: {cases} cases over {len(tests)} operations")
    assert not failures, "\n\n".join(f"{k}:\n{v}" for k, v in failures.items())
