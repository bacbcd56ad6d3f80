"""Pieces shared by the magsleep dashboards: variables, filters, annotations, colours, units."""

from __future__ import annotations

from dataclasses import dataclass

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models import dashboard as dm

from collector.dashboards.influxql import DATASOURCE, DATASOURCE_VARIABLE, InfluxAnnotation, InfluxQL
from collector.storage.reader import quote_ident, quote_str
from collector.storage.schema import DEVICE_STATUS, HEART_RATE, MOTION, NIGHT, RR, SUPPLEMENT_DOSE

# Regex filters as Grafana's InfluxDB data source expects them: a single value is regex-escaped,
# several become (a|b), "All" becomes the variable's allValue.
PERSON = '"person" =~ /^$person$/'
DEVICE = '"device" =~ /^$device$/'
TIME = "$timeFilter"

MAGNESIUM_COLOR = "purple"
CONTROL_COLOR = "#8e8e8e"

# stage_code of collector/storage/schema.py -> (name, colour); darker = deeper sleep.
STAGES: dict[int, tuple[str, str]] = {
    0: ("wake", "#f2495c"),
    1: ("light", "#8ab8ff"),
    2: ("deep", "#1f60c4"),
    3: ("rem", "#a352cc"),
    4: ("nrem", "#5794f2"),
    5: ("sleep", "#3274d9"),
    -1: ("unknown", "#8e8e8e"),
    -2: ("not worn", "#d8d9da"),
}

DEVICE_STATES: dict[str, str] = {
    "connected": "green",
    "connecting": "yellow",
    "backoff": "orange",
    "disconnected": "red",
    "stopped": "#8e8e8e",
}


@dataclass(frozen=True, slots=True)
class Metric:
    """A nightly metric (a field of the ``night`` measurement) as the dashboards show it."""

    field: str
    title: str
    unit: str  # Grafana unit id
    lower_is_better: bool


METRICS: tuple[Metric, ...] = (
    Metric("sol_min", "Sleep onset latency", "m", True),
    Metric("tst_min", "Total sleep time", "m", False),
    Metric("waso_min", "Wake after sleep onset", "m", True),
    Metric("se_pct", "Sleep efficiency", "percent", False),
    Metric("deep_pct", "Deep sleep share", "percent", False),
    Metric("rem_pct", "REM share", "percent", False),
    Metric("awakenings", "Awakenings", "none", True),
    Metric("hr_mean_bpm", "Mean heart rate asleep", "bpm", True),
    Metric("rmssd_ms", "RMSSD asleep", "ms", False),
)


def where(*conditions: str) -> str:
    return " AND ".join(conditions)


def eq(key: str, value: str) -> str:
    """An InfluxQL equality test on a tag or field: ``"key" = 'value'``."""
    return quote_ident(key) + " = " + quote_str(value)


def datasource_variable() -> dash.DatasourceVariable:
    return (
        dash.DatasourceVariable(DATASOURCE_VARIABLE)
        .label("Data source")
        .type("influxdb")
        .description("An InfluxDB data source in InfluxQL mode (1.x, or 2.x/3.x with the v1 API)")
    )


def person_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("person")
        .label("Person")
        .datasource(DATASOURCE)
        .query('SHOW TAG VALUES WITH KEY = "person"')
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
    )


def multi_variable(name: str, label: str, query: str) -> dash.QueryVariable:
    """A multi-select variable of tag values with "All" (regex ``.*``), loaded with the dashboard."""
    return (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        .refresh(dm.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
    )


def device_variable() -> dash.QueryVariable:
    return multi_variable(
        "device", "Device",
        f"SHOW TAG VALUES FROM {DEVICE_STATUS.quoted}, {HEART_RATE.quoted}, {RR.quoted}, {MOTION.quoted} "
        f'WITH KEY = "device" WHERE {PERSON}')


def dose_annotation() -> dash.AnnotationQuery:
    """Magnesium doses as markers on every time axis."""
    query = (
        f'SELECT "elemental_mg", "amount_mg", "note", "form", "supplement" FROM {SUPPLEMENT_DOSE.quoted} '
        f"WHERE {where(PERSON, TIME)}"
    )
    return (
        dash.AnnotationQuery()
        .name("Doses")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color(MAGNESIUM_COLOR)
        .target(InfluxAnnotation(query, text_column="elemental_mg", tags_column="supplement,form"))  # type: ignore[arg-type]
    )


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def fixed_color(color: str) -> dash.FieldColor:
    return dash.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color(color)


def value_map(entries: dict[str, tuple[str, str]]) -> dm.ValueMap:
    return dm.ValueMap(
        options={
            key: dm.ValueMappingResult(text=text, color=color, index=i)
            for i, (key, (text, color)) in enumerate(entries.items())
        }
    )


def stage_mappings() -> list[dm.ValueMapping]:
    return [value_map({str(code): (name, color) for code, (name, color) in STAGES.items()})]


def device_state_mappings() -> list[dm.ValueMapping]:
    return [value_map({state: (state, color) for state, color in DEVICE_STATES.items()})]


def prop(id_val: str, value: object) -> dm.DynamicConfigValue:
    return dm.DynamicConfigValue(id_val=id_val, value=value)


def dose_color_overrides() -> list[tuple[str, list[dm.DynamicConfigValue]]]:
    """Magnesium nights purple, control nights grey, wherever a series is named after its dose."""
    return [
        ("magnesium", [prop("color", {"mode": "fixed", "fixedColor": MAGNESIUM_COLOR})]),
        ("control", [prop("color", {"mode": "fixed", "fixedColor": CONTROL_COLOR})]),
    ]


def night_link(title: str = "Open this night") -> dict[str, object]:
    """A data link from a row of the ``night`` measurement to the Night dashboard for that night."""
    return {
        "title": title,
        "url": (
            "/d/magsleep-night/night?var-person=${person}&var-night=${__data.fields.night}"
            "&from=${__data.fields.from_ms}&to=${__data.fields.to_ms}"
        ),
    }


NIGHT_LINK_FIELDS = (
    '"night", "lights_out" / 1000000 - 3600000 AS "from_ms", "lights_on" / 1000000 + 3600000 AS "to_ms"'
)


def nights_table(fields: str, description: str) -> table.Panel:
    """A full-width table of the person's nights (``fields`` of ``night``), each row linking to its night."""
    q = f'SELECT {NIGHT_LINK_FIELDS}, {fields} FROM {NIGHT.quoted} WHERE {where(PERSON, TIME)} GROUP BY "dose"'
    return (
        table.Panel()
        .title("Nights")
        .description(description)
        .with_target(InfluxQL(q).table())
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize", options={"excludeByName": {"from_ms": True, "to_ms": True, "Time": True}}
            )
        )
        .override_by_name("night", [prop("links", [night_link()])])
        .span(24)
    )


def base_dashboard(uid: str, title: str, description: str) -> dash.Dashboard:
    return (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["magsleep"])
        .timezone("browser")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("5m")
        .link(
            dash.DashboardLink("magsleep")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["magsleep"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .with_variable(datasource_variable())
        .with_variable(person_variable())
    )
