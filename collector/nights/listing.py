"""``magsleep nights``: the stored night rows, one per person and night."""

from __future__ import annotations

from datetime import date

from collector.effects.tagging import night_time_ns
from collector.settings import Settings
from collector.storage.reader import InfluxReader, Row, quote_str
from collector.storage.schema import NIGHT, PERSON

#: The columns of ``magsleep nights`` (table, CSV and JSON), in this order.
NIGHT_COLUMNS = ("night", "person", "dose", "staging", "lights_out", "lights_on", "lights_source", "tib_min",
                 "sol_min", "lps_min", "tst_min", "waso_min", "se_pct", "awakenings", "wake_min", "light_min",
                 "deep_min", "rem_min", "nrem_min", "deep_pct", "rem_pct", "hr_mean_bpm", "hr_min5_bpm",
                 "rmssd_ms", "ln_rmssd", "coverage_pct", "flagged", "provisional", "elemental_mg", "form", "source")


async def list_nights(settings: Settings, *, person: str | None = None, since: date | None = None) -> list[Row]:
    """Stored night rows (newest last), one per person and night."""
    conds = []
    if person:
        settings.person(person)
        conds.append(f"{PERSON.name} = {quote_str(person)}")
    if since:
        conds.append(f"time >= {night_time_ns(since)}")
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    group = ", ".join(t.name for t in NIGHT.tags)  # person, dose, staging, source
    async with InfluxReader.from_settings(settings) as r:
        rows = await r.query(f"SELECT * FROM {NIGHT.quoted}{where} GROUP BY {group}")
    rows.sort(key=lambda x: (str(x.get("night")), str(x.get("person"))))
    return rows
