"""garmin-grafana: read a user's existing InfluxDB 1.x database (its ``/query`` API).

garmin-grafana (github.com/arpanghosh8453/garmin-grafana, ``src/garmin_grafana/garmin_fetch.py``)
writes, per day, with the tags ``Device`` (the watch's name) and ``Database_Name``:

- ``HeartRateIntraday``: field ``HeartRate`` (bpm, Garmin's 2-min samples) -> ``heart_rate.bpm``;
- ``SleepIntraday``: per sleep level segment (``get_sleep_data``: ``sleepLevels``) the fields
  ``SleepStageLevel`` (Garmin's ``activityLevel``: 0 deep, 1 light, 2 REM, 3 awake) and
  ``SleepStageSeconds`` -> ``sleep_stage`` at its own resolution (``epoch_s`` = the segment).
  The extra point it adds at the end of the night with a level but no seconds (for Grafana,
  its issue #127) is not a segment and is left out; so are the movement, SpO2, respiration,
  stress and HRV fields that share the measurement;
- ``SleepSummary``: Garmin's own nightly totals, counted, not imported (magsleep computes nights
  from the stages and heart rate).

The source is given as ``http://host:8086/DATABASE`` (``http://user:password@host:8086/DATABASE``
when the database needs a login; the password is sent as HTTP basic auth and never printed). The
database is read in 30-day pages, oldest first, and never written to.
"""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from collector.errors import ValidationError
from collector.importers.base import BATCH, NS, ImportContext, slug
from collector.nights.stages import DEEP, LIGHT, REM, STAGE_NAMES, UNKNOWN, WAKE
from collector.storage.lineprotocol import FieldValue, Point

#: Garmin's sleep activityLevel -> stage code
LEVELS: dict[int, int] = {0: DEEP, 1: LIGHT, 2: REM, 3: WAKE, -1: UNKNOWN}
PAGE_NS = 30 * 86400 * NS
TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class Source:
    base: str  # scheme://host:port
    database: str
    username: str
    password: str

    @property
    def shown(self) -> str:
        """The source as printed (never with the password)."""
        return f"{self.base}/{self.database}"


def parse_source(path: Path | str) -> Source:
    """``http://[user:password@]host:port/DATABASE`` (a path normalises ``//`` to ``/``: undone)."""
    text = re.sub(r"^(https?):/(?!/)", r"\1://", str(path))
    u = urllib.parse.urlsplit(text)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ValidationError(f"{u.scheme}://{u.hostname or ''}: give garmin-grafana's InfluxDB as "
                              "http://host:8086/DATABASE (e.g. http://127.0.0.1:8086/GarminStats)")
    db = u.path.strip("/") or "GarminStats"
    host = u.hostname + (f":{u.port}" if u.port else "")
    return Source(f"{u.scheme}://{host}", urllib.parse.unquote(db), urllib.parse.unquote(u.username or ""),
                  urllib.parse.unquote(u.password or ""))


