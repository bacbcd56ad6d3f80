"""The dose HTTP API (``/api/v1``) and the phone page (``/app/``), on aiohttp.

Standalone: :func:`create_app` / :func:`serve` (``magsleep api``). Inside the daemon:
:func:`mount` adds the routes and the dose service to the daemon's application, writing
through the daemon's pipeline.

Security (threat model in docs/deployment.md): :func:`guard` answers 421 to a Host header that is
not loopback, the bind address or in ``api.allowed_hosts`` (DNS rebinding), 403 to a write whose
Origin is neither the API's own nor listed (cross-site requests), 415 to a body that is not
declared ``application/json`` (what a form or a no-cors fetch can send without a preflight).
Bearer tokens from ``api.tokens`` are compared in constant time; without tokens the API only binds
a loopback address (:func:`check_bind`); bodies above ``api.max_body_bytes`` get 413; CORS headers
only for origins listed in ``api.cors_origins``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import pydantic
from aiohttp import web

from collector.doses.entities import (
    ConflictError,
    DoseCreate,
    DoseList,
    DosePatch,
    DoseValidationError,
    ErrorBody,
    FieldProblem,
    LightsCreate,
    LightsEvent,
    LightsList,
    NotFoundError,
    Person,
    PersonList,
    ProblemDetail,
    Source,
    problems_from_pydantic,
)
from collector.doses.forms import FORM_NAMES, Form
from collector.doses.openapi import openapi_document
from collector.doses.rules import PersonLookup
from collector.doses.service import DoseService, PointSink
from collector.errors import ConfigError, MagsleepError
from collector.settings import Settings

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).parent / "web"
API = "/api/v1"
# How often a long-lived service hands over journal operations queued by other processes.
DRAIN_INTERVAL_S = 10.0
DOSE_SERVICE = web.AppKey("dose_service", DoseService)
PIPELINE = web.AppKey("dose_pipeline", object)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ListQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    person: str | None = pydantic.Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    since: pydantic.AwareDatetime | None = None
    until: pydantic.AwareDatetime | None = None
    limit: int = pydantic.Field(default=100, ge=1, le=1000)


class LightsQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    person: str | None = pydantic.Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    since: date | None = pydantic.Field(default=None, description="first night (evening's date)")
    limit: int = pydantic.Field(default=100, ge=1, le=1000)


class PersonQuery(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="ignore")

    person: str | None = pydantic.Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, settings: Settings) -> None:
    """Refuse a non-loopback address unless at least one API token is configured."""
    if not is_loopback(host) and not _tokens(settings):
        raise ConfigError(
            f"refusing to bind the API to {host} without a token: anyone on the network could "
            "log or delete doses. Add a token to api.tokens (e.g. `openssl rand -hex 32`) or "
            "bind 127.0.0.1")


def _tokens(settings: Settings) -> list[bytes]:
    return [t.encode() for t in settings.api.token_values()]  # api.tokens and api.token_file


def token_ok(header: str | None, tokens: Iterable[bytes]) -> bool:
    """Whether ``header`` is ``Bearer <one of tokens>``; every token is compared (constant time)."""
    given = b""
    if header is not None and header[:7].lower() == "bearer ":
        # aiohttp hands over undecodable bytes as surrogates: compare the bytes as sent
        given = header[7:].strip().encode("utf-8", "surrogateescape")
    ok = False
    for t in tokens:
        ok |= hmac.compare_digest(given, t)
    return ok and bool(given)


# -- Host, Origin and Content-Type checks ---------------------------------------------------

_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_BODIES = frozenset({"POST", "PUT", "PATCH"})
_WILDCARDS = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 (recognised, not bound)
_NAME_RE = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$")


def _norm_host(host: str) -> str:
    host = host.strip().lower().removeprefix("[").removesuffix("]").rstrip(".")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def parse_host(raw: str) -> str | None:
    """The host part of a Host header (``name[:port]``, ``[v6][:port]``), or None if malformed."""
    raw = raw.strip().lower()
    port = ""
    if raw.startswith("["):
        end = raw.find("]")
        if end < 0:
            return None
        host, rest = raw[1:end], raw[end + 1:]
        if rest:
            if not rest.startswith(":"):
                return None
            port = rest[1:]
        try:
            return str(ipaddress.IPv6Address(host))
        except ValueError:
            return None
    else:
        host, _, port = raw.partition(":")
    if port and not (port.isdigit() and len(port) <= 5):
        return None
    host = host.rstrip(".")
    if not host or not _NAME_RE.match(host):
        return None
    return _norm_host(host)


class HostPolicy:
    """Which Host headers and Origins the API accepts (from ``api.*`` and the bind address)."""

    def __init__(self, settings: Settings) -> None:
        api = settings.api
        bind = _norm_host(api.host)
        self.any_ip = bind in _WILDCARDS
        self.any_host = "*" in api.allowed_hosts
        self.names = {"localhost"} | {_norm_host(h) for h in api.allowed_hosts if h != "*"}
        if not self.any_ip:
            self.names.add(bind)
        self.origins = {o.strip().rstrip("/").lower() for o in [*api.allowed_origins,
                                                               *api.cors_origins]}

    def host_ok(self, raw: str | None) -> bool:
        if raw is None:  # HTTP/1.0 without Host: not a browser
            return True
        if self.any_host:
            return True
        host = parse_host(raw)
        if host is None:
            return False
        if host in self.names:
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False
        return ip.is_loopback or self.any_ip

    def origin_ok(self, origin: str, host: str | None) -> bool:
        """Same origin as the API (its own host and port), or listed in the settings."""
        o = origin.strip().rstrip("/").lower()
        if o in self.origins:
            return True
        try:
            parts = urlsplit(o)
        except ValueError:
            return False
        return (parts.scheme in ("http", "https") and host is not None
                and parts.netloc == host.strip().lower() and not parts.path)


def guard(settings: Settings) -> Any:
    """Middleware: Host (421), Origin of writes (403), JSON bodies (415), clients gone (quiet)."""
    policy = HostPolicy(settings)

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if not policy.host_ok(host):
            shown = (host or "")[:100]
            return _error(421, f"this server does not answer to the host name {shown!r} (a "
                          "web page may be trying DNS rebinding); open it by its address or "
                          "add the name to api.allowed_hosts")
        origin = request.headers.get("Origin")
        if request.method in _WRITES and origin is not None and not policy.origin_ok(origin, host):
            return _error(403, f"writes from the web page at {origin[:100]!r} are not allowed "
                          "(cross-site request); use the phone page served by this API, or add "
                          "that origin to api.allowed_origins")
        if request.method in _BODIES and request.path.startswith(f"{API}/") and (
                "Content-Type" not in request.headers
                or request.content_type != "application/json"):
            return _error(415, "send the body as JSON with 'Content-Type: application/json' "
                          f"(got {request.headers.get('Content-Type', 'none')[:100]!r})")
        try:
            return await handler(request)
        except ConnectionResetError:
            log.debug("dose API: client went away mid-request (%s %s)", request.method,
                      request.path)
            return web.Response(status=400)

    return check


def _json(model: pydantic.BaseModel, status: int = 200) -> web.Response:
    return web.Response(text=model.model_dump_json(), status=status,
                        content_type="application/json")


def _error(status: int, message: str, problems: Iterable[FieldProblem] = (),
           headers: dict[str, str] | None = None) -> web.Response:
    body = ErrorBody(error=message,
                     detail=[ProblemDetail(field=p.field, reason=p.reason) for p in problems])
    return web.Response(text=body.model_dump_json(), status=status,
                        content_type="application/json", headers=headers)


def endpoint(settings: Settings, *, auth: bool = True) -> Callable[[Handler], Handler]:
    """Wrap a handler: auth, size limit, errors as JSON with what to fix, CORS."""
    tokens = _tokens(settings)
    max_body = settings.api.max_body_bytes
    origins = set(settings.api.cors_origins)

    def wrap(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            resp = await _handle(request)
            origin = request.headers.get("Origin")
            if origin and origin in origins:
                resp.headers["Access-Control-Allow-Origin"] = origin
                resp.headers["Vary"] = "Origin"
            return resp

        async def _handle(request: web.Request) -> web.StreamResponse:
            if auth and tokens and not token_ok(request.headers.get("Authorization"), tokens):
                return _error(401, "missing or wrong API token; send 'Authorization: Bearer "
                              "<token>' with a token from api.tokens",
                              headers={"WWW-Authenticate": 'Bearer realm="magsleep"'})
            if request.content_length is not None and request.content_length > max_body:
                return _error(413, f"request body over {max_body} bytes; send one dose per "
                              "request (api.max_body_bytes)")
            try:
                return await handler(request)
            except web.HTTPRequestEntityTooLarge:
                return _error(413, f"request body over {max_body} bytes; send one dose per "
                              "request (api.max_body_bytes)")
            except pydantic.ValidationError as exc:
                problems = problems_from_pydantic(exc)
                return _error(422, "invalid request: " + "; ".join(map(str, problems)), problems)
            except DoseValidationError as exc:
                what = "lights out/on" if request.path.startswith(f"{API}/lights") else "dose"
                return _error(422, f"invalid {what}: {exc}", exc.problems)
            except NotFoundError as exc:
                return _error(404, str(exc))
            except ConflictError as exc:
                return _error(409, str(exc))
            except MagsleepError as exc:
                log.warning("dose API: %s", exc)
                return _error(503, f"{exc}")

        return wrapped

    return wrap


async def _body(request: web.Request, max_body: int) -> bytes:
    data = bytearray()
    async for chunk in request.content.iter_chunked(16384):
        data += chunk
        if len(data) > max_body:
            raise web.HTTPRequestEntityTooLarge(max_size=max_body, actual_size=len(data))
    return bytes(data)


def _dose_id(request: web.Request) -> UUID:
    try:
        return UUID(request.match_info["id"])
    except ValueError:
        raise DoseValidationError([FieldProblem(
            "id", "must be a UUID like 3f2b8c1e-4d5a-4b6c-9d7e-0123456789ab")]) from None


def _person(svc: DoseService, person: str | None) -> str:
    """The named person (or the only one); 422 naming the known ones otherwise."""
    problems: list[FieldProblem] = []
    name = svc.rules.resolve_person(person, problems)
    if problems:
        raise DoseValidationError(problems)
    return name


def _night_event(request: web.Request) -> tuple[date, LightsEvent]:
    problems: list[FieldProblem] = []
    night, event = date.min, LightsEvent.lights_out
    try:
        night = date.fromisoformat(request.match_info["night"])
    except ValueError:
        problems.append(FieldProblem("night", "must be the evening's date as YYYY-MM-DD"))
    try:
        event = LightsEvent(request.match_info["event"])
    except ValueError:
        problems.append(FieldProblem("event", "must be lights_out or lights_on"))
    if problems:
        raise DoseValidationError(problems)
    return night, event


def add_routes(app: web.Application, settings: Settings, *, with_root: bool = True) -> None:
    """Register the API and phone-page routes on ``app`` (the service is ``app[DOSE_SERVICE]``)."""
    ep = endpoint(settings)
    public = endpoint(settings, auth=False)
    max_body = settings.api.max_body_bytes
    app.middlewares.append(guard(settings))
    app.on_response_prepare.append(_server_date)

    def svc(request: web.Request) -> DoseService:
        return request.app[DOSE_SERVICE]

    async def healthz(request: web.Request) -> web.StreamResponse:
        health = await svc(request).health()
        return _json(health, status=200 if health.status == "ok" else 503)

    async def openapi(request: web.Request) -> web.StreamResponse:
        return web.json_response(openapi_document())

    async def persons(request: web.Request) -> web.StreamResponse:
        s = svc(request)
        people = [Person(name=n, timezone=str(s.rules.tz(n))) for n in s.rules.persons()]
        return _json(PersonList(persons=people, forms=[Form(f) for f in FORM_NAMES],
                                default_form=s.rules.default_form()))

    async def list_doses(request: web.Request) -> web.StreamResponse:
        q = ListQuery.model_validate(dict(request.query))
        doses = await svc(request).list_doses(person=q.person, since=q.since, until=q.until,
                                              limit=q.limit)
        return _json(DoseList(doses=doses))

    async def create(request: web.Request) -> web.StreamResponse:
        body = DoseCreate.model_validate_json(await _body(request, max_body) or b"null", strict=True)
        res = await svc(request).add(body, default_source=Source.api)
        return _json(res, status=201 if res.created else 200)

    async def get_one(request: web.Request) -> web.StreamResponse:
        return _json(await svc(request).get(_dose_id(request)))

    async def patch(request: web.Request) -> web.StreamResponse:
        uid = _dose_id(request)
        body = DosePatch.model_validate_json(await _body(request, max_body) or b"null", strict=True)
        return _json(await svc(request).update(uid, body))

    async def delete(request: web.Request) -> web.StreamResponse:
        return _json(await svc(request).delete(_dose_id(request)))

    async def list_lights(request: web.Request) -> web.StreamResponse:
        q = LightsQuery.model_validate(dict(request.query))
        found = await svc(request).list_lights(person=q.person, since=q.since, limit=q.limit)
        return _json(LightsList(lights=found))

    async def set_lights(request: web.Request) -> web.StreamResponse:
        body = LightsCreate.model_validate_json(await _body(request, max_body) or b"null", strict=True)
        saved, changed = await svc(request).set_lights(body.person, body.event, body.at,
                                                       source=body.source)
        return _json(saved, status=201 if changed else 200)

    async def remove_lights(request: web.Request) -> web.StreamResponse:
        night, event = _night_event(request)
        q = PersonQuery.model_validate(dict(request.query))
        return _json(await svc(request).remove_lights(q.person, night, event))

    async def plan_today(request: web.Request) -> web.StreamResponse:
        from collector.doses.today import plan_doses
        from collector.doses.today import plan_today as build
        from collector.effects.store import PlanStore

        s = svc(request)
        name = _person(s, PersonQuery.model_validate(dict(request.query)).person)
        now, tz = s.rules.now(), s.rules.tz(name)
        recent = await plan_doses(s, name, now)
        plan = await asyncio.to_thread(PlanStore.from_settings(settings).active, name)
        return _json(build(name, now, tz, plan, recent))

    async def last_night(request: web.Request) -> web.StreamResponse:
        from collector.doses.today import morning_card, read_night_rows
        from collector.storage.reader import InfluxReader

        s = svc(request)
        name = _person(s, PersonQuery.model_validate(dict(request.query)).person)
        today = s.rules.now().astimezone(s.rules.tz(name)).date()
        async with InfluxReader.from_settings(settings) as reader:
            rows = await read_night_rows(reader, name, today)
        return _json(morning_card(name, rows))

    async def page(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(WEB_DIR / "index.html", headers=_PAGE_HEADERS)

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in _ASSETS:
            return _error(404, f"no file {name!r}; the page is at /app/")
        return web.FileResponse(WEB_DIR / name, headers=_PAGE_HEADERS)

    async def preflight(request: web.Request) -> web.StreamResponse:
        origin = request.headers.get("Origin", "")
        if origin not in settings.api.cors_origins:
            return _error(403, f"origin {origin!r} is not in api.cors_origins")
        return web.Response(status=204, headers={
            "Access-Control-Allow-Origin": origin,
            "Access-Control-Allow-Methods": "GET, POST, PATCH, DELETE",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": "600",
            "Vary": "Origin",
        })

    r = app.router
    r.add_get("/healthz", public(healthz))
    r.add_get(f"{API}/openapi.json", public(openapi))
    r.add_get(f"{API}/persons", ep(persons))
    r.add_get(f"{API}/doses", ep(list_doses))
    r.add_post(f"{API}/doses", ep(create))
    r.add_get(f"{API}/doses/{{id}}", ep(get_one))
    r.add_patch(f"{API}/doses/{{id}}", ep(patch))
    r.add_delete(f"{API}/doses/{{id}}", ep(delete))
    r.add_get(f"{API}/lights", ep(list_lights))
    r.add_post(f"{API}/lights", ep(set_lights))
    r.add_delete(f"{API}/lights/{{night}}/{{event}}", ep(remove_lights))
    r.add_get(f"{API}/plan/today", ep(plan_today))
    r.add_get(f"{API}/nights/last", ep(last_night))
    r.add_get("/app/", page)
    r.add_get("/app/{name}", asset)
    if with_root:
        r.add_get("/", _to_app)
    if settings.api.cors_origins:
        for path in (f"{API}/persons", f"{API}/doses", f"{API}/doses/{{id}}", f"{API}/lights",
                     f"{API}/lights/{{night}}/{{event}}", f"{API}/plan/today",
                     f"{API}/nights/last"):
            r.add_route("OPTIONS", path, preflight)


async def _server_date(request: web.Request, response: web.StreamResponse) -> None:
    """``Date`` from the clock doses are checked against, so the page can tell when it disagrees."""
    svc = request.app.get(DOSE_SERVICE)
    if svc is not None:
        response.headers["Date"] = format_datetime(svc.rules.now().astimezone(UTC), usegmt=True)


_ASSETS = {"app.js", "style.css", "index.html"}
_PAGE_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; connect-src 'self'; img-src 'self' data:",
    "Referrer-Policy": "no-referrer",
}


async def _to_app(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/app/")


def mount(
    app: web.Application,
    settings: Settings,
    *,
    sink: PointSink | None,
    persons: PersonLookup | None = None,
) -> None:
    """Add the dose API to the daemon's ``app``, writing through its pipeline ``sink``.

    ``persons``: who exists (default: the configured persons only)."""

    async def lifecycle(a: web.Application) -> AsyncIterator[None]:
        async with DoseService(settings, sink=sink, persons=persons,
                               drain_interval_s=DRAIN_INTERVAL_S) as svc:
            a[DOSE_SERVICE] = svc
            yield

    app.cleanup_ctx.append(lifecycle)
    add_routes(app, settings)


def create_app(
    settings: Settings,
    *,
    persons: PersonLookup | None = None,
    now: Callable[[], datetime] | None = None,
    influx: bool = True,
) -> web.Application:
    """The standalone application with its own pipeline (outbox ``outbox-api.sqlite``).

    ``persons``: who exists (default: the configured persons only)."""
    app = web.Application(client_max_size=settings.api.max_body_bytes)

    async def lifecycle(a: web.Application) -> AsyncIterator[None]:
        pipe = None
        lock = None
        if influx:
            from collector.storage.pipeline import start_locked

            lock, pipe = await start_locked(settings, "api", "api", what="magsleep api")
            a[PIPELINE] = pipe
        kwargs: dict[str, Any] = {"sink": pipe, "persons": persons,
                                  "drain_interval_s": DRAIN_INTERVAL_S}
        if now is not None:
            kwargs["now"] = now
        try:
            async with DoseService(settings, **kwargs) as svc:
                a[DOSE_SERVICE] = svc
                yield
        finally:
            try:
                if pipe is not None:
                    await pipe.stop()
            finally:
                if lock is not None:
                    lock.release()

    app.cleanup_ctx.append(lifecycle)
    add_routes(app, settings)
    return app


def bound_to(settings: Settings, host: str) -> Settings:
    """``settings`` with ``api.host`` set to the address actually bound (``--host``)."""
    if host == settings.api.host:
        return settings
    return settings.model_copy(update={"api": settings.api.model_copy(update={"host": host})})


@asynccontextmanager
async def _listening(app: web.Application, host: str, port: int, fix: str) -> AsyncIterator[str]:
    """Serve ``app`` on ``host``:``port`` (0: any free port) and yield its base URL; ``fix`` ends a bind error."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} for the dose API: {exc.strerror}; {fix}") from None
        bound = runner.addresses[0][1] if port == 0 else port
        shown = f"[{host}]" if ":" in host else host
        log.info("dose API and phone page on http://%s:%d/app/", shown, bound)
        yield f"http://{shown}:{bound}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def running_api(
    settings: Settings,
    *,
    sink: PointSink | None,
    persons: PersonLookup | None = None,
    host: str | None = None,
    port: int | None = None,
) -> AsyncIterator[str]:
    """Serve the dose API beside other work (the daemon): ``async with running_api(s, sink=pipe)``.

    Yields the base URL. Writes go through ``sink`` (the daemon's pipeline).
    """
    h = host or settings.api.host
    p = settings.api.port if port is None else port
    check_bind(h, settings)
    settings = bound_to(settings, h)
    app = web.Application(client_max_size=settings.api.max_body_bytes)
    mount(app, settings, sink=sink, persons=persons)
    async with _listening(app, h, p, "set api.port to a free port or stop what uses it") as url:
        yield url


async def serve(settings: Settings, *, host: str | None = None, port: int | None = None,
                persons: PersonLookup | None = None) -> None:
    """Run the standalone API until interrupted; ``persons``: who exists (default: the configured ones)."""
    h = host or settings.api.host
    p = settings.api.port if port is None else port
    check_bind(h, settings)
    app = create_app(bound_to(settings, h), persons=persons)
    async with _listening(app, h, p, "pick another --port or stop what uses it") as url:
        print(f"dose API and phone page on {url}/app/  (Ctrl-C stops)", flush=True)  # noqa: T201
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


__all__ = [
    "DOSE_SERVICE",
    "PIPELINE",
    "add_routes",
    "check_bind",
    "create_app",
    "json",
    "mount",
    "serve",
    "token_ok",
]
