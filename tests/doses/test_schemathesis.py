"""Fuzz the running API against its OpenAPI document: no 5xx, every response as documented."""

from __future__ import annotations

from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup

from collector.doses.openapi import openapi_document
from tests.doses.conftest import ThreadedServer, auth

schema = schemathesis.openapi.from_dict(openapi_document())
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@schema.parametrize()
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_api_conforms(case: schemathesis.Case[Any], threaded_server: ThreadedServer) -> None:
    # schemathesis' own requests transport trips over urllib3-future (pulled in by niquests):
    # send the generated request with a plain requests session, then validate the response.
    kwargs = case.as_transport_kwargs(base_url=threaded_server.url, headers=auth())
    kwargs.setdefault("timeout", 30)
    with requests.Session() as session:
        response = session.request(**kwargs)
    case.validate_response(response, checks=CHECKS)


def test_the_checks_catch_an_undocumented_response(threaded_server: ThreadedServer) -> None:
    """A document that leaves out the 422 of GET /doses must fail the same checks."""
    import copy
    import traceback

    import pytest

    doc = copy.deepcopy(openapi_document())
    del doc["paths"]["/api/v1/doses"]["get"]["responses"]["422"]
    bad = schemathesis.openapi.from_dict(doc)
    case = bad["/api/v1/doses"]["GET"].Case(query={"limit": 0})
    kwargs = case.as_transport_kwargs(base_url=threaded_server.url, headers=auth())
    with requests.Session() as session:
        response = session.request(**kwargs)
    assert response.status_code == 422
    with pytest.raises(FailureGroup) as caught:
        case.validate_response(response, checks=CHECKS)
    assert "Undocumented status code" in "".join(traceback.format_exception(caught.value))
    good = schema["/api/v1/doses"]["GET"].Case(query={"limit": 0})
    good.validate_response(response, checks=CHECKS)
