"""The OpenAPI 3.1 document of the dose API, generated from the pydantic models.

``collector/doses/openapi.json`` is the committed copy; regenerate it with
``python -m collector.doses.openapi`` (a test checks the two are equal).
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from collector import __version__
from collector.doses.entities import (
    Dose,
    DoseCreate,
    DoseList,
    DosePatch,
    DoseResult,
    ErrorBody,
    Health,
    Lights,
    LightsCreate,
    LightsEvent,
    LightsList,
    MorningCard,
    PersonList,
    PlanToday,
)

OPENAPI_FILE = Path(__file__).parent / "openapi.json"
_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _content(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(name)}}


def _err(text: str) -> dict[str, Any]:
    return {"description": text, "content": _content("ErrorBody")}


_AUTH_ERRORS = {"401": _err("missing or wrong Bearer token")}
_ID_PARAM = {
    "name": "id", "in": "path", "required": True,
    "schema": {"type": "string", "format": "uuid"}, "description": "dose id",
}
_PERSON_SCHEMA = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}
_LIGHTS_PARAMS = [
    {"name": "night", "in": "path", "required": True, "schema": {"type": "string", "format": "date"},
     "description": "the evening's date"},
    {"name": "event", "in": "path", "required": True,
     "schema": {"type": "string", "enum": [e.value for e in LightsEvent]}},
]


@cache
def openapi_document() -> dict[str, Any]:
    """The OpenAPI document (the served one)."""
    models: list[tuple[type[BaseModel], Any]] = [
        (DoseCreate, "validation"), (DosePatch, "validation"), (Dose, "serialization"),
        (DoseResult, "serialization"), (DoseList, "serialization"), (PersonList, "serialization"),
        (ErrorBody, "serialization"), (Health, "serialization"),
        (LightsCreate, "validation"), (Lights, "serialization"), (LightsList, "serialization"),
        (PlanToday, "serialization"), (MorningCard, "serialization"),
    ]
    _, top = models_json_schema(models, ref_template=_REF)
    schemas = top.get("$defs", {})
    doses_get_params = [
        {"name": "person", "in": "query", "required": False,
         "schema": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"}},
        {"name": "since", "in": "query", "required": False,
         "schema": {"type": "string", "format": "date-time"},
         "description": "only doses taken at or after (with a UTC offset)"},
        {"name": "until", "in": "query", "required": False,
         "schema": {"type": "string", "format": "date-time"}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
    ]
    invalid = _err("invalid input: every problem with its field and reason")
    paths: dict[str, Any] = {
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "liveness", "security": [],
            "responses": {"200": {"description": "ok", "content": _content("Health")},
                          "503": {"description": "degraded: a backlog does not move or the "
                                  "journal is unavailable", "content": _content("Health")}},
        }},
        "/api/v1/persons": {"get": {
            "operationId": "listPersons", "summary": "configured persons and dose forms",
            "responses": {"200": {"description": "persons", "content": _content("PersonList")},
                          **_AUTH_ERRORS},
        }},
        "/api/v1/doses": {
            "get": {
                "operationId": "listDoses", "summary": "doses, newest first",
                "parameters": doses_get_params,
                "responses": {"200": {"description": "doses", "content": _content("DoseList")},
                              "422": invalid, **_AUTH_ERRORS},
            },
            "post": {
                "operationId": "createDose",
                "summary": "log a dose; the same id twice stores one dose",
                "requestBody": {"required": True, "content": _content("DoseCreate")},
                "responses": {
                    "201": {"description": "logged", "content": _content("DoseResult")},
                    "200": {"description": "this id was logged before; the stored dose",
                            "content": _content("DoseResult")},
                    "409": _err("the id belongs to a different or a deleted dose"),
                    "413": _err("body too large"),
                    "422": invalid,
                    **_AUTH_ERRORS,
                },
            },
        },
        "/api/v1/doses/{id}": {
            "parameters": [_ID_PARAM],
            "get": {
                "operationId": "getDose", "summary": "one dose",
                "responses": {"200": {"description": "the dose", "content": _content("Dose")},
                              "404": _err("no such dose"), "422": invalid, **_AUTH_ERRORS},
            },
            "patch": {
                "operationId": "updateDose",
                "summary": "change a dose (InfluxDB: old point deleted, new one written)",
                "requestBody": {"required": True, "content": _content("DosePatch")},
                "responses": {"200": {"description": "changed", "content": _content("DoseResult")},
                              "404": _err("no such dose"), "413": _err("body too large"),
                              "422": invalid, **_AUTH_ERRORS},
            },
            "delete": {
                "operationId": "deleteDose", "summary": "delete a dose; returns it",
                "responses": {"200": {"description": "deleted", "content": _content("Dose")},
                              "404": _err("no such dose"), "422": invalid, **_AUTH_ERRORS},
            },
        },
        "/api/v1/lights": {
            "get": {
                "operationId": "listLights",
                "summary": "current lights out / lights on per night, newest night first",
                "parameters": [
                    {"name": "person", "in": "query", "required": False, "schema": _PERSON_SCHEMA},
                    {"name": "since", "in": "query", "required": False,
                     "schema": {"type": "string", "format": "date"},
                     "description": "first night (the evening's date)"},
                    {"name": "limit", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                ],
                "responses": {"200": {"description": "lights", "content": _content("LightsList")},
                              "422": invalid, **_AUTH_ERRORS},
            },
            "post": {
                "operationId": "setLights",
                "summary": "record lights out or lights on (default now) for the night holding "
                           "the time; replaces that night's earlier one",
                "requestBody": {"required": True, "content": _content("LightsCreate")},
                "responses": {
                    "201": {"description": "recorded", "content": _content("Lights")},
                    "200": {"description": "exactly this was recorded already",
                            "content": _content("Lights")},
                    "413": _err("body too large"),
                    "422": invalid,
                    **_AUTH_ERRORS,
                },
            },
        },
        "/api/v1/lights/{night}/{event}": {
            "parameters": _LIGHTS_PARAMS,
            "delete": {
                "operationId": "removeLights",
                "summary": "remove a night's lights out or lights on; returns it",
                "parameters": [{"name": "person", "in": "query", "required": False,
                                "schema": _PERSON_SCHEMA,
                                "description": "default: the only configured person"}],
                "responses": {"200": {"description": "removed", "content": _content("Lights")},
                              "404": _err("nothing recorded for that night and event"),
                              "422": invalid, **_AUTH_ERRORS},
            },
        },
        "/api/v1/plan/today": {"get": {
            "operationId": "planToday",
            "summary": "tonight's assignment from the person's active trial plan, last night's, "
                       "and deviations from the plan (by the server's clock)",
            "parameters": [{"name": "person", "in": "query", "required": False,
                            "schema": _PERSON_SCHEMA,
                            "description": "default: the only configured person"}],
            "responses": {"200": {"description": "the plan for tonight",
                                  "content": _content("PlanToday")},
                          "422": invalid, **_AUTH_ERRORS},
        }},
        "/api/v1/nights/last": {"get": {
            "operationId": "lastNight",
            "summary": "the person's latest computed night against the median of their previous "
                       "nights (from InfluxDB)",
            "parameters": [{"name": "person", "in": "query", "required": False,
                            "schema": _PERSON_SCHEMA,
                            "description": "default: the only configured person"}],
            "responses": {"200": {"description": "the morning card",
                                  "content": _content("MorningCard")},
                          "422": invalid, **_AUTH_ERRORS},
        }},
    }
    paths["/api/v1/openapi.json"] = {"get": {
        "operationId": "openapi", "summary": "this document", "security": [],
        "responses": {"200": {"description": "OpenAPI 3.1",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }}
    for item in paths.values():
        for method, op in item.items():
            if not (isinstance(op, dict) and "responses" in op):
                continue
            if op["operationId"] not in ("healthz", "openapi"):
                op["responses"]["503"] = _err("storage unavailable; retry later")
            op["responses"]["421"] = _err("the Host header names neither this machine's loopback "
                                          "or bind address nor one in api.allowed_hosts")
            if method in ("post", "patch", "delete"):
                op["responses"]["403"] = _err("cross-site write: the Origin header is neither "
                                              "the API's own nor in api.allowed_origins")
            if "requestBody" in op:
                op["responses"]["415"] = _err("the body is not declared as application/json")
    return {
        "openapi": "3.1.0",
        "info": {"title": "magsleep dose API", "version": __version__,
                 "description": "Log supplement doses and lights out / lights on. Auth: "
                                "'Authorization: Bearer <token>' with a token from api.tokens "
                                "(not needed when none is set)."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def render() -> str:
    return json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    OPENAPI_FILE.write_text(render(), encoding="utf-8")
    sys.stderr.write(f"wrote {OPENAPI_FILE}\n")


if __name__ == "__main__":
    main()
