"""The thin I/O layer: nights, doses and tags from InfluxDB in; ``effect`` points out."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from collector.effects.adherence import Adherence, adherence
from collector.effects.analysis import AnalysisOptions, EffectResult, NightData, analyse_person
from collector.effects.metrics import METRICS
from collector.effects.store import PlanStore
from collector.effects.tagging import COVARIATE_TAGS, Dose, DoseStatus, NightKey, night_time_ns, tag_nights
from collector.effects.validity import Assessment, assess, calibrate, dominant_source, load_table
from collector.effects.verdict import PLAIN, Verdict, build_verdict, rank, state_of
from collector.settings import Settings
from collector.storage.lineprotocol import FieldValue, Point
from collector.storage.pipeline import Pipeline
from collector.storage.reader import InfluxReader, Row, quote_str
from collector.storage.schema import EFFECT, EFFECT_VERDICT, NIGHT, NIGHT_TAG, SUPPLEMENT_DOSE

Source = Literal["real", "sim", "all"]
_STAGING_RANK = {"computed": 0, "device": 1, "none": 2}


@dataclass(frozen=True, slots=True)
class PersonData:
    """What the analysis of one person is computed from, plus counts for the report."""

    person: str
    nights: list[NightData]
    flagged: int = 0
    excluded: Mapping[str, int] = field(default_factory=dict)
    dose_source: str = "doses"
    #: nights included although their window is still open (closed early, may still change)
    provisional: int = 0
    #: each night's staging source (the night point's ``staging`` tag: computed or device)
    staging: Mapping[date, str] = field(default_factory=dict)


def _keep(row: Row, source: Source) -> bool:
    is_sim = row.get("source") == "sim"
    return source == "all" or (source == "sim") == is_sim


def _since_clause(since: date | None) -> str:
    return f" AND time >= {night_time_ns(since)}" if since else ""


def build_nights(
    person: str,
    night_rows: Sequence[Row],
    dose_rows: Sequence[Row],
    tag_rows: Sequence[Row],
    settings: Settings,
    *,
    source: Source = "real",
) -> PersonData:
    """Turn raw rows into :class:`NightData` (pure: used by the CLI and by tests)."""
    best: dict[date, Row] = {}
    for row in night_rows:
        if not _keep(row, source) or not row.get("night"):
            continue
        d = date.fromisoformat(str(row["night"]))
        prev = best.get(d)
        rank = _STAGING_RANK.get(str(row.get("staging")), 3)
        if prev is None or rank < _STAGING_RANK.get(str(prev.get("staging")), 3):
            best[d] = row
    flagged = sum(1 for r in best.values() if r.get("flagged") is True)
    usable = {d: r for d, r in sorted(best.items()) if r.get("flagged") is not True}
    tags: dict[date, dict[str, bool]] = {}
    for row in sorted(tag_rows, key=lambda r: int(r["time"])):
        if row.get("night") and row.get("tag"):
            tags.setdefault(date.fromisoformat(str(row["night"])), {})[str(row["tag"])] = (
                row.get("value") is not False)
    tag_sets = {d: [t for t, v in ts.items() if v] for d, ts in tags.items()}
    doses = [
        Dose(int(r["time"]), float(r.get("elemental_mg") or 0.0), str(r.get("form") or ""),
             str(r.get("supplement") or "magnesium"))
        for r in dose_rows if _keep(r, source)
    ]
    keys = [NightKey(d, _int(r.get("lights_out")), _int(r.get("lights_on"))) for d, r in usable.items()]
    out: list[NightData] = []
    dose_source = "doses"
    if doses:
        an = settings.analysis
        person_tz = settings.person(person).tz if any(p.name == person for p in settings.persons) else None
        tagged = tag_nights(keys, doses, tag_sets, window_h=an.dose_window_h,
                            washout_nights=an.washout_nights, tz=person_tz)
        for nd, (_, row) in zip(tagged, usable.items(), strict=True):
            out.append(NightData(nd.night, nd.status, _values(row), nd.elemental_mg, nd.form,
                                 nd.covariates))
    else:  # no dose journal in InfluxDB (e.g. imported nights): trust the night's own dose tag
        dose_source = "night dose tags"
        for d, row in usable.items():
            tag = row.get("dose")
            status: DoseStatus = "magnesium" if tag == "magnesium" else (
                "control" if tag == "control" else "unknown")
            if status != "magnesium" and "no_dose" in tag_sets.get(d, ()):
                status = "control"
            cov = {t: t in tag_sets.get(d, ()) for t in COVARIATE_TAGS}
            out.append(NightData(d, status, _values(row), float(row.get("elemental_mg") or 0.0),
                                 str(row.get("form") or ""), cov))
    excluded: dict[str, int] = {}
    for n in out:
        if n.status not in ("magnesium", "control"):
            excluded[n.status] = excluded.get(n.status, 0) + 1
    provisional = sum(1 for r in usable.values() if r.get("provisional") is True)
    staging = {d: str(r.get("staging") or "computed") for d, r in usable.items()}
    return PersonData(person, out, flagged, excluded, dose_source, provisional, staging)


@dataclass(frozen=True, slots=True)
class SourceChoice:
    """Which staging source's nights are analysed, and how many nights of other sources were left out."""

    source: str | None
    left_out: Mapping[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.left_out:
            return ""
        other = ", ".join(f"{n} staged by {s}" for s, n in sorted(self.left_out.items()))
        return (f"only nights staged by {self.source} are analysed ({other} left out: sources that measure "
                "sleep differently are not pooled)")


def choose_source(data: PersonData) -> tuple[list[NightData], SourceChoice]:
    """The nights of the dominant staging source among those in an arm; the others are counted, not pooled."""
    in_arm = [n for n in data.nights if n.status in ("magnesium", "control")]
    src = dominant_source([data.staging.get(n.night, "computed") for n in in_arm])
    if src is None:
        return list(data.nights), SourceChoice(None)
    left: dict[str, int] = {}
    for n in in_arm:
        s = data.staging.get(n.night, "computed")
        if s != src:
            left[s] = left.get(s, 0) + 1
    keep = [n for n in data.nights if data.staging.get(n.night, "computed") == src]
    return keep, SourceChoice(src, left)


def apply_validity(results: Sequence[EffectResult], source: str | None) -> tuple[list[EffectResult],
                                                                                 dict[str, Assessment]]:
    """Each result corrected for (or withheld by) how ``source`` measures its metric (collector/effects/validity.py)."""
    table = load_table()
    src = source or "computed"
    assessments = {m: assess(table, src, m) for m in METRICS}
    return [calibrate(r, assessments[r.metric]) for r in results], assessments


def verdict_for(person: str, results: Sequence[EffectResult], assessments: Mapping[str, Assessment],
                source: str | None, *, has_plan: bool, min_nights_per_arm: int) -> Verdict:
    """The verdict of the magnesium-vs-control results, else of before/after when only that has estimates."""
    main = [r for r in results if r.comparison == "mg_vs_control"]
    ba = [r for r in results if r.comparison == "before_after"]
    pick = main if any(r.reported for r in main) or not any(r.reported for r in ba) else ba
    return build_verdict(person, pick, assessments, source=source or "computed", has_plan=has_plan,
                         min_nights_per_arm=min_nights_per_arm)


def _int(v: Any) -> int | None:
    return int(v) if v is not None else None


def _values(row: Row) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in METRICS:
        v = row.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[name] = float(v)
    return out


async def load_person(
    reader: InfluxReader, settings: Settings, person: str, *, since: date | None = None,
    source: Source = "real",
) -> PersonData:
    p = quote_str(person)
    since_q = _since_clause(since)
    nights = await reader.query(f"SELECT * FROM {NIGHT.quoted} WHERE person = {p}{since_q}")
    # doses from a day before the first night on, so the first evening's dose is seen
    dose_since = f" AND time >= {night_time_ns(since) - 2 * 86_400_000_000_000}" if since else ""
    doses = await reader.query(f"SELECT * FROM {SUPPLEMENT_DOSE.quoted} WHERE person = {p}{dose_since}")
    tags = await reader.query(f"SELECT * FROM {NIGHT_TAG.quoted} WHERE person = {p}{since_q}")
    return build_nights(person, nights, doses, tags, settings, source=source)


def effect_points(results: Iterable[EffectResult], time_ns: int,
                  assessments: Mapping[str, Assessment] | None = None) -> list[Point]:
    """``effect`` points (schema in collector/storage/schema.py); absent numbers are left out."""
    pts: list[Point] = []
    for r in results:
        a = (assessments or {}).get(r.metric)
        fields: dict[str, FieldValue] = {
            "n_mg": r.n_mg, "n_control": r.n_control, "reported": r.reported, "unit": r.unit,
            "summary": r.summary, "label": PLAIN.get(r.metric, r.metric), "rank": rank(r.metric),
            "state": state_of(r, a),
        }
        if a is not None:
            fields["measurable"] = a.measurable
            if a.status == "calibrated" and a.slope is not None:
                fields["slope"] = float(a.slope)
        for name in ("estimate", "ci_low", "ci_high", "p", "p_adj", "p_perm", "prob_benefit",
                     "prob_meaningful", "effect_size"):
            v = getattr(r, name)
            if v is not None and math.isfinite(v):
                fields[name] = float(v)
        if r.nights_needed is not None:
            fields["nights_needed"] = int(r.nights_needed)
        for name in ("alpha", "fixed_low", "fixed_high"):  # looking every morning (issue 21)
            v = getattr(r, name)
            if v is not None and math.isfinite(v):
                fields[name] = float(v)
        if r.interval:
            fields.update(interval=r.interval, clear=r.clear and r.reported, decision=r.decision,
                          next_step=r.next_step)
        if r.nights_more is not None:
            fields["nights_more"] = int(r.nights_more)
        pts.append(Point(EFFECT.name, {"person": r.person, "metric": r.metric,
                                    "comparison": r.comparison}, fields, time_ns))
    return pts


def verdict_point(v: Verdict, time_ns: int, sources_note: str = "") -> Point:
    """The ``effect_verdict`` point: one answer first, and the next step."""
    fields: dict[str, FieldValue] = {"headline": v.headline, "next_step": v.next_step,
                                     "source": v.source or "computed",
                                     "order": ",".join(i.metric for i in v.items)}
    if sources_note:
        fields["sources_note"] = sources_note
    return Point(EFFECT_VERDICT.name, {"person": v.person, "comparison": v.comparison}, fields, time_ns)


@dataclass(frozen=True, slots=True)
class EffectsRun:
    person: str
    data: PersonData
    results: list[EffectResult]
    plan_id: str | None
    adherence: Adherence | None = None  # with a trial plan: how many planned nights followed it
    verdict: Verdict | None = None
    source: SourceChoice = field(default_factory=lambda: SourceChoice(None))
    assessments: Mapping[str, Assessment] = field(default_factory=dict)
    #: the results before the validity correction (what the measured values alone say)
    uncorrected: list[EffectResult] = field(default_factory=list)


async def run_effects(
    settings: Settings,
    persons: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    since: date | None = None,
    source: Source = "real",
    write: bool = True,
    supplement_start: date | None = None,
    baseline_end: date | None = None,
    now_ns: int | None = None,
    fixed: bool = False,
) -> list[EffectsRun]:
    """Read, analyse and (optionally) write effects for each person.

    ``fixed``: fixed-sample intervals for one look planned in advance, instead of the default
    intervals that stay valid however often you look (docs/effects.md).
    """
    opts = AnalysisOptions(min_nights_per_arm=settings.analysis.min_nights_per_arm, sequential=not fixed)
    store = PlanStore.from_settings(settings)
    runs: list[EffectsRun] = []
    async with InfluxReader.from_settings(settings) as reader:
        for person in persons:
            data = await load_person(reader, settings, person, since=since, source=source)
            plan = store.active(person)
            nights, choice = choose_source(data)
            raw = analyse_person(
                person, nights, opts, metrics=metrics,
                plan=plan.info() if plan is not None else None,
                supplement_start=supplement_start, baseline_end=baseline_end,
            )
            results, assessments = apply_validity(raw, choice.source)
            verdict = verdict_for(person, results, assessments, choice.source, has_plan=plan is not None,
                                  min_nights_per_arm=opts.min_nights_per_arm)
            adh = (adherence(plan.plan_id, plan.nights, [(n.night, n.status) for n in data.nights])
                   if plan is not None else None)
            runs.append(EffectsRun(person, data, results, plan.plan_id if plan else None, adh, verdict, choice,
                                   assessments, raw))
    if write:
        stamp = now_ns if now_ns is not None else time.time_ns()
        pts = [p for run in runs for p in effect_points(run.results, stamp, run.assessments)]
        pts += [verdict_point(run.verdict, stamp, run.source.describe()) for run in runs if run.verdict is not None]
        async with Pipeline.from_settings(settings, name="effects") as pipe:
            await pipe.put(pts)
            await pipe.flush(timeout=settings.influx.timeout_s * 3)
    return runs


async def write_plan_points(settings: Settings, points: Sequence[Point],
                            deletions: Sequence[Point] = ()) -> None:
    """Mirror a plan into InfluxDB, removing the nights of the plan it replaced."""
    async with Pipeline.from_settings(settings, name="effects") as pipe:
        for p in deletions:
            await pipe.delete(p.measurement, p.tags, p.time_ns)
        await pipe.put(points)
        await pipe.flush(timeout=settings.influx.timeout_s * 3)
