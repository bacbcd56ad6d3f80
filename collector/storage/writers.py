"""Writers: deliver a batch of line protocol to InfluxDB, behind one small interface.

- :class:`V1Writer`: POST ``/write`` with aiohttp (InfluxDB 1.x, and the v1-compatible endpoint
  of 2.x/3.x with a token).
- :class:`V2Writer`: influxdb-client's async API (``/api/v2/write``; url, org, bucket, token).

Both raise :class:`~collector.errors.WriteError` carrying the HTTP status (0 for a connection
error) and Retry-After; the pipeline decides what to do with it. Secrets never appear in
messages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Protocol

import aiohttp

from collector.errors import WriteError
from collector.storage.connection import InfluxTarget, basic_auth


class Writer(Protocol):
    """Delivers batches; one instance per pipeline."""

    async def write(self, body: bytes) -> None:
        """Write newline-separated lines (ns precision). Raise WriteError on refusal."""
        ...

    async def delete(self, measurement: str, tags: Mapping[str, str], time_ns: int) -> None:
        """Delete the point(s) of ``measurement`` with exactly these tags at ``time_ns``."""
        ...

    async def ensure_database(self) -> None:
        """Create the target database when the server allows it (1.x); no-op elsewhere."""
        ...

    async def close(self) -> None: ...


def _retry_after(headers: Mapping[str, str]) -> float | None:
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:500]
    if isinstance(data, dict):
        return str(data.get("error") or data.get("message") or data)[:500]
    return str(data)[:500]


def _iql_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _iql_str(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def delete_statement(measurement: str, tags: Mapping[str, str], time_ns: int) -> str:
    """The InfluxQL DELETE for one point (all series of ``measurement`` matching the tags)."""
    conds = [f"{_iql_ident(k)} = {_iql_str(v)}" for k, v in sorted(tags.items())]
    conds.append(f"time = {int(time_ns)}")
    return f"DELETE FROM {_iql_ident(measurement)} WHERE {' AND '.join(conds)}"


class V1Writer:
    """InfluxDB 1.x ``/write`` (line protocol), also 2.x/3.x v1-compatible endpoints."""

    def __init__(self, target: InfluxTarget, session: aiohttp.ClientSession | None = None) -> None:
        self._t = target
        self._session = session
        self._own_session = session is None
        self._params: dict[str, str] = {"db": target.database, "precision": "ns"}
        if target.retention_policy:
            self._params["rp"] = target.retention_policy
        self._headers: dict[str, str] = {"Content-Type": "text/plain; charset=utf-8"}
        if target.token:
            self._headers["Authorization"] = f"Token {target.token}"
        elif target.username:
            self._headers["Authorization"] = basic_auth(target.username, target.password or "")

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._t.timeout_s),
                connector=aiohttp.TCPConnector(limit=8),
            )
            self._own_session = True
        return self._session

    async def write(self, body: bytes) -> None:
        s = self._get_session()
        try:
            async with s.post(
                f"{self._t.url}/write",
                params=self._params,
                data=body,
                headers=self._headers,
            ) as resp:
                if resp.status in (200, 204):
                    return
                text = await resp.text()
                raise WriteError(
                    f"InfluxDB refused the write ({resp.status}): {_error_text(text)}",
                    status=resp.status,
                    retry_after=_retry_after(resp.headers),
                )
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise WriteError(f"cannot reach InfluxDB at {self._t.url}: {exc!r}", status=0) from exc

    async def _query_post(self, q: str) -> None:
        s = self._get_session()
        params = {"q": q, "db": self._t.database}
        try:
            async with s.post(f"{self._t.url}/query", data=params, headers=self._query_headers()) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise WriteError(
                        f"InfluxDB refused {q.split()[0]} ({resp.status}): {_error_text(text)}",
                        status=resp.status,
                        retry_after=_retry_after(resp.headers),
                    )
                for result in json.loads(text).get("results", []):
                    if "error" in result:
                        raise WriteError(f"InfluxDB refused {q.split()[0]}: {result['error']}", status=400)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise WriteError(f"cannot reach InfluxDB at {self._t.url}: {exc!r}", status=0) from exc

    def _query_headers(self) -> dict[str, str]:
        return {k: v for k, v in self._headers.items() if k == "Authorization"}

    async def delete(self, measurement: str, tags: Mapping[str, str], time_ns: int) -> None:
        await self._query_post(delete_statement(measurement, tags, time_ns))

    async def ensure_database(self) -> None:
        if self._t.token:  # 2.x/3.x: buckets are created by their admin, DBRP maps them
            return
        await self._query_post(f"CREATE DATABASE {_iql_ident(self._t.database)}")

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
        self._session = None


class V2Writer:
    """InfluxDB 2.x through influxdb-client's async write and delete APIs."""

    def __init__(self, target: InfluxTarget) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self._t = target
        self._client = InfluxDBClientAsync(
            url=target.url,
            token=target.token or "",
            org=target.org,
            timeout=int(target.timeout_s * 1000),
        )

    async def write(self, body: bytes) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            await self._client.write_api().write(
                bucket=self._t.bucket,
                org=self._t.org,
                record=body,
                write_precision=WritePrecision.NS,  # type: ignore[arg-type]
            )
        except ApiException as exc:
            headers = {str(k): str(v) for k, v in (exc.headers or {}).items()}
            raise WriteError(
                f"InfluxDB refused the write ({exc.status}): {_error_text(str(exc.body or ''))}",
                status=int(exc.status or 0),
                retry_after=_retry_after(headers),
            ) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise WriteError(f"cannot reach InfluxDB at {self._t.url}: {exc!r}", status=0) from exc

    async def delete(self, measurement: str, tags: Mapping[str, str], time_ns: int) -> None:
        from influxdb_client.rest import ApiException

        at = datetime.fromtimestamp(time_ns / 1e9, tz=UTC)
        pred = " AND ".join([f'_measurement="{measurement}"'] + [f'{k}="{v}"' for k, v in sorted(tags.items())])
        try:
            await self._client.delete_api().delete(
                start=at, stop=at, predicate=pred, bucket=self._t.bucket, org=self._t.org
            )
        except ApiException as exc:
            raise WriteError(f"InfluxDB refused the delete ({exc.status})", status=int(exc.status or 0)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise WriteError(f"cannot reach InfluxDB at {self._t.url}: {exc!r}", status=0) from exc

    async def ensure_database(self) -> None:
        return None

    async def close(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


def make_writer(target: InfluxTarget) -> Writer:
    return V2Writer(target) if target.version == 2 else V1Writer(target)
