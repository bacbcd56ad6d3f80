"""The doses' entities and messages: what is stored (:class:`Dose`, :class:`NightTag`,
:class:`Lights`), what is sent to create or change one, what the API answers (plan, morning card,
health), and the validation errors that name each bad field."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

import pydantic
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from collector.doses.forms import Form, parse_form
from collector.errors import ValidationError

NOTE_MAX = 500
SUPPLEMENT_RE = r"^[a-z][a-z0-9_-]{0,31}$"
PERSON_RE = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Source(StrEnum):
    """Where a dose was logged."""

    cli = "cli"
    api = "api"
    web = "web"
    import_ = "import"


class NightTagName(StrEnum):
    """Tags a person can put on a night (lights out/on are :class:`LightsEvent`, with a time)."""

    no_dose = "no_dose"
    alcohol = "alcohol"
    caffeine_late = "caffeine_late"
    training = "training"
    illness = "illness"


class LightsEvent(StrEnum):
    """Lights out / lights on of a night (``night_tag`` points with the time in field ``at``)."""

    lights_out = "lights_out"
    lights_on = "lights_on"


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class DoseValidationError(ValidationError):
    """A dose is invalid; ``problems`` names each bad field and what to fix."""

    def __init__(self, problems: Iterable[FieldProblem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))


class NotFoundError(ValidationError):
    """No dose with that id (or it was deleted)."""


class ConflictError(ValidationError):
    """The id is taken by a different dose, or by one that was deleted."""


def _form_before(v: Any) -> Any:
    return parse_form(v) if isinstance(v, str) else v


Amount = Annotated[float, Field(gt=0, le=1_000_000, allow_inf_nan=False)]
#: The least a logged dose may be: less is a typo (or 1e-300), not a supplement.
MIN_AMOUNT_MG = 1.0
MIN_ELEMENTAL_MG = 0.1


def _at_least(minimum: float) -> AfterValidator:
    def check(v: float) -> float:
        if v < minimum:
            raise ValueError(f"must be at least {minimum:g} mg; {v:g} mg is not a dose (check "
                             "the unit: mg, e.g. 300)")
        return v

    return AfterValidator(check)


# What may be sent (stored doses keep the looser Amount, so older entries stay readable).
AmountIn = Annotated[Amount, _at_least(MIN_AMOUNT_MG)]
ElementalIn = Annotated[Amount, _at_least(MIN_ELEMENTAL_MG)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Dose(_Strict):
    """One logged dose as stored in the journal."""

    id: UUID = Field(description="idempotency key chosen by the client")
    person: str = Field(pattern=PERSON_RE)
    supplement: str = Field(default="magnesium", pattern=SUPPLEMENT_RE)
    form: Form
    amount_mg: Amount = Field(description="mass of the compound, mg")
    elemental_mg: Amount = Field(description="elemental magnesium, mg")
    elemental_computed: bool = Field(
        description="true when elemental_mg was computed from the form's share"
    )
    taken_at: AwareDatetime
    note: str = Field(default="", max_length=NOTE_MAX)
    source: Source
    recorded_at: AwareDatetime
    updated_at: AwareDatetime


class DoseCreate(_Strict):
    """Body of POST /api/v1/doses. Missing fields get defaults from the settings."""

    id: UUID | None = Field(
        default=None, description="idempotency key; send the same id to retry safely"
    )
    person: str | None = Field(
        default=None, pattern=PERSON_RE, description="default: the only configured person"
    )
    supplement: str = Field(default="magnesium", pattern=SUPPLEMENT_RE)
    form: Form | None = Field(default=None, description="default: doses.default_form")
    amount_mg: AmountIn = Field(description="mass of the compound, mg (at least 1)")
    elemental_mg: ElementalIn | None = Field(
        default=None, description="elemental magnesium, mg; default: computed from the form"
    )
    taken_at: datetime | None = Field(
        default=None, description="default now; without an offset it is the person's local time"
    )
    note: str = Field(default="", max_length=NOTE_MAX)
    source: Source = Source.api

    _form = field_validator("form", mode="before")(_form_before)


class DosePatch(_Strict):
    """Body of PATCH /api/v1/doses/{id}: only the fields to change."""

    person: str | None = Field(default=None, pattern=PERSON_RE)
    supplement: str | None = Field(default=None, pattern=SUPPLEMENT_RE)
    form: Form | None = None
    amount_mg: AmountIn | None = None
    elemental_mg: ElementalIn | None = None
    taken_at: datetime | None = None
    note: str | None = Field(default=None, max_length=NOTE_MAX)

    _form = field_validator("form", mode="before")(_form_before)


class DoseResult(_Strict):
    """A dose with the warnings its logging raised (e.g. the daily level passed)."""

    dose: Dose
    warnings: list[str] = Field(default_factory=list)
    created: bool = Field(default=False, description="false when the id was already stored")


class DoseList(_Strict):
    doses: list[Dose]


class NightTag(_Strict):
    person: str = Field(pattern=PERSON_RE)
    night: date = Field(description="the evening's date")
    tag: NightTagName
    recorded_at: AwareDatetime


class Lights(_Strict):
    """The current lights out or lights on of one person's night."""

    person: str = Field(pattern=PERSON_RE)
    night: date = Field(description="the evening's date (the night window holding `at`)")
    event: LightsEvent
    at: AwareDatetime = Field(description="when, in the person's time zone")
    source: Source = Field(description="where it was recorded")
    recorded_at: AwareDatetime


class LightsCreate(_Strict):
    """Body of POST /api/v1/lights. Recording again for the same night and event replaces it."""

    person: str | None = Field(
        default=None, pattern=PERSON_RE, description="default: the only configured person"
    )
    event: LightsEvent
    at: AwareDatetime | None = Field(
        default=None,
        description="default now; must fall inside the person's night window (default 18:00-14:00)",
    )
    source: Source = Source.api


