"""Push the dashboards to a running Grafana with grafana-client's async API, idempotently.

Creates or updates the InfluxDB data source (by uid) and the folder, uploads every dashboard by
uid (skipped when Grafana already has the same content), and optionally adds the logged doses as
annotations on the Overview and Night dashboards (one per dose id, never twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import AsyncGrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException
from niquests.exceptions import RequestException

from collector.dashboards import build_all
from collector.dashboards import night as night_dash
from collector.dashboards import overview as overview_dash
from collector.errors import MagsleepError, StorageError
from collector.settings import Settings
from collector.storage.schema import SUPPLEMENT_DOSE

DATASOURCE_UID = "magsleep-influxdb"
DOSE_TAG = "magsleep-dose"
ANNOTATED_DASHBOARDS = (overview_dash.UID, night_dash.UID)


class GrafanaPushError(MagsleepError):
    """Grafana refused or could not be reached; the message says what to fix."""


@dataclass(frozen=True)
class PushOptions:
    url: str
    token: str = field(repr=False)
    folder: str = "magsleep"
    annotations: bool = False
    person: str | None = None
    influx_url: str = "http://influxdb:8086"
    influx_database: str = "magsleep"
    influx_version: int = 1
    influx_token: str | None = field(default=None, repr=False)
    influx_user: str = ""
    influx_password: str | None = field(default=None, repr=False)


@dataclass
class PushResult:
    datasource_uid: str = DATASOURCE_UID
    datasource_action: str = ""
    folder_uid: str = ""
    dashboards: dict[str, str] = field(default_factory=dict)  # uid -> url path
    unchanged: list[str] = field(default_factory=list)
    annotations: int = 0


def folder_uid(title: str) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", title.lower()).strip("-")
    return (slug or "magsleep")[:40]


def datasource_payload(o: PushOptions) -> dict[str, Any]:
    """The data source as Grafana's API wants it: InfluxQL on 1.x, or 2.x/3.x via the v1 API + token."""
    payload: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": "magsleep InfluxDB",
        "type": "influxdb",
        "access": "proxy",
        "url": o.influx_url,
        "isDefault": True,
        "jsonData": {"version": "InfluxQL", "dbName": o.influx_database, "httpMode": "POST"},
        "secureJsonData": {},
    }
    if o.influx_version == 2:
        payload["jsonData"]["httpHeaderName1"] = "Authorization"
        payload["secureJsonData"]["httpHeaderValue1"] = f"Token {o.influx_token or ''}"
    elif o.influx_user:
        payload["user"] = o.influx_user
        payload["secureJsonData"]["password"] = o.influx_password or ""
    return payload


def _explain(exc: GrafanaException, what: str) -> GrafanaPushError:
    if exc.status_code in (401, 403):
        return GrafanaPushError(f"Grafana refused {what} ({exc.status_code}): check --token (a service-account "
                                "token with Editor or Admin role)")
    if exc.status_code == 0:
        return GrafanaPushError(f"cannot reach Grafana for {what}: {exc.message}; check --url")
    return GrafanaPushError(f"Grafana failed {what} ({exc.status_code}): {exc.message}")


async def _get_or_none(coro: Any) -> Any:
    try:
        return await coro
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


async def push_all(o: PushOptions, *, settings: Settings | None = None) -> PushResult:
    """Push everything; ``settings`` is needed only for ``annotations`` (to read the doses)."""
    # grafana-client is untyped: keep its API object as Any rather than sprinkle ignores.
    api: Any = AsyncGrafanaApi.from_url(o.url, credential=o.token, timeout=15.0)
    result = PushResult()
    step = "the data source"
    try:
        payload = datasource_payload(o)
        existing = await _get_or_none(api.datasource.get_datasource_by_uid(DATASOURCE_UID))
        if existing is None:
            await api.datasource.create_datasource(payload)
            result.datasource_action = "created"
        else:
            await api.datasource.update_datasource_by_uid(DATASOURCE_UID, payload)
            result.datasource_action = "updated"

        step = "the folder"
        result.folder_uid = folder_uid(o.folder)
        folder = await _get_or_none(api.folder.get_folder(result.folder_uid))
        if folder is None:
            await api.folder.create_folder(o.folder, uid=result.folder_uid)
        elif folder.get("title") != o.folder:
            await api.folder.update_folder(result.folder_uid, title=o.folder, overwrite=True)

        for data in build_all().values():
            uid = data["uid"]
            step = f"dashboard {uid}"
            current = await _get_or_none(api.dashboard.get_dashboard(uid))
            if (
                current is not None
                and _comparable(current.get("dashboard", {})) == _comparable(data)
                and current.get("meta", {}).get("folderUid") == result.folder_uid
            ):
                result.unchanged.append(uid)
                result.dashboards[uid] = str(current.get("meta", {}).get("url", f"/d/{uid}"))
                continue
            body = {
                "dashboard": {**data, "id": None},
                "folderUid": result.folder_uid,
                "overwrite": True,
                "message": "magsleep dashboards push",
            }
            resp = await api.dashboard.update_dashboard(body)
            result.dashboards[uid] = str(resp.get("url", f"/d/{uid}"))

        if o.annotations:
            step = "the dose annotations"
            if settings is None:
                raise GrafanaPushError("--annotations needs settings to read the doses from InfluxDB")
            result.annotations = await _push_annotations(api, o, settings)
    except GrafanaException as exc:
        raise _explain(exc, step) from None
    except RequestException as exc:
        why = type(exc).__name__
        raise GrafanaPushError(f"cannot reach Grafana at {o.url} for {step}: {why}; check --url") from None
    return result


async def _push_annotations(api: Any, o: PushOptions, settings: Settings) -> int:
    from collector.storage.reader import InfluxReader, quote_str

    q = f'SELECT "dose_id", "elemental_mg", "amount_mg", "form", "supplement", "person" FROM {SUPPLEMENT_DOSE.quoted}'
    if o.person:
        q += f' WHERE "person" = {quote_str(o.person)}'
    try:
        async with InfluxReader.from_settings(settings) as reader:
            doses = await reader.query(q)
    except StorageError as exc:
        raise GrafanaPushError(f"cannot read the doses from InfluxDB: {exc}") from exc
    added = 0
    for uid in ANNOTATED_DASHBOARDS:
        found = await api.annotations.find_annotations(dashboard_uid=uid, tags=[DOSE_TAG], limit=100_000)
        have = {t for a in found or [] for t in a.get("tags", []) if t.startswith("dose:")}
        for d in doses:
            tag = f"dose:{d.get('dose_id')}"
            if tag in have:
                continue
            ms = int(d["time"]) // 1_000_000
            text = f"{d.get('supplement', 'magnesium')} {d.get('form', '')}: {d.get('elemental_mg', 0):g} mg elemental"
            await api.annotations.add_annotation(
                dashboard_uid=uid,
                time_from=ms,
                time_to=ms,
                tags=[DOSE_TAG, tag, f"person:{d.get('person', '')}"],
                text=text,
            )
            added += 1
    return added
