"""Read InfluxDB with InfluxQL over ``/query``: works on 1.x and on 2.x/3.x v1-compatible APIs.

Rows come back as dicts: ``time`` (int, ns since the epoch, UTC), every column, and the series'
GROUP BY tags merged in. Responses are requested chunked, so large results don't hit a server's
row limit.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgpack  # type: ignore[import-untyped]

from collector.errors import QueryError
from collector.settings import Settings
from collector.storage.connection import InfluxTarget, basic_auth, influx_target

Row = dict[str, Any]


MSGPACK = "application/x-msgpack"
_LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


def _decode(body: bytes, content_type: str) -> Iterator[dict[str, Any]]:
    """The JSON or MessagePack documents of a (chunked) response: one per chunk, errors included."""
    if content_type == MSGPACK:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        unpacker.feed(body)
        try:
            for doc in unpacker:
                if isinstance(doc, dict):
                    yield doc
        except ValueError as exc:
            raise QueryError(f"InfluxDB sent a MessagePack answer that cannot be decoded: {exc}") from exc
        return
    for chunk in body.decode("utf-8", errors="replace").splitlines():
        if not chunk.strip():
            continue
        try:
            doc = json.loads(chunk)
        except json.JSONDecodeError:
            yield {"error": chunk}
            continue
        if isinstance(doc, dict):
            yield doc


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: decoding a night's ~30,000 rows creates as many small
    lists, and the collector's passes over them (not the decoding) would take most of the time."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def quote_ident(name: str) -> str:
    """An InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """An InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class InfluxReader:
    """InfluxQL queries returning typed rows."""

    def __init__(self, target: InfluxTarget) -> None:
        self._t = target
        self._session: aiohttp.ClientSession | None = None
        self._headers: dict[str, str] = {}
        self._loopback = (urlsplit(target.url).hostname or "") in _LOOPBACK
        if target.token:
            self._headers["Authorization"] = f"Token {target.token}"
        elif target.username:
            self._headers["Authorization"] = basic_auth(target.username, target.password or "")

    @classmethod
    def from_settings(cls, settings: Settings, *, url: str | None = None) -> InfluxReader:
        return cls(influx_target(settings, url=url))

    async def __aenter__(self) -> InfluxReader:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=max(self._t.timeout_s, 60)))
        return self._session

    async def raw(
        self, q: str, *, params: Mapping[str, str] | None = None, post: bool = False, binary: bool = False
    ) -> list[dict[str, Any]]:
        """The ``results`` of a query (all chunks merged per statement).

        ``binary`` asks for MessagePack (InfluxDB 1.4+): typed values (a float stays a float, JSON
        would render ``800.0`` as ``800``) and a quarter of the decoding work for bulk reads. A server
        that ignores the request answers JSON, which is decoded as usual.
        """
        args = {"db": self._t.database, "q": q, "epoch": "ns", "chunked": "true", "chunk_size": "20000"}
        if self._t.retention_policy:
            args["rp"] = self._t.retention_policy
        if params:
            args["params"] = json.dumps(dict(params))
        headers = dict(self._headers)
        if binary:
            headers["Accept"] = MSGPACK  # InfluxDB 1.x matches the whole header: no list, no q-values
        if self._loopback:
            headers["Accept-Encoding"] = "identity"  # gzip costs both ends CPU and saves nothing on loopback
        s = self._get_session()
        url = f"{self._t.url}/query"
        try:
            req = s.post(url, data=args, headers=headers) if post else s.get(url, params=args, headers=headers)
            async with req as resp:
                body = await resp.read()
                with gc_paused():
                    docs = list(_decode(body, resp.content_type))
                if resp.status != 200:
                    err = next((str(d["error"]) for d in docs if "error" in d), body.decode(errors="replace"))
                    raise QueryError(f"InfluxDB refused the query ({resp.status}): {err.strip()[:300]}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise QueryError(f"cannot reach InfluxDB at {self._t.url}: {exc!r}") from exc
        merged: dict[int, dict[str, Any]] = {}
        for doc in docs:
            if "error" in doc:  # a chunked answer broken off midway (query killed, server stopping)
                raise QueryError(f"InfluxDB error: {str(doc['error'])[:300]} (query: {q[:200]})")
            for res in doc.get("results", []):
                sid = int(res.get("statement_id", 0))
                if "error" in res:
                    raise QueryError(f"InfluxQL error: {res['error']} (query: {q[:200]})")
                target = merged.setdefault(sid, {"statement_id": sid, "series": []})
                for series in res.get("series", []):
                    prev = target["series"][-1] if target["series"] else None
                    if prev and prev.get("name") == series.get("name") and prev.get("tags") == series.get("tags"):
                        prev["values"].extend(series.get("values", []))
                    else:
                        target["series"].append(series)
        return [merged[k] for k in sorted(merged)]

    async def query(self, q: str, *, params: Mapping[str, str] | None = None) -> list[Row]:
        """Rows of every series of every statement, with tags merged in and ``_measurement`` set."""
        out: list[Row] = []
        for res in await self.raw(q, params=params):
            for series in res["series"]:
                cols = series["columns"]
                tags = series.get("tags") or {}
                name = series.get("name")
                for values in series.get("values", []):
                    row: Row = dict(zip(cols, values, strict=True))
                    row.update(tags)
                    row["_measurement"] = name
                    out.append(row)
        return out

    async def execute(self, q: str) -> None:
        """Run a statement that changes something (CREATE, DROP, DELETE, SELECT INTO) via POST."""
        await self.raw(q, post=True)


async def query_once(settings: Settings, q: str) -> list[Row]:
    """Convenience: one query with a short-lived reader."""
    async with InfluxReader.from_settings(settings) as r:
        return await r.query(q)


def run_query(settings: Settings, q: str) -> list[Row]:
    """Blocking convenience for CLI code paths that are not async."""
    return asyncio.run(query_once(settings, q))