class LightsList(_Strict):
    lights: list[Lights]


class Person(_Strict):
    name: str
    timezone: str


class PersonList(_Strict):
    persons: list[Person]
    forms: list[Form]
    default_form: Form


class Assignment(StrEnum):
    """What a trial plan says for a night."""

    magnesium = "magnesium"
    control = "control"


class UsualDose(_Strict):
    """The person's most recent magnesium dose: what "magnesium tonight" means for them."""

    amount_mg: float
    form: Form


class PlannedNight(_Strict):
    """One night of the active plan, and what was logged for it."""

    night: date = Field(description="the evening's date")
    planned: Assignment
    doses: int = Field(description="magnesium doses logged for that evening (06:00 to 06:00 "
                                   "local time)")
    deviation: str | None = Field(default=None, description="how the logged doses differ from "
                                  "the plan; null when they follow it (so far, for tonight)")


class PlanToday(_Strict):
    """GET /api/v1/plan/today: tonight's assignment from the person's active trial plan."""

    person: str
    plan_id: str | None = Field(description="null: the person has no active plan")
    text: str = Field(description='e.g. "Tonight: magnesium, 300 mg glycinate"')
    tonight: PlannedNight | None = Field(description="null when tonight is not in the plan")
    last_night: PlannedNight | None = Field(description="null when last night was not planned")
    usual_dose: UsualDose | None = None


class NightMetric(_Strict):
    name: str = Field(description="field of the night measurement, e.g. tst_min")
    label: str
    unit: str
    value: float | None
    baseline: float | None = Field(description="median of the person's previous nights "
                                               "(null below 3 of them)")
    better: Literal["lower", "higher"]


class MorningCard(_Strict):
    """GET /api/v1/nights/last: the latest night's numbers against the person's own baseline."""

    person: str
    night: date | None = Field(description="the evening's date; null: no night yet")
    provisional: bool = Field(default=False, description="closed early; may still change")
    flagged: bool = Field(default=False, description="too little signal to trust the numbers")
    baseline_nights: int = Field(default=0, description="previous nights the baseline is from")
    metrics: list[NightMetric] = Field(default_factory=list)
    text: str


class ProblemDetail(_Strict):
    field: str
    reason: str


class ErrorBody(_Strict):
    """Every error response: a message saying what to fix, and per-field details for 422."""

    error: str
    detail: list[ProblemDetail] = Field(default_factory=list)


class Health(_Strict):
    status: str = Field(description='"ok", or "degraded" (answered with 503) when a backlog '
                                    "has not moved for a while or the journal is unavailable")
    journal: str
    journal_ops: int | None = Field(default=None, description="dose journal operations not yet "
                                    "in the outbox (null: the journal is unavailable)")
    outbox_rows: int | None = Field(default=None, description="outbox rows not yet in InfluxDB "
                                    "(null: no outbox)")
    problems: list[str] = Field(default_factory=list, description="what is wrong, with advice")


def problems_from_pydantic(exc: pydantic.ValidationError, prefix: str = "") -> list[FieldProblem]:
    """Per-field problems from a pydantic error, phrased as what to fix."""
    out: list[FieldProblem] = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        out.append(FieldProblem(prefix + loc, _reason(err["type"], loc, err["msg"],
                                                      err.get("ctx") or {})))
    return out


_EXAMPLE_TIME = "2026-11-20T22:10:00+01:00"


def _reason(typ: str, loc: str, msg: str, ctx: dict[str, Any]) -> str:
    """A pydantic error phrased as what to fix."""
    fixed: dict[str, str] = {
        "missing": "is required",
        "extra_forbidden": "unknown field; remove it",
        "uuid_parsing": "must be a UUID like 3f2b8c1e-4d5a-4b6c-9d7e-0123456789ab",
        "uuid_type": "must be a UUID like 3f2b8c1e-4d5a-4b6c-9d7e-0123456789ab",
        "float_parsing": "must be a number of mg, e.g. 300",
        "float_type": "must be a JSON number of mg, e.g. 300 (not a string, not true/false)",
        "finite_number": "must be a finite number of mg, e.g. 300",
        "datetime_parsing": f"must be a date and time like {_EXAMPLE_TIME}",
        "datetime_from_date_parsing": f"must be a date and time like {_EXAMPLE_TIME}",
        "datetime_type": f"must be a date and time like {_EXAMPLE_TIME}",
        "timezone_aware": f"needs a UTC offset, e.g. {_EXAMPLE_TIME}",
        "model_type": "must be a JSON object with the dose's fields, e.g. {\"amount_mg\": 300}",
        "model_attributes_type": "must be a JSON object, e.g. {\"amount_mg\": 300}",
        "int_parsing": "must be a whole number",
        "int_type": "must be a whole number",
    }
    if typ in fixed:
        return fixed[typ]
    if typ == "greater_than":
        return f"must be more than {ctx.get('gt')}"
    if typ == "less_than_equal":
        return f"must be at most {ctx.get('le')}"
    if typ == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}"
    if typ == "string_too_long":
        return f"is too long: at most {ctx.get('max_length')} characters"
    if typ == "string_pattern_mismatch":
        if loc.endswith("person"):
            return "must be 1-64 letters, digits, '_', '.', '-' (a configured person name)"
        if loc.endswith("supplement"):
            return "must be lowercase letters, digits, '_' or '-', e.g. magnesium"
    if typ == "json_invalid":
        return f"the body is not valid JSON ({ctx.get('error', msg)}); send a JSON object"
    if typ == "value_error":
        return msg.removeprefix("Value error, ")
    return msg
