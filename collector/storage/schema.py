"""The one InfluxDB schema of magsleep: measurements, tags and fields with types and units.

docs/schema.md is the readable form of this module; a test keeps the two in step. Timestamps
are UTC nanoseconds. The tag ``person`` names whose data it is (never ``user``: reserved in
InfluxQL). ``source`` tells where a point came from: ``device`` (read from a wearable),
``computed`` (derived by magsleep), ``sim`` (simulated: never mixed silently with real data),
or, for doses, how it was logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from collector.errors import ValidationError
from collector.storage.lineprotocol import FieldValue, Point

FieldType = Literal["int", "float", "bool", "string"]
_PY: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "string": (str,),
}


@dataclass(frozen=True, slots=True)
class FieldSpec:
    name: str
    type: FieldType
    unit: str
    doc: str


@dataclass(frozen=True, slots=True)
class TagSpec:
    name: str
    doc: str
    required: bool = True


@dataclass(frozen=True, slots=True)
class Measurement:
    name: str
    doc: str
    tags: tuple[TagSpec, ...]
    fields: tuple[FieldSpec, ...]
    example: str

    @property
    def quoted(self) -> str:
        """The name as an InfluxQL identifier (``"night"``), for queries."""
        return '"' + self.name.replace('"', '\\"') + '"'

    def field(self, name: str) -> FieldSpec:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


PERSON = TagSpec("person", "whose data (a configured person name)")
DEVICE = TagSpec("device", "device alias from the registry (e.g. polar-h10-alice)")
SOURCE_DATA = TagSpec("source", "device | computed | sim | import")

MEASUREMENTS: dict[str, Measurement] = {
    m.name: m
    for m in (
        Measurement(
            "heart_rate",
            "One Heart Rate Measurement notification (0x2A37) or equivalent.",
            (PERSON, DEVICE, SOURCE_DATA),
            (
                FieldSpec("bpm", "int", "1/min", "heart rate"),
                FieldSpec("contact", "bool", "", "sensor contact detected (absent if unsupported)"),
                FieldSpec("energy_kj", "int", "kJ", "energy expended since reset (absent if not sent)"),
            ),
            "heart_rate,device=h10-alice,person=alice,source=device bpm=58i,contact=true 1732400000000000000",
        ),
        Measurement(
            "rr",
            "One beat-to-beat (RR) interval, stamped at the end of the beat.",
            (PERSON, DEVICE, SOURCE_DATA),
            (FieldSpec("rr_ms", "float", "ms", "interval between two R peaks (1/1024 s resolution)"),),
            "rr,device=h10-alice,person=alice,source=device rr_ms=1023.4375 1732400000000000000",
        ),
        Measurement(
            "motion",
            "Movement from a tracker: ActiGraph activity counts per epoch (60 s, on whole minutes, from raw "
            "acceleration; docs/trackers.md), or a step count. Points written before counts (field activity, "
            "a milli-g measure) are not read as counts.",
            (PERSON, DEVICE, SOURCE_DATA),
            (
                FieldSpec("counts", "float", "counts/epoch",
                          "ActiGraph activity counts over epoch_s, vector magnitude of the three axes "
                          "(agcounts; a generic sensor: its counts times its documented scale)"),
                FieldSpec("counts_x", "int", "counts/epoch", "ActiGraph counts of the device's X axis"),
                FieldSpec("counts_y", "int", "counts/epoch", "ActiGraph counts of the device's Y axis"),
                FieldSpec("counts_z", "int", "counts/epoch", "ActiGraph counts of the device's Z axis"),
                FieldSpec("steps", "int", "steps", "cumulative step counter of the device"),
                FieldSpec("epoch_s", "int", "s", "length of the epoch the counts cover, starting at the timestamp"),
            ),
            "motion,device=pinetime-bob,person=bob,source=device counts=409.99,counts_x=310i,counts_y=265i,"
            "counts_z=42i,epoch_s=60i 1732399980000000000",
        ),
        Measurement(
            "sleep_stage",
            "One sleep-staging epoch starting at the timestamp.",
            (
                PERSON,
                TagSpec("source", "device | computed | sim | import"),
                TagSpec("device", "device alias (device stages) or the staging method", False),
            ),
            (
                FieldSpec("stage", "string", "", "wake | light | deep | rem | nrem | sleep | unknown | not_worn"),
                FieldSpec(
                    "stage_code", "int", "", "0 wake, 1 light, 2 deep, 3 rem, 4 nrem, 5 sleep, -1 unknown, -2 not worn"
                ),
                FieldSpec("probability", "float", "0-1", "classifier probability of the stage (computed only)"),
                FieldSpec("epoch_s", "int", "s", "epoch length (30 computed, 600 Bangle.js sleeplog)"),
            ),
            'sleep_stage,device=bangle-bob,person=bob,source=device stage="deep",stage_code=2i,'
            "epoch_s=600i 1732400000000000000",
        ),
        Measurement(
            "supplement_dose",
            "One logged supplement dose (the SQLite dose journal is the source of truth).",
            (
                PERSON,
                TagSpec("supplement", "magnesium, ..."),
                TagSpec("form", "glycinate, citrate, ..."),
                TagSpec("source", "cli | api | web | import | sim"),
            ),
            (
                FieldSpec("dose_id", "string", "", "UUID of the dose (idempotency key)"),
                FieldSpec("amount_mg", "float", "mg", "amount of the compound"),
                FieldSpec("elemental_mg", "float", "mg", "elemental magnesium"),
                FieldSpec("note", "string", "", "free text (may be empty)"),
            ),
            "supplement_dose,form=glycinate,person=alice,source=cli,supplement=magnesium "
            'amount_mg=1500,dose_id="8c1d...",elemental_mg=210,note="" 1732397400000000000',
        ),
        Measurement(
            "night",
            "Nightly summary, stamped at 12:00 UTC of the evening's date (a stable key per night).",
            (
                PERSON,
                TagSpec("dose", "magnesium | control | unknown"),
                TagSpec("staging", "device | computed | none"),
                TagSpec("source", "computed | sim", False),
            ),
            (
                FieldSpec("night", "string", "date", "the evening's date, YYYY-MM-DD"),
                FieldSpec("lights_out", "int", "ns", "lights out, UTC epoch ns"),
                FieldSpec("lights_on", "int", "ns", "lights on, UTC epoch ns"),
                FieldSpec("lights_source", "string", "", "tag | device | estimate"),
                FieldSpec("tib_min", "float", "min", "time in bed"),
                FieldSpec("sol_min", "float", "min", "sleep onset latency"),
                FieldSpec("lps_min", "float", "min", "latency to persistent sleep (10 min)"),
                FieldSpec("tst_min", "float", "min", "total sleep time"),
                FieldSpec("waso_min", "float", "min", "wake after sleep onset, until final awakening"),
                FieldSpec("se_pct", "float", "%", "sleep efficiency TST/TIB"),
                FieldSpec("awakenings", "int", "count", "wake bouts >= 2 min after onset"),
                FieldSpec("wake_min", "float", "min", "wake minutes between lights out and on"),
                FieldSpec("light_min", "float", "min", "light (N1+N2) sleep"),
                FieldSpec("deep_min", "float", "min", "deep (N3) sleep"),
                FieldSpec("rem_min", "float", "min", "REM sleep"),
                FieldSpec("nrem_min", "float", "min", "NREM sleep (light + deep)"),
                FieldSpec("deep_pct", "float", "% of TST", "deep share"),
                FieldSpec("rem_pct", "float", "% of TST", "REM share"),
                FieldSpec("hr_mean_bpm", "float", "1/min", "mean heart rate while asleep"),
                FieldSpec("hr_min5_bpm", "float", "1/min", "lowest 5-min mean heart rate"),
                FieldSpec("rmssd_ms", "float", "ms", "median of 5-min RMSSD while asleep"),
                FieldSpec("ln_rmssd", "float", "ln ms", "natural log of rmssd_ms"),
                FieldSpec("coverage_pct", "float", "%", "share of TIB with usable signal"),
                FieldSpec("flagged", "bool", "", "too little usable signal: metrics not trustworthy"),
                FieldSpec("provisional", "bool", "",
                          "closed early (lights on, or the wearable quiet/awake after sleep) while the night's "
                          "window is still open; recomputed when more data arrives and once the window ends"),
                FieldSpec("elemental_mg", "float", "mg", "elemental Mg taken in the dose window"),
                FieldSpec("form", "string", "", "form of the dose (empty for control nights)"),
            ),
            'night,dose=magnesium,person=alice,staging=computed night="2026-11-20",tst_min=431.5,'
            "sol_min=12,se_pct=91.2 1732104000000000000",
        ),
        Measurement(
            "night_tag",
            "A tag the person put on a night: no_dose, alcohol, caffeine_late, training, illness, lights_out/on.",
            (PERSON, TagSpec("tag", "no_dose | alcohol | caffeine_late | training | illness | lights_out | lights_on")),
            (
                FieldSpec("night", "string", "date", "the evening's date"),
                FieldSpec("value", "bool", "", "true when set"),
                FieldSpec("at", "int", "ns", "the time, for lights_out/lights_on tags"),
            ),
            'night_tag,person=alice,tag=alcohol night="2026-11-20",value=true 1732104000000000000',
        ),
        Measurement(
            "effect",
            "An estimated effect of magnesium on one nightly metric, stamped at computation time.",
            (
                PERSON,
                TagSpec("metric", "night field name, e.g. sol_min"),
                TagSpec("comparison", "mg_vs_control | before_after | band_<lo>_<hi> | form_<form>"),
            ),
            (
                FieldSpec("estimate", "float", "metric unit", "magnesium minus control"),
                FieldSpec("ci_low", "float", "metric unit",
                          "lower bound of the interval in force (see interval; 'clear' is decided on it)"),
                FieldSpec("ci_high", "float", "metric unit", "upper bound of the interval in force"),
                FieldSpec("interval", "string", "",
                          "anytime (valid at every look, the default) | fixed (one look planned in advance)"),
                FieldSpec("alpha", "float", "0-1", "error rate of the interval (primary metrics share 0.05)"),
                FieldSpec("clear", "bool", "", "the interval in force excludes no effect"),
                FieldSpec("fixed_low", "float", "metric unit", "fixed-sample 95% CI lower bound"),
                FieldSpec("fixed_high", "float", "metric unit", "fixed-sample 95% CI upper bound"),
                FieldSpec("decision", "string", "", "stop_clear | keep_going | stop_futile | single_look"),
                FieldSpec("nights_more", "int", "nights", "more nights (both arms) named in next_step"),
                FieldSpec("next_step", "string", "", "the stopping rule's advice in plain words"),
                FieldSpec("p", "float", "", "p value (regression, HAC errors)"),
                FieldSpec("p_adj", "float", "", "Benjamini-Hochberg adjusted p"),
                FieldSpec("p_perm", "float", "", "randomisation test p"),
                FieldSpec("prob_benefit", "float", "0-1", "posterior probability the effect is beneficial"),
                FieldSpec(
                    "prob_meaningful", "float", "0-1", "probability the benefit exceeds the metric's threshold"
                ),
                FieldSpec("effect_size", "float", "SD", "standardised effect"),
                FieldSpec("n_mg", "int", "nights", "magnesium nights"),
                FieldSpec("n_control", "int", "nights", "control nights"),
                FieldSpec("nights_needed", "int", "nights", "nights per arm for the stated CI width"),
                FieldSpec("reported", "bool", "", "false below the minimum information (docs/effects.md)"),
                FieldSpec("unit", "string", "", "unit of the estimate"),
                FieldSpec("summary", "string", "", "the result in plain words"),
                FieldSpec("label", "string", "", "the metric's plain name, e.g. time to fall asleep"),
                FieldSpec("rank", "int", "", "order by what matters (0 first; docs/effects.md)"),
                FieldSpec("state", "string", "",
                          "clear | likely | no_clear_change | cannot_measure | too_few_nights"),
                FieldSpec("measurable", "bool", "", "false when the staging source cannot measure the metric"),
                FieldSpec("slope", "float", "", "measurement slope the estimate was divided by (validity table)"),
            ),
            "effect,comparison=mg_vs_control,metric=sol_min,person=alice estimate=-14.2,ci_low=-22.1,"
            'ci_high=-6.3,n_mg=41i,n_control=39i,unit="min" 1732400000000000000',
        ),
        Measurement(
            "effect_verdict",
            "One answer first for a person's effects, and the next step, stamped at computation time.",
            (PERSON, TagSpec("comparison", "mg_vs_control | before_after")),
            (
                FieldSpec("headline", "string", "", "the verdict in one sentence"),
                FieldSpec("next_step", "string", "", "what to do next (nights needed for a 10-minute change)"),
                FieldSpec("source", "string", "", "staging source of the nights analysed: computed | device"),
                FieldSpec("order", "string", "", "the metrics in the verdict's order, comma-separated"),
                FieldSpec("sources_note", "string", "",
                          "nights of other staging sources left out (not pooled), in words; absent when none"),
            ),
            'effect_verdict,comparison=mg_vs_control,person=alice headline="For you, magnesium nights: '
            'total sleep no clear change.",next_step="",source="computed",order="tst_min" 1732400000000000000',
        ),
        Measurement(
            "trial_plan",
            "One planned night of a trial schedule, stamped at 12:00 UTC of the evening's date.",
            (PERSON, TagSpec("design", "randomised | blocks")),
            (
                FieldSpec("night", "string", "date", "the evening's date"),
                FieldSpec("magnesium", "bool", "", "true for a planned magnesium night"),
                FieldSpec("plan_id", "string", "", "id of the plan"),
            ),
            'trial_plan,design=randomised,person=alice magnesium=true,night="2026-11-20",'
            'plan_id="p1" 1732104000000000000',
        ),
        Measurement(
            "device_status",
            "Connection health of a wearable, written on every state change and every 60 s.",
            (PERSON, DEVICE),
            (
                FieldSpec("state", "string", "", "connecting | connected | disconnected | backoff | stopped"),
                FieldSpec("connected", "bool", "", "link up"),
                FieldSpec("reconnects", "int", "count", "reconnects since the daemon started"),
                FieldSpec("rssi_dbm", "int", "dBm", "signal strength"),
                FieldSpec("battery_pct", "int", "%", "battery level"),
                FieldSpec("notify_rate", "float", "1/s", "notifications per second over the last minute"),
                FieldSpec("model", "string", "", "model number from Device Information"),
                FieldSpec("firmware", "string", "", "firmware revision from Device Information"),
                FieldSpec("via", "string", "", "with ESPHome proxies: the source the link goes through, "
                          "local or the proxy's name"),
            ),
            'device_status,device=h10-alice,person=alice state="connected",connected=true,'
            "reconnects=0i,battery_pct=87i 1732400000000000000",
        ),
    )
}

#: The measurements by name for code that queries or writes them (``RR.name``, ``RR.field("rr_ms").name``:
#: a name the schema no longer has fails at import, not as an empty query).
HEART_RATE = MEASUREMENTS["heart_rate"]
RR = MEASUREMENTS["rr"]
MOTION = MEASUREMENTS["motion"]
SLEEP_STAGE = MEASUREMENTS["sleep_stage"]
SUPPLEMENT_DOSE = MEASUREMENTS["supplement_dose"]
NIGHT = MEASUREMENTS["night"]
NIGHT_TAG = MEASUREMENTS["night_tag"]
EFFECT = MEASUREMENTS["effect"]
EFFECT_VERDICT = MEASUREMENTS["effect_verdict"]
TRIAL_PLAN = MEASUREMENTS["trial_plan"]
DEVICE_STATUS = MEASUREMENTS["device_status"]
#: What a wearable's sensor may write (a ``[[ble.generic]]`` profile, an importer); the others are computed.
SENSOR_MEASUREMENTS: tuple[str, ...] = (HEART_RATE.name, RR.name, MOTION.name, SLEEP_STAGE.name)


def validate_point(p: Point) -> None:
    """Raise :class:`ValidationError` if ``p`` does not fit the schema."""
    m = MEASUREMENTS.get(p.measurement)
    if m is None:
        raise ValidationError(f"unknown measurement {p.measurement!r}; known: {', '.join(MEASUREMENTS)}")
    known_tags = {t.name for t in m.tags}
    for t in m.tags:
        if t.required and not p.tags.get(t.name):
            raise ValidationError(f"{m.name}: tag {t.name!r} is required ({t.doc})")
    for k in p.tags:
        if k not in known_tags:
            raise ValidationError(f"{m.name}: unknown tag {k!r}; allowed: {', '.join(sorted(known_tags))}")
    if not p.fields:
        raise ValidationError(f"{m.name}: a point needs at least one field")
    for k, v in p.fields.items():
        try:
            spec = m.field(k)
        except KeyError:
            allowed = ", ".join(f.name for f in m.fields)
            raise ValidationError(f"{m.name}: unknown field {k!r}; allowed: {allowed}") from None
        if not _type_ok(spec.type, v):
            raise ValidationError(f"{m.name}.{k}: expected {spec.type}, got {type(v).__name__}")


def _type_ok(t: FieldType, v: FieldValue) -> bool:
    if t != "bool" and isinstance(v, bool):
        return False
    return isinstance(v, _PY[t])


def normalize(p: Point) -> Point:
    """``p`` with int values of float fields turned into floats (InfluxDB types fields per shard).

    Unknown measurements pass unchanged; :func:`validate_point` is the strict check.
    """
    m = MEASUREMENTS.get(p.measurement)
    if m is None:
        return p
    fix: dict[str, FieldValue] | None = None
    for k, v in p.fields.items():
        if type(v) is int:
            try:
                spec = m.field(k)
            except KeyError:
                continue
            if spec.type == "float":
                if fix is None:
                    fix = dict(p.fields)
                fix[k] = float(v)
    if fix is None:
        return p
    return Point(p.measurement, p.tags, fix, p.time_ns)


def render_markdown() -> str:
    """docs/schema.md, generated from :data:`MEASUREMENTS` (a test keeps the file in step)."""
    out = [
        "# InfluxDB schema",
        "",
        "<!-- Generated from collector/storage/schema.py by `magsleep schema > docs/schema.md`. -->",
        "",
        "One schema for every InfluxDB magsleep writes to (1.x database or 2.x/3.x bucket).",
        "",
        "- Timestamps are UTC, nanosecond precision.",
        "- `person` names whose data it is (a configured person). It is never called `user`,",
        "  a reserved word in InfluxQL.",
        "- `source` says where a point came from: `device` (read from a wearable), `computed`",
        "  (derived by magsleep), `sim` (simulated; never mixed silently with real data), `import`",
        "  (history imported from another app: `magsleep import`, docs/import.md). For doses it",
        "  says how the dose was logged.",
        "- Float fields always hold floats (an integer value is written as a float), so a field's type",
        "  never changes between shards.",
        "- The same series (measurement + tags) and timestamp is the same point: writing it again",
        "  replaces it. Re-sending after a crash therefore never duplicates data.",
        "",
        "| measurement | what |",
        "| --- | --- |",
    ]
    out += [f"| [{m.name}](#{m.name}) | {m.doc} |" for m in MEASUREMENTS.values()]
    for m in MEASUREMENTS.values():
        out += ["", f"## {m.name}", "", m.doc, "", "| tag | required | meaning |", "| --- | --- | --- |"]
        out += [f"| `{t.name}` | {'yes' if t.required else 'no'} | {t.doc} |" for t in m.tags]
        out += ["", "| field | type | unit | meaning |", "| --- | --- | --- | --- |"]
        out += [f"| `{f.name}` | {f.type} | {f.unit or '-'} | {f.doc} |" for f in m.fields]
        out += ["", "Example line:", "", "```", m.example, "```"]
    return "\n".join(out) + "\n"
