"""Issue 20 #10: numbers in the API are JSON numbers, and a dose has a minimum that makes sense."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.security.conftest import Api
from tests.security.test_api_attacks import JSON, create_same_origin, dose_body


@pytest.mark.parametrize(("payload", "field", "reason"), [
    ({"amount_mg": True}, "amount_mg", "must be a JSON number of mg, e.g. 300"),
    ({"amount_mg": "300"}, "amount_mg", "must be a JSON number of mg, e.g. 300"),
    ({"amount_mg": 1e-300}, "amount_mg", "must be at least 1 mg"),
    ({"amount_mg": 0.5}, "amount_mg", "must be at least 1 mg"),
    ({"amount_mg": 300, "elemental_mg": False}, "elemental_mg", "must be a JSON number of mg"),
    ({"amount_mg": 300, "elemental_mg": "50"}, "elemental_mg", "must be a JSON number of mg"),
    ({"amount_mg": 300, "elemental_mg": 1e-9}, "elemental_mg", "must be at least 0.1 mg"),
])
def test_numbers_are_strict(open_api: Api, payload: dict[str, Any], field: str, reason: str) -> None:
    body = json.dumps({"person": "alice", **payload}).encode()
    status, _, raw = open_api.request("POST", "/api/v1/doses", headers=JSON, body=body)
    assert status == 422, raw
    detail = {d["field"]: d["reason"] for d in json.loads(raw)["detail"]}
    assert reason in detail[field], detail
    assert open_api.doses() == []


def test_patch_numbers_are_strict(open_api: Api) -> None:
    dose_id = create_same_origin(open_api)
    for payload in (b'{"amount_mg": true}', b'{"amount_mg": "600"}', b'{"amount_mg": 1e-300}'):
        status, _, raw = open_api.request("PATCH", f"/api/v1/doses/{dose_id}", headers=JSON,
                                          body=payload)
        assert status == 422, raw
        assert json.loads(raw)["detail"][0]["field"] == "amount_mg"
    (kept,) = open_api.doses()
    assert kept.amount_mg == 300.0


def test_whole_numbers_and_decimals_still_accepted(open_api: Api) -> None:
    for amount in (300, 412.5, 1):
        body = dose_body(amount_mg=amount, id=str(uuid.uuid4()))
        status, _, raw = open_api.request("POST", "/api/v1/doses", headers=JSON, body=body)
        assert status == 201, raw
    assert sorted(d.amount_mg for d in open_api.doses()) == [1.0, 300.0, 412.5]
