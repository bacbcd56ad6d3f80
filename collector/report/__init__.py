"""``magsleep report``: one self-contained HTML file (plots as inline SVG) that needs no Grafana.

It shows the nights over time (magnesium nights marked, 7-night means), magnesium vs control per
metric with 95% CIs (the latest ``effect`` points), the latest night's hypnogram and heart rate, and
the effects in plain words. Data are read from InfluxDB with :class:`InfluxReader`.
"""

from __future__ import annotations

import asyncio
import html
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from collector import __version__
from collector.errors import ConfigError, MagsleepError, StorageError
from collector.report import plots
from collector.settings import Settings
from collector.storage.reader import InfluxReader, Row, quote_str
from collector.storage.schema import EFFECT, EFFECT_VERDICT, HEART_RATE, NIGHT, SLEEP_STAGE

# (field of the night measurement, title, unit) shown over time.
NIGHT_SERIES: tuple[tuple[str, str, str], ...] = (
    ("tst_min", "Total sleep", "min"),
    ("sol_min", "Sleep onset latency", "min"),
    ("waso_min", "Wake after sleep onset", "min"),
    ("se_pct", "Sleep efficiency", "%"),
    ("hr_mean_bpm", "Mean heart rate asleep", "bpm"),
    ("rmssd_ms", "RMSSD asleep", "ms"),
)
LOWER_IS_BETTER = {"sol_min", "waso_min", "awakenings", "hr_mean_bpm", "hr_min5_bpm", "wake_min"}


class ReportError(MagsleepError):
    """The report could not be made; the message says what is missing."""


@dataclass
class ReportData:
    person: str
    tz: tzinfo
    nights: list[Row] = field(default_factory=list)
    effects: list[Row] = field(default_factory=list)
    before_after: list[Row] = field(default_factory=list)
    verdict: Row | None = None  # the latest effect_verdict (one answer first)
    stages: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    hr: list[tuple[int, float]] = field(default_factory=list)
    generated: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def latest(self) -> Row | None:
        return self.nights[-1] if self.nights else None


def _pick_person(settings: Settings, person: str | None) -> tuple[str, tzinfo]:
    if person is not None:
        try:
            return person, settings.person(person).tz
        except ConfigError:
            return person, UTC  # data may exist for a person not (or no longer) configured
    if not settings.persons:
        raise ReportError("no persons configured: pass --person NAME or add a [[persons]] entry")
    first = settings.persons[0]
    return first.name, ZoneInfo(first.timezone)


async def load(reader: InfluxReader, person: str, tz: tzinfo) -> ReportData:
    """Everything the report shows, read with a handful of InfluxQL queries."""
    p = quote_str(person)
    data = ReportData(person, tz)
    nights = await reader.query(f'SELECT * FROM {NIGHT.quoted} WHERE "person" = {p}')
    data.nights = sorted(nights, key=lambda r: r["time"])
    latest_effects = 'GROUP BY "metric" ORDER BY time DESC LIMIT 1'
    data.effects = await reader.query(
        f"""SELECT * FROM {EFFECT.quoted} WHERE "person" = {p} AND "comparison" = 'mg_vs_control' {latest_effects}"""
    )
    data.before_after = await reader.query(
        f"""SELECT * FROM {EFFECT.quoted} WHERE "person" = {p} AND "comparison" = 'before_after' {latest_effects}"""
    )
    verdicts = await reader.query(
        f'SELECT * FROM {EFFECT_VERDICT.quoted} WHERE "person" = {p} ORDER BY time DESC LIMIT 1')
    data.verdict = verdicts[0] if verdicts else None
    last = data.latest
    if last is not None and last.get("lights_out") and last.get("lights_on"):
        window = f'"person" = {p} AND time >= {int(last["lights_out"])} AND time <= {int(last["lights_on"])}'
        # One row per source and device: simulated input tags device and computed stages both source=sim.
        q = f'SELECT "stage_code" FROM {SLEEP_STAGE.quoted} WHERE {window} GROUP BY "source", "device"'
        for r in await reader.query(q):
            if r.get("stage_code") is not None:
                key = " · ".join(str(r[k]) for k in ("source", "device") if r.get(k))
                data.stages.setdefault(key or "?", []).append((int(r["time"]), int(r["stage_code"])))
        hr_q = f'SELECT mean("bpm") AS "bpm" FROM {HEART_RATE.quoted} WHERE {window} GROUP BY time(1m) fill(none)'
        data.hr = [(int(r["time"]), float(r["bpm"])) for r in await reader.query(hr_q) if r.get("bpm") is not None]
    return data


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _fmt(v: Any, digits: int = 1) -> str:
    x = _num(v)
    return "–" if x is None else f"{x:.{digits}f}"


def _int(v: Any) -> str:
    x = _num(v)
    return "–" if x is None else f"{x:.0f}"


#: What matters first when the rows carry no rank (effect points written before ranks existed).
_IMPORTANCE = ("sol_min", "tst_min", "waso_min", "se_pct", "awakenings", "rem_min", "deep_min", "hr_mean_bpm",
               "hr_min5_bpm", "ln_rmssd")


