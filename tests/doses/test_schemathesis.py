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


def test_fuzz_covers_the_lights_plan_and_night_endpoints() -> None:
    for path, method in (("/api/v1/lights", "POST"), ("/api/v1/lights", "GET"),
                         ("/api/v1/lights/{night}/{event}", "DELETE"),
                         ("/api/v1/plan/today", "GET"), ("/api/v1/nights/last", "GET")):
        assert schema[path][method].path == path  # KeyError if the document lost it


def test_lights_success_responses_conform(threaded_server: ThreadedServer) -> None:
    """Random input rarely lands in a night window: the 201/200 answers are checked here."""
    from datetime import datetime, time, timedelta
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")
    at = datetime.combine(datetime.now(tz).date() - timedelta(days=1), time(23, 10), tzinfo=tz)
    body: Any = {"person": "alice", "event": "lights_out", "at": at.isoformat()}
    statuses: list[int] = []
    with requests.Session() as session:
        for case in (schema["/api/v1/lights"]["POST"].Case(body=body),
                     schema["/api/v1/lights"]["POST"].Case(body=body),
                     schema["/api/v1/lights"]["GET"].Case(query={"person": "alice"}),
                     schema["/api/v1/lights/{night}/{event}"]["DELETE"].Case(
                         path_parameters={"night": at.date().isoformat(), "event": "lights_out"},
                         query={"person": "alice"})):
            response = session.request(**case.as_transport_kwargs(base_url=threaded_server.url,
                                                                  headers=auth()))
            case.validate_response(response, checks=CHECKS)
            statuses.append(response.status_code)
    assert statuses == [201, 200, 200, 200]
