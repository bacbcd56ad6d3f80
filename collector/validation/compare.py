"""Stage recordings with the production path and compare with the expert stages (pure apart from reading files).

Each record becomes a :class:`~collector.nights.compute.NightInputs` in the production night window
(18:00 to 14:00 of the night the recording starts in, moved by less than 30 s so the epoch grid
lines up with the expert's), with the subject's age and sex (production defaults where unknown)
and lights out / on as tags: the record's own when known, else the start of the first and the end
of the last scored epoch. ``compute_night`` then runs with the options production builds from the
settings. Truth metrics are magsleep's own :func:`~collector.nights.metrics.sleep_metrics` and
:func:`~collector.nights.metrics.heart_metrics` on the expert hypnogram over the same span and the
same cleaned beats, so definitions match.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from datetime import time as dtime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import numpy as np
from pydantic import ValidationError as PydanticValidationError

from collector.errors import MagsleepError, ValidationError
from collector.nights.artefacts import clean_rr
from collector.nights.compute import NightInputs, NightOptions, compute_night
from collector.nights.metrics import heart_metrics, sleep_metrics
from collector.nights.run import night_options
from collector.nights.segment import NS, NightWindow, night_of, night_window
from collector.nights.stages import EPOCH_S, NREM, REM, UNKNOWN, WAKE
from collector.nights.staging import Subject
from collector.settings import NightsSettings, PersonSettings
from collector.validation import stats
from collector.validation.records import I64, Record
from collector.validation.sources import RecordSource, load

EPOCH_NS = EPOCH_S * NS
#: (key in the night fields, label, unit) of the compared nightly metrics.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("tst_min", "TST", "min"),
    ("sol_min", "SOL", "min"),
    ("waso_min", "WASO", "min"),
    ("se_pct", "SE", "%"),
    ("rem_min", "REM", "min"),
    ("awakenings", "awakenings", "n"),
    ("rmssd_ms", "RMSSD", "ms"),
    ("hr_mean_bpm", "mean HR", "bpm"),
)
STAGE_LETTERS = {WAKE: "W", NREM: "N", REM: "R"}
VARIANT_KEYS = ("lights", "start", "age", "sex")


@dataclass(frozen=True, slots=True)
class Variant:
    """A named configuration: [nights] settings over the defaults, and how lights out / on are given."""

    name: str
    settings: dict[str, str] = field(default_factory=dict)
    lights: Literal["tags", "estimate"] = "tags"
    #: An experiment on the clock-time input: replay every recording as if it began at this local time.
    start: dtime | None = None
    #: Experiments on the metadata inputs: everyone this age / sex.
    age: int | None = None
    sex: Literal["female", "male"] | None = None

    @property
    def nights(self) -> NightsSettings:
        return NightsSettings.model_validate(self.settings)

    @property
    def options(self) -> NightOptions:
        return night_options(self.nights)

    def describe(self) -> dict[str, str]:
        d = dict(sorted(self.settings.items()))
        if self.lights != "tags":
            d["lights"] = self.lights
        if self.start is not None:
            d["start"] = self.start.isoformat("minutes")
        if self.age is not None:
            d["age"] = str(self.age)
        if self.sex is not None:
            d["sex"] = self.sex
        return d


DEFAULT = Variant("default")


def parse_variant(text: str) -> Variant:
    """``NAME=key=value[,key=value...]``: keys of the [nights] settings, ``lights=tags|estimate``, ``start=HH:MM``,
    ``age=N``, ``sex=female|male``."""
    name, sep, rest = text.partition("=")
    name = name.strip()
    if not sep or not name:
        raise ValidationError(f"variant {text!r}: write NAME=key=value[,key=value], e.g. alone=wake_classifier=none")
    settings: dict[str, str] = {}
    lights: Literal["tags", "estimate"] = "tags"
    start: dtime | None = None
    age: int | None = None
    sex: Literal["female", "male"] | None = None
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise ValidationError(f"variant {name}: {part!r} is not key=value")
        if key == "lights":
            if value not in ("tags", "estimate"):
                raise ValidationError(f"variant {name}: lights must be 'tags' or 'estimate', not {value!r}")
            lights = "tags" if value == "tags" else "estimate"
        elif key == "start":
            try:
                start = dtime.fromisoformat(value)
            except ValueError:
                raise ValidationError(f"variant {name}: start must be a clock time HH:MM, not {value!r}") from None
        elif key == "age":
            if not value.isdigit() or not 1 <= int(value) <= 120:
                raise ValidationError(f"variant {name}: age must be whole years 1-120, not {value!r}")
            age = int(value)
        elif key == "sex":
            if value not in ("female", "male"):
                raise ValidationError(f"variant {name}: sex must be 'female' or 'male', not {value!r}")
            sex = "female" if value == "female" else "male"
        elif key in NightsSettings.model_fields:
            settings[key] = value
        else:
            allowed = ", ".join([*NightsSettings.model_fields, *VARIANT_KEYS])
            raise ValidationError(f"variant {name}: unknown option {key!r}; allowed: {allowed}")
    v = Variant(name, settings, lights, start, age, sex)
    try:
        v.nights  # noqa: B018 - validate now, with the settings' own messages
    except PydanticValidationError as exc:
        msgs = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise ValidationError(f"variant {name}: {msgs}") from None
    return v


@dataclass(frozen=True, slots=True)
class NightComparison:
    """One record staged by one variant, next to the expert, over the expert's lights-out span."""

    record: str
    subject: str
    start: str  # ISO local time of the first compared epoch
    first_epoch: int  # its index among the record's 30-s epochs
    truth: I64
    computed: I64  # UNKNOWN where the computed staging gave no stage
    staging: str
    lights_source: str
    flagged: bool
    true_metrics: dict[str, float | None]
    computed_metrics: dict[str, float | None]

    @property
    def confusion(self) -> I64:
        return stats.confusion(self.truth, self.computed)