class GarminGrafanaImporter:
    kind = "garmin-grafana"
    summary = "garmin-grafana's InfluxDB 1.x database, given as http://host:8086/DATABASE"

    def detect(self, path: Path) -> bool:
        src = parse_source(path)
        names = {r[0] for r in self._series(src, "SHOW MEASUREMENTS", None)}
        if not names & {"SleepIntraday", "HeartRateIntraday"}:
            raise ValidationError(f"{src.shown}: no SleepIntraday or HeartRateIntraday measurement in this "
                                  "database; is it the one garmin-grafana writes to (INFLUXDB_DATABASE)?")
        return True

    def size(self, path: Path) -> int:
        return 0

    def parse(self, path: Path, ctx: ImportContext) -> Iterator[list[Point]]:
        src = parse_source(path)
        lo, hi = self._span(src)
        if lo is None or hi is None:
            return
        n_summary = self._count(src, 'SELECT count("sleepTimeSeconds") FROM "SleepSummary"')
        if n_summary:
            ctx.report.skipped["Garmin sleep summaries (magsleep computes its own nights)"] += n_summary
        t = lo
        while t <= hi:
            end = t + PAGE_NS
            batch: list[Point] = []
            w = f"time >= {t} AND time < {end}"
            for tags, _, row in self._rows(src, f'SELECT "HeartRate" FROM "HeartRateIntraday" WHERE {w} '
                                           'GROUP BY "Device"', ctx):
                bpm = row.get("HeartRate")
                if isinstance(bpm, int | float) and 0 < bpm < 300:
                    batch.append(Point("heart_rate", ctx.tags(_device(tags)), {"bpm": round(bpm)}, int(row["time"])))
            for tags, _, row in self._rows(src, f'SELECT "SleepStageLevel", "SleepStageSeconds" FROM "SleepIntraday" '
                                           f'WHERE {w} GROUP BY "Device"', ctx):
                level, seconds = row.get("SleepStageLevel"), row.get("SleepStageSeconds")
                if level is None:
                    continue
                if seconds is None:
                    ctx.report.skipped["end-of-night markers"] += 1
                    continue
                code = LEVELS.get(int(level)) if float(level).is_integer() else None
                if code is None or not isinstance(seconds, int | float) or seconds <= 0:
                    at = datetime.fromtimestamp(int(row["time"]) / NS, UTC).isoformat()
                    ctx.report.bad_input(f"{src.shown} SleepIntraday at {at}",
                                         f"SleepStageLevel {level!r} with {seconds!r} s is not a Garmin sleep level "
                                         "(0 deep, 1 light, 2 REM, 3 awake)")
                    continue
                fields: dict[str, FieldValue] = {"stage": STAGE_NAMES[code], "stage_code": code,
                                                 "epoch_s": round(seconds)}
                batch.append(Point("sleep_stage", ctx.tags(_device(tags)), fields, int(row["time"])))
            for k in range(0, len(batch), BATCH):
                yield batch[k:k + BATCH]
            t = end

    # -- InfluxDB 1.x /query -------------------------------------------------------------------

    def _get(self, src: Source, q: str) -> tuple[dict[str, Any], int]:
        params = urllib.parse.urlencode({"db": src.database, "q": q, "epoch": "ns"})
        req = urllib.request.Request(f"{src.base}/query?{params}")  # noqa: S310 - http(s) only (parse_source)
        if src.username:
            token = base64.b64encode(f"{src.username}:{src.password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 - http(s) checked above
                body = resp.read()
        except urllib.error.HTTPError as exc:
            hint = " (check the user and password in the URL)" if exc.code in (401, 403) else ""
            raise ValidationError(f"{src.shown}: InfluxDB answered {exc.code} {exc.reason}{hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ValidationError(f"{src.shown}: cannot reach InfluxDB ({getattr(exc, 'reason', exc)}); "
                                  "is garmin-grafana's InfluxDB running and the URL right?") from None
        doc = json.loads(body)
        for res in doc.get("results", []):
            if "error" in res:
                raise ValidationError(f"{src.shown}: {res['error']}")
        return doc, len(body)

    def _series(self, src: Source, q: str, ctx: ImportContext | None) -> Iterator[list[Any]]:
        doc, n = self._get(src, q)
        if ctx is not None:
            ctx.advance(n)
        for res in doc.get("results", []):
            for s in res.get("series", []) or []:
                yield from s.get("values") or []

    def _rows(self, src: Source, q: str, ctx: ImportContext) -> Iterator[tuple[dict[str, str], str, dict[str, Any]]]:
        doc, n = self._get(src, q)
        ctx.advance(n)
        for res in doc.get("results", []):
            for s in res.get("series", []) or []:
                cols = s["columns"]
                for v in s.get("values") or []:
                    yield s.get("tags") or {}, s.get("name", ""), dict(zip(cols, v, strict=True))

    def _count(self, src: Source, q: str) -> int:
        return int(sum(int(v[1] or 0) for v in self._series(src, q, None)))

    def _span(self, src: Source) -> tuple[int | None, int | None]:
        lo: int | None = None
        hi: int | None = None
        for q in ('SELECT first("HeartRate") FROM "HeartRateIntraday"',
                  'SELECT last("HeartRate") FROM "HeartRateIntraday"',
                  'SELECT first("SleepStageLevel") FROM "SleepIntraday"',
                  'SELECT last("SleepStageLevel") FROM "SleepIntraday"'):
            for v in self._series(src, q, None):
                t = int(v[0])
                lo = t if lo is None else min(lo, t)
                hi = t if hi is None else max(hi, t)
        return lo, hi


def _device(tags: dict[str, str]) -> str:
    return "garmin-" + slug(tags.get("Device") or "", "watch")
