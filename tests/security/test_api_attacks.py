"""Attacks on the dose API from issue 20, replayed as raw HTTP against a running server.

Each test sends what a hostile web page, a rebinding DNS name or a careless client can send, and
checks that nothing is stored or disclosed and that the answer says what was wrong.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.doses.conftest import TOKEN, make_settings
from tests.security.conftest import Api, serve

EVIL = "https://evil.example"
JSON = {"Content-Type": "application/json"}


def dose_body(**extra: Any) -> bytes:
    return json.dumps({"person": "alice", "amount_mg": 300, "form": "citrate", **extra}).encode()


def error_of(body: bytes) -> str:
    return str(json.loads(body)["error"])


def create_same_origin(api: Api) -> str:
    status, _, body = api.request("POST", "/api/v1/doses", headers=JSON, body=dose_body())
    assert status == 201, body
    return str(json.loads(body)["dose"]["id"])


# -- issue 20 #1: cross-site requests -----------------------------------------------------------

def test_cross_site_text_plain_post_is_refused(open_api: Api) -> None:
    """curl -X POST -H 'Content-Type: text/plain' -H 'Origin: https://evil.example' ..."""
    status, _, body = open_api.request(
        "POST", "/api/v1/doses", body=dose_body(amount_mg=1999),
        headers={"Content-Type": "text/plain", "Origin": EVIL})
    assert status == 403, body
    assert "https://evil.example" in error_of(body) and "api.allowed_origins" in error_of(body)
    assert open_api.doses() == []


@pytest.mark.parametrize("ctype", [
    "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x", None,
])
def test_body_that_is_not_declared_json_is_415(open_api: Api, ctype: str | None) -> None:
    """A body a form or a no-cors fetch can send (no preflight) is never parsed as a dose."""
    headers: dict[str, str | bytes] = {"Content-Type": ctype} if ctype else {}
    for method, path in (("POST", "/api/v1/doses"), ("POST", "/api/v1/lights")):
        status, _, body = open_api.request(method, path, headers=headers, body=dose_body())
        assert status == 415, (method, path, body)
        assert "Content-Type: application/json" in error_of(body)
    assert open_api.doses() == []


def test_json_with_charset_is_accepted(open_api: Api) -> None:
    status, _, body = open_api.request(
        "POST", "/api/v1/doses", body=dose_body(),
        headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 201, body


def test_cross_origin_writes_refused_on_every_endpoint(open_api: Api) -> None:
    dose_id = create_same_origin(open_api)
    night = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    attempts: list[tuple[str, str, bytes | None]] = [
        ("POST", "/api/v1/doses", dose_body()),
        ("PATCH", f"/api/v1/doses/{dose_id}", b'{"amount_mg": 1999}'),
        ("DELETE", f"/api/v1/doses/{dose_id}", None),
        ("POST", "/api/v1/lights", b'{"person": "alice", "event": "lights_out"}'),
        ("DELETE", f"/api/v1/lights/{night}/lights_out?person=alice", None),
    ]
    for origin in (EVIL, "null", f"http://127.0.0.1:{open_api.port + 1}",
                   f"https://127.0.0.1:{open_api.port}.evil.example"):
        for method, path, payload in attempts:
            status, headers, body = open_api.request(
                method, path, body=payload, headers={**JSON, "Origin": origin})
            assert status == 403, (origin, method, path, body)
            assert "access-control-allow-origin" not in headers
    (kept,) = open_api.doses()
    assert (str(kept.id), kept.amount_mg) == (dose_id, 300.0)


def test_same_origin_writes_work(open_api: Api) -> None:
    """The phone page sends Origin: its own origin; that is the API's own host and port."""
    for host in (f"127.0.0.1:{open_api.port}", f"localhost:{open_api.port}"):
        status, _, body = open_api.request(
            "POST", "/api/v1/doses", body=dose_body(), host=host,
            headers={**JSON, "Origin": f"http://{host}"})
        assert status == 201, (host, body)
    assert len(open_api.doses()) == 2


# -- issue 20 #1: DNS rebinding -----------------------------------------------------------------

def test_rebinding_host_cannot_read_or_write(open_api: Api) -> None:
    """curl -H 'Host: attacker.example:PORT' http://127.0.0.1:PORT/api/v1/doses"""
    dose_id = create_same_origin(open_api)
    host = f"attacker.example:{open_api.port}"
    for path in ("/api/v1/doses", "/api/v1/persons", f"/api/v1/doses/{dose_id}", "/app/",
                 "/app/app.js", "/healthz", "/api/v1/lights"):
        status, _, body = open_api.request("GET", path, host=host)
        assert status == 421, (path, body)
        assert dose_id.encode() not in body
        assert "attacker.example" in error_of(body) and "api.allowed_hosts" in error_of(body)
    # a rebound page is same-origin with itself: its writes are stopped by the Host check
    status, _, body = open_api.request("POST", "/api/v1/doses", host=host, body=dose_body(),
                                       headers={**JSON, "Origin": f"http://{host}"})
    assert status == 421, body
    assert len(open_api.doses()) == 1


@pytest.mark.parametrize("host", [
    "127.0.0.1:{port}", "localhost:{port}", "LOCALHOST:{port}", "localhost.:{port}", "[::1]:{port}",
    "127.0.0.2:{port}", "127.0.0.1", "localhost",
])
def test_loopback_hosts_are_accepted(open_api: Api, host: str) -> None:
    status, _, body = open_api.request("GET", "/api/v1/doses", host=host.format(port=open_api.port))
    assert status == 200, body