def _ns(rec: Record) -> int:
    return round(rec.start.timestamp() * 1_000_000) * 1000


def window_for(rec: Record, person: PersonSettings) -> NightWindow:
    """The production night window of the recording, its grid moved (< 30 s) onto the recording's epochs."""
    start_ns = _ns(rec)
    night = night_of(start_ns, person) or rec.start.date()
    w = night_window(night, person)
    lo = w.start_ns - ((w.start_ns - start_ns) % EPOCH_NS)
    lo = min(lo, start_ns)
    end = max(w.end_ns, start_ns + rec.stages.size * EPOCH_NS)
    return NightWindow(night, lo, end)


def replayed_at(rec: Record, clock: dtime) -> Record:
    """``rec`` as if it began at ``clock`` local time of its night (the evening's date from 12:00, else next day)."""
    night = window_for(rec, PersonSettings(name="validation", timezone=rec.timezone)).night
    day = night if clock >= dtime(12) else night + timedelta(days=1)
    return replace(rec, start=datetime.combine(day, clock, tzinfo=rec.start.tzinfo))


def truth_span(rec: Record) -> tuple[int, int]:
    """[first, stop) epochs of the expert span: lights out to lights on, else the scored epochs."""
    scored = np.flatnonzero(rec.stages != UNKNOWN)
    lo = int(rec.lights_out_s // EPOCH_S) if rec.lights_out_s is not None else int(scored[0])
    hi = int(-(-rec.lights_on_s // EPOCH_S)) if rec.lights_on_s is not None else int(scored[-1]) + 1
    return lo, max(hi, lo + 1)


def _heart(codes: I64, beats: Any, lo_ns: int) -> dict[str, float | None]:
    if beats is None or beats.t_s.size == 0:
        return {"rmssd_ms": None, "hr_mean_bpm": None}
    rel = beats.t_s + (beats.t0_ns - lo_ns) / 1e9
    hm = heart_metrics(codes, rel, beats.nn_ms, beats.ok, beats.segment)
    return {"rmssd_ms": hm.rmssd_ms, "hr_mean_bpm": hm.hr_mean_bpm}


def _clean(v: object) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    return float(v) if math.isfinite(v) else None


def compare_record(rec: Record, variant: Variant = DEFAULT) -> NightComparison:
    """Stage ``rec`` through ``compute_night`` and line it up with the expert stages."""
    if variant.start is not None:
        rec = replayed_at(rec, variant.start)
    defaults = PersonSettings(name="validation")
    person = PersonSettings(name="validation", age=variant.age or rec.age or defaults.age,
                            sex=variant.sex or rec.sex or defaults.sex, timezone=rec.timezone)
    start_ns = _ns(rec)
    win = window_for(rec, person)
    lo, hi = truth_span(rec)
    lo_ns, hi_ns = start_ns + lo * EPOCH_NS, start_ns + hi * EPOCH_NS
    tags = variant.lights == "tags"
    lights_out = start_ns + round(rec.lights_out_s * NS) if rec.lights_out_s is not None else lo_ns
    lights_on = start_ns + round(rec.lights_on_s * NS) if rec.lights_on_s is not None else hi_ns

    def ns(t_s: np.ndarray) -> I64:
        out: I64 = start_ns + np.round(np.asarray(t_s, dtype=np.float64) * NS).astype(np.int64)
        return out

    inp = NightInputs(
        window=win, rr_time_ns=ns(rec.rr_end_s), rr_ms=np.asarray(rec.rr_ms, dtype=np.float64),
        hr_time_ns=ns(rec.hr_t_s), hr_bpm=np.asarray(rec.hr_bpm, dtype=np.float64),
        motion_time_ns=ns(rec.activity_t_s), motion_activity=np.asarray(rec.activity_counts, dtype=np.float64),
        motion_epoch_s=np.asarray(rec.activity_epoch_s, dtype=np.int64),
        lights_out_tag_ns=lights_out if tags else None, lights_on_tag_ns=lights_on if tags else None,
    )
    res = compute_night(inp, Subject(person.age, person.sex), ZoneInfo(rec.timezone), variant.options)

    truth = rec.stages[lo:hi] if hi <= rec.stages.size else np.concatenate(
        (rec.stages[lo:], np.full(hi - rec.stages.size, UNKNOWN, dtype=np.int64)))
    computed = np.full(hi - lo, UNKNOWN, dtype=np.int64)
    computed_metrics: dict[str, float | None] = {k: None for k, _, _ in METRICS}
    staging, lights_source, flagged = "none", "none", True
    beats = None
    if res is not None:
        staging, lights_source, flagged, beats = res.staging, res.lights_source, res.flagged, res.beats
        if res.hypnogram is not None:
            hyp = res.hypnogram
            # Outside the computed lights span the night says "not asleep": wake for the comparison.
            a = (res.lights_out_ns - lo_ns) // EPOCH_NS
            b = (res.lights_on_ns - lo_ns) // EPOCH_NS
            computed[:] = WAKE
            computed[int(np.clip(a, 0, hi - lo)):int(np.clip(b, 0, hi - lo))] = UNKNOWN
            off = (hyp.start_ns - lo_ns) // EPOCH_NS
            for i, c in enumerate(hyp.codes.tolist()):
                if 0 <= off + i < computed.size:
                    computed[off + i] = int(c)
        computed_metrics = {k: _clean(res.fields.get(k)) for k, _, _ in METRICS}
    if beats is None:
        beats = clean_rr(inp.rr_time_ns, inp.rr_ms)
    sm = sleep_metrics(truth).as_dict()
    true_metrics: dict[str, float | None] = {k: _clean(sm.get(k)) for k, _, _ in METRICS if k in sm}
    true_metrics.update(_heart(truth, beats, lo_ns))
    first = (rec.start + timedelta(seconds=lo * EPOCH_S)).isoformat()
    return NightComparison(rec.name, rec.subject, first, lo, truth, computed, staging, lights_source, flagged,
                           true_metrics, computed_metrics)


def stage_string(codes: I64) -> str:
    """One letter per epoch: W, N, R; '.' for no stage."""
    return "".join(STAGE_LETTERS.get(int(c), ".") for c in codes)


@dataclass(frozen=True, slots=True)
class Skipped:
    record: str
    reason: str


@dataclass
class Report:
    """Everything ``magsleep validate`` prints."""

    variants: list[Variant]
    nights: dict[str, list[NightComparison]]  # by variant name, in record order
    skipped: list[Skipped] = field(default_factory=list)

    def agreement(self, variant: str, subjects: Iterable[str] | None = None) -> stats.Agreement:
        keep = None if subjects is None else set(subjects)
        return stats.agreement([(n.truth, n.computed) for n in self.nights[variant]
                                if keep is None or n.subject in keep])

    def metric(self, variant: str, key: str) -> stats.MetricStats:
        ns = self.nights[variant]
        return stats.metric_stats([n.true_metrics.get(key) for n in ns], [n.computed_metrics.get(key) for n in ns])

    def loso(self, by: str = "kappa3") -> dict[str, Any] | None:
        """Leave one subject out: per held-out subject, the variant best on the others (by ``by``),
        and the pooled agreement of those picks on their held-out subjects (None with one variant)."""
        if len(self.variants) < 2:
            return None
        subjects = sorted({n.subject for ns in self.nights.values() for n in ns})
        if len(subjects) < 2:
            return None
        picks: dict[str, str] = {}
        pairs: list[tuple[I64, I64]] = []
        for s in subjects:
            rest = [x for x in subjects if x != s]
            scores = []
            for v in self.variants:
                val = getattr(self.agreement(v.name, rest), by)
                scores.append((-(val if val is not None else -math.inf), v.name))
            best = min(scores)[1]  # ties: the variant named first wins
            picks[s] = best
            pairs.extend((n.truth, n.computed) for n in self.nights[best] if n.subject == s)
        return {"by": by, "picks": picks, "agreement": asdict(stats.agreement(pairs))}

    def as_json(self) -> dict[str, Any]:
        def r(x: Any) -> Any:
            if isinstance(x, float):
                return round(x, 4)
            if isinstance(x, dict):
                return {k: r(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [r(v) for v in x]
            return x

        out: dict[str, Any] = {"epoch_s": EPOCH_S, "labels": list(stats.LABEL_NAMES), "variants": [],
                               "skipped": [asdict(s) for s in self.skipped]}
        for v in self.variants:
            nights = []
            for n in self.nights[v.name]:
                cm = n.confusion
                nights.append({
                    "record": n.record, "subject": n.subject, "start": n.start, "first_epoch": n.first_epoch,
                    "staging": n.staging, "lights_source": n.lights_source, "flagged": n.flagged,
                    "epochs": int(cm.sum()), "acc3": stats.accuracy(cm), "kappa3": stats.kappa(cm),
                    "acc2": stats.accuracy(stats.wake_sleep(cm)), "kappa2": stats.kappa(stats.wake_sleep(cm)),
                    "truth": stage_string(n.truth), "computed": stage_string(n.computed),
                    "true": n.true_metrics, "computed_metrics": n.computed_metrics,
                })
            out["variants"].append({
                "name": v.name, "options": v.describe(),
                "agreement": asdict(self.agreement(v.name)),
                "metrics": {k: asdict(self.metric(v.name, k)) for k, _, _ in METRICS},
                "nights": nights,
            })
        out["loso"] = self.loso()
        return dict(r(out))


def validate(
    sources: Sequence[RecordSource],
    variants: Sequence[Variant],
    *,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Every record through every variant; a record that cannot be read or staged is skipped with its reason."""
    report = Report(list(variants), {v.name: [] for v in variants})
    for src in sources:
        try:
            rec = load(src)
        except MagsleepError as exc:
            report.skipped.append(Skipped(src.name, str(exc)))
            for _ in variants:
                if progress:
                    progress(src.name)
            continue
        done: list[tuple[str, NightComparison]] = []
        try:
            for v in variants:
                done.append((v.name, compare_record(rec, v)))
                if progress:
                    progress(src.name)
        except MagsleepError as exc:
            report.skipped.append(Skipped(src.name, f"{src.name}: {exc}"))
            for _ in variants[len(done) + 1:]:
                if progress:
                    progress(src.name)
            continue
        for name, c in done:
            report.nights[name].append(c)
    return report