def _rank(r: Row) -> tuple[int, int, str]:
    """Order of the rows: by what matters, metrics that cannot be measured last (never alphabetical)."""
    metric = str(r.get("metric"))
    rk = _num(r.get("rank"))
    base = int(rk) if rk is not None else (_IMPORTANCE.index(metric) if metric in _IMPORTANCE else 99)
    return (1 if r.get("measurable") is False else 0, base, metric)


def ranked(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=_rank)


def _label(r: Row) -> str:
    return str(r.get("label") or r.get("metric"))


def _effect_rows(rows: list[Row]) -> str:
    out = []
    for r in ranked(rows):
        pb = _num(r.get("prob_benefit"))
        out.append(
            f'<tr data-metric="{html.escape(str(r.get("metric")))}">'
            f"<td>{html.escape(_label(r))}</td>"
            f"<td class=num>{_fmt(r.get('estimate'), 2)}</td>"
            f"<td class=num>{_fmt(r.get('ci_low'), 2)} … {_fmt(r.get('ci_high'), 2)}</td>"
            f"<td>{html.escape(str(r.get('unit') or ''))}</td>"
            f"<td class=num>{'–' if pb is None else f'{100 * pb:.0f}%'}</td>"
            f"<td class=num>{_int(r.get('n_mg'))} / {_int(r.get('n_control'))}</td>"
            f"<td class=num>{_int(r.get('nights_more'))}</td>"
            f"<td>{html.escape(str(r.get('summary') or ''))}</td>"
            "</tr>"
        )
    return "\n".join(out)