@pytest.mark.parametrize("host", [
    "attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io:{port}", "192.168.1.20",
    "[fe80::1]:{port}", "", "127.0.0.1:{port}@evil.example",
])
def test_other_hosts_are_refused_on_a_loopback_bind(open_api: Api, host: str) -> None:
    status, _, body = open_api.request("GET", "/api/v1/doses", host=host.format(port=open_api.port))
    assert status == 421, body


def test_allowed_hosts_and_origins_from_settings(
    tmp_path: Path, influx_server: Any, influx_db: str
) -> None:
    s = make_settings(tmp_path / "state", influx_server.url, influx_db, tokens=[],
                      allowed_hosts=["magsleep.lan"], allowed_origins=["https://magsleep.lan"])
    with serve(s) as api:
        status, _, _ = api.request("GET", "/api/v1/doses", host="magsleep.lan")
        assert status == 200
        status, _, _ = api.request("GET", "/api/v1/doses", host="MagSleep.LAN:8443")
        assert status == 200
        # behind a TLS proxy: the page's origin is https://magsleep.lan, the Host a plain one
        status, _, body = api.request("POST", "/api/v1/doses", host="magsleep.lan:8765",
                                      body=dose_body(),
                                      headers={**JSON, "Origin": "https://magsleep.lan"})
        assert status == 201, body
        status, _, _ = api.request("POST", "/api/v1/doses", host="magsleep.lan", body=dose_body(),
                                   headers={**JSON, "Origin": "https://other.lan"})
        assert status == 403
        status, _, _ = api.request("GET", "/api/v1/doses", host="other.lan")
        assert status == 421
        assert len(api.doses()) == 1


def test_bind_address_is_an_allowed_host(tmp_path: Path, influx_server: Any, influx_db: str) -> None:
    s = make_settings(tmp_path / "a", influx_server.url, influx_db, host="10.1.2.3")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(s) as api:
        assert api.request("GET", "/api/v1/doses", host="10.1.2.3:8765", headers=auth)[0] == 200
        assert api.request("GET", "/api/v1/doses", host="10.1.2.4:8765", headers=auth)[0] == 421
    # bound to every address: any address of the machine, but still no names
    s = make_settings(tmp_path / "b", influx_server.url, influx_db, host="0.0.0.0")
    with serve(s) as api:
        assert api.request("GET", "/api/v1/doses", host="192.168.1.20:8765", headers=auth)[0] == 200
        assert api.request("GET", "/api/v1/doses", host="[fd00::5]:8765", headers=auth)[0] == 200
        assert api.request("GET", "/api/v1/doses", host="evil.example:8765", headers=auth)[0] == 421


def test_preflight_only_for_listed_origins(
    open_api: Api, tmp_path: Path, influx_server: Any, influx_db: str
) -> None:
    pre = {"Origin": EVIL, "Access-Control-Request-Method": "POST",
           "Access-Control-Request-Headers": "content-type"}
    status, headers, _ = open_api.request("OPTIONS", "/api/v1/doses", headers=pre)
    assert status >= 400 and "access-control-allow-origin" not in headers
    s = make_settings(tmp_path / "cors", influx_server.url, influx_db, tokens=[],
                      cors_origins=["https://phone.example"])
    with serve(s) as api:
        status, headers, _ = api.request("OPTIONS", "/api/v1/doses", headers=pre)
        assert status == 403 and "access-control-allow-origin" not in headers
        ok = {**pre, "Origin": "https://phone.example"}
        status, headers, _ = api.request("OPTIONS", "/api/v1/doses", headers=ok)
        assert status == 204
        assert headers["access-control-allow-origin"] == "https://phone.example"
        assert "content-type" in headers["access-control-allow-headers"].lower()
        # a listed CORS origin may write (that is what listing it is for)
        status, headers, body = api.request("POST", "/api/v1/doses", body=dose_body(),
                                            headers={**JSON, "Origin": "https://phone.example"})
        assert status == 201, body
        assert headers["access-control-allow-origin"] == "https://phone.example"
        status, _, _ = api.request("OPTIONS", "/api/v1/doses", host="attacker.example", headers=ok)
        assert status == 421


# -- issue 20 #7: a non-UTF-8 Authorization header ----------------------------------------------

@pytest.mark.parametrize("value", [b"Bearer \xff\xfe", b"\xff\xfe\xfd", "Bearer tök".encode(),
                                   b"Bearer " + TOKEN.encode() + b"\xff"])
def test_undecodable_authorization_is_401(token_api: Api, value: bytes) -> None:
    status, headers, body = token_api.request("GET", "/api/v1/doses",
                                              headers={"Authorization": value})
    assert status == 401, body
    assert headers["www-authenticate"].startswith("Bearer")
    ok = token_api.request("GET", "/api/v1/doses", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok[0] == 200


# -- issue 20 #8: clients that go away mid-body -------------------------------------------------

def test_client_gone_mid_body_logs_one_debug_line(
    open_api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    n = 20
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", open_api.port), timeout=10) as so:
            so.sendall(f"POST /api/v1/doses HTTP/1.1\r\nHost: 127.0.0.1:{open_api.port}\r\n"
                       "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
                       '{"amount_mg": 3'.encode())

    def gone() -> list[logging.LogRecord]:
        return [r for r in caplog.records if "went away" in r.getMessage()]

    deadline = time.monotonic() + 20
    while len(gone()) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # anything logged late would be logged by now
    assert len(gone()) == n
    assert all(r.levelno == logging.DEBUG and r.exc_info is None for r in gone())
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]
    assert open_api.doses() == []
    status, _, _ = open_api.request("POST", "/api/v1/doses", headers=JSON, body=dose_body())
    assert status == 201