def _forest(rows: list[Row]) -> str:
    items = []
    for r in ranked(rows):
        est, lo, hi = _num(r.get("estimate")), _num(r.get("ci_low")), _num(r.get("ci_high"))
        if est is None or lo is None or hi is None:
            continue
        metric = str(r.get("metric"))
        items.append((_label(r), str(r.get("unit") or ""), est, lo, hi, metric in LOWER_IS_BETTER))
    return plots.effects_forest(items) if items else ""


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666;margin-top:0}
h2{border-bottom:2px solid #8f3bb8;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;width:100%;font-size:.9rem} th,td{border-bottom:1px solid #ddd;padding:.3rem .5rem;
text-align:left;vertical-align:top} td.num{text-align:right;white-space:nowrap} th{background:#f4f0f7}
.plot svg{width:100%;height:auto} .summary li{margin:.3rem 0} .empty{color:#a00}
.legend span{display:inline-block;width:.8rem;height:.8rem;border-radius:50%;margin:0 .3rem 0 1rem}
#verdict{background:#f3ecf8;border-left:.5rem solid #8f3bb8;padding:.8rem 1.2rem;margin-top:1rem}
#verdict .headline{font-size:1.3rem;font-weight:600;margin:.2rem 0 .5rem}
#verdict ol{margin:.4rem 0;padding-left:1.4rem} #verdict li{margin:.25rem 0}
#verdict .mark{display:inline-block;width:.9rem;height:.9rem;border-radius:.2rem;margin-right:.5rem;
vertical-align:-.1rem}
.state-clear .mark{background:#37872d} .state-likely .mark{background:#8ab84a}
.state-no_clear_change .mark{background:#8e8e8e} .state-too_few_nights .mark{background:#cfcfcf}
.state-cannot_measure .mark{background:#e0a030} .state-cannot_measure{color:#6b4a00}
"""


_STATE_WORDS = {"clear": "clear", "likely": "likely", "no_clear_change": "no clear change",
                "too_few_nights": "not enough nights yet", "cannot_measure": "cannot be measured"}


def _verdict(data: ReportData) -> str:
    """The answer first: the verdict's sentence, the next step, and every metric in the verdict's order."""
    e = html.escape
    v = data.verdict
    if v is None and not data.effects:
        return ""
    rows = data.effects
    if v is not None and v.get("comparison") == "before_after":
        rows = data.before_after
    order = [m for m in str(v.get("order") or "").split(",") if m] if v is not None else []
    by_metric = {str(r.get("metric")): r for r in rows}
    listed = [by_metric[m] for m in order if m in by_metric] or ranked(rows)
    items = []
    for i, r in enumerate(listed):
        state = str(r.get("state") or "")
        mark = _STATE_WORDS.get(state, "")
        items.append(f'<li class="state-{e(state or "none")}" data-rank="{i}" data-metric="{e(str(r.get("metric")))}">'
                     f'<span class="mark"></span><b>{e(_label(r))}</b>{f" ({e(mark)})" if mark else ""}: '
                     f"{e(str(r.get('summary') or ''))}</li>")
    head = str(v.get("headline")) if v is not None else "Effects in order of what matters:"
    step = str(v.get("next_step") or "") if v is not None else ""
    src = (f"Nights staged by: {v.get('source')}" + (f"; {v.get('sources_note')}" if v.get("sources_note") else "")
           if v is not None and v.get("source") else "")
    return ('<section id="verdict"><h2 style="border:0;margin-top:0">The answer</h2>'
            f'<p class="headline">{e(head)}</p>' + (f'<p class="next">{e(step)}</p>' if step else "")
            + (f'<p class="meta sources">{e(src)}</p>' if src else "")
            + "<ol>" + "".join(items) + "</ol></section>")


def render(data: ReportData) -> str:
    """The report as one HTML document with inline CSS and SVG; no external resources."""
    e = html.escape
    n_mg = sum(1 for r in data.nights if r.get("dose") == "magnesium")
    n_ctl = sum(1 for r in data.nights if r.get("dose") == "control")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>magsleep report: {e(data.person)}</title><style>{_CSS}</style></head><body>",
        f"<h1>magsleep: does magnesium change {e(data.person)}'s sleep?</h1>",
        f'<p class="meta">{len(data.nights)} nights ({n_mg} magnesium, {n_ctl} control) · generated '
        f"{data.generated.astimezone(data.tz):%Y-%m-%d %H:%M %Z} · magsleep {e(__version__)}</p>",
    ]
    parts.append(_verdict(data))  # every metric's sentence, in the verdict's order
    if not any(r.get("summary") for r in data.effects):
        parts.append("<h2>In plain words</h2>")
        parts.append('<p class="empty">No effect estimates yet. Log doses and nights, then run '
                     "<code>magsleep effects</code>.</p>")

    parts.append("<h2>Nights over time</h2>")
    if data.nights:
        series = [(title, unit, [_num(r.get(f)) for r in data.nights]) for f, title, unit in NIGHT_SERIES]
        svg = plots.nights_over_time([int(r["time"]) for r in data.nights],
                                     [str(r.get("dose", "")) for r in data.nights], series, data.tz)
        parts.append(f'<div class="plot" id="plot-nights">{svg}</div>')
    else:
        parts.append('<p class="empty">No nights yet.</p>')

    parts.append("<h2>Magnesium vs control (95% confidence intervals)</h2>")
    forest = _forest(data.effects)
    if forest:
        parts.append('<p>Each row: magnesium nights minus control nights. Green: the interval lies on the helpful '
                     "side of zero; red: on the harmful side; grey: it includes no difference.</p>")
        parts.append(f'<div class="plot" id="plot-effects">{forest}</div>')
    if data.effects:
        parts.append("<table><thead><tr><th>metric</th><th>difference</th><th>95% CI</th><th>unit</th>"
                     "<th>P(benefit)</th><th>n Mg / control</th>"
                     "<th title='more nights (both arms) for an 80% chance to tell a 10-minute change (or the "
                     "metric&#39;s stated change)'>more nights</th><th>in words</th></tr>"
                     f"</thead><tbody>{_effect_rows(data.effects)}</tbody></table>")
    else:
        parts.append('<p class="empty">No magnesium-vs-control estimates yet.</p>')
    if data.before_after:
        parts.append("<h3>After starting magnesium vs before</h3>")
        parts.append("<table><thead><tr><th>metric</th><th>difference</th><th>95% CI</th><th>unit</th>"
                     "<th>P(benefit)</th><th>n after / before</th><th>more nights</th><th>in words</th></tr>"
                     f"</thead><tbody>{_effect_rows(data.before_after)}</tbody></table>")

    last = data.latest
    parts.append("<h2>Latest night</h2>")
    if last is None:
        parts.append('<p class="empty">No nights yet.</p>')
    else:
        dose = str(last.get("dose", ""))
        parts.append(
            f"<p>Night of <b>{e(str(last.get('night', '')))}</b> ({e(dose)}): total sleep "
            f"{_fmt(last.get('tst_min'), 0)} min, onset latency {_fmt(last.get('sol_min'), 0)} min, "
            f"WASO {_fmt(last.get('waso_min'), 0)} min, efficiency {_fmt(last.get('se_pct'))}%, "
            f"mean HR {_fmt(last.get('hr_mean_bpm'))} bpm, RMSSD {_fmt(last.get('rmssd_ms'))} ms.</p>"
        )
        if data.stages or data.hr:
            svg = plots.latest_night(data.stages, data.hr, data.tz)
            parts.append(f'<div class="plot" id="plot-latest">{svg}</div>')
        else:
            parts.append('<p class="empty">No stages or heart rate stored for this night.</p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


async def write_report(settings: Settings, out: Path, *, person: str | None = None,
                       now: datetime | None = None) -> Path:
    """Read the data, render, write ``out`` (parent directories created); returns the path.

    ``now``: the time the report says it was generated (default: the system clock)."""
    name, tz = _pick_person(settings, person)
    try:
        async with InfluxReader.from_settings(settings) as reader:
            data = await load(reader, name, tz)
        if now is not None:
            data.generated = now
    except StorageError as exc:
        raise ReportError(f"cannot read from InfluxDB: {exc}") from exc
    if not data.nights and not data.effects:
        raise ReportError(f"no nights or effects stored for person {name!r}; check --person and the database")
    # Plotting is CPU work and the write is blocking I/O: both off the event loop.
    await asyncio.to_thread(_write, out, data)
    return out


def _write(out: Path, data: ReportData) -> None:
    text = render(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
