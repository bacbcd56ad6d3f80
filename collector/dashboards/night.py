"""Night: hypnogram (device and computed stages), heart rate, RR/RMSSD, dose marker, summary."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from collector.dashboards.common import (
    DEVICE,
    PERSON,
    TIME,
    base_dashboard,
    device_variable,
    dose_annotation,
    nights_table,
    prop,
    stage_mappings,
    thresholds,
    where,
)
from collector.dashboards.influxql import DATASOURCE, InfluxQL
from collector.storage.schema import HEART_RATE, NIGHT, RR, SLEEP_STAGE

UID = "magsleep-night"
THIS_NIGHT = "\"night\" = '$night'"

# (field, title, Grafana unit) of the night summary.
SUMMARY: tuple[tuple[str, str, str], ...] = (
    ("tst_min", "Total sleep", "m"),
    ("sol_min", "Onset latency", "m"),
    ("waso_min", "WASO", "m"),
    ("se_pct", "Efficiency", "percent"),
    ("deep_min", "Deep", "m"),
    ("rem_min", "REM", "m"),
    ("awakenings", "Awakenings", "none"),
    ("hr_min5_bpm", "Lowest HR (5 min)", "bpm"),
    ("rmssd_ms", "RMSSD", "ms"),
    ("coverage_pct", "Coverage", "percent"),
    ("elemental_mg", "Magnesium", "massmg"),
)


def night_variable() -> dash.QueryVariable:
    return (
        dash.QueryVariable("night")
        .label("Night")
        .description("Nights (evening dates) inside the time range; pick a row in 'Nights' to jump to one.")
        .datasource(DATASOURCE)
        .query(f'SELECT "night" FROM {NIGHT.quoted} WHERE {where(PERSON, TIME)}')
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(dm.VariableSort.ALPHABETICAL_DESC)
    )


def hypnogram() -> statetimeline.Panel:
    q = f'SELECT "stage_code" FROM {SLEEP_STAGE.quoted} WHERE {where(PERSON, TIME)} GROUP BY "source", "device"'
    return (
        statetimeline.Panel()
        .title("Hypnogram")
        .description("Sleep stages per epoch: one row per source (device stages, computed stages).")
        .with_target(InfluxQL(q).alias("$tag_source $tag_device"))
        .mappings(stage_mappings())
        .color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.FIXED).fixed_color("#8e8e8e"))
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
        .fill_opacity(90)
        .height(7)
        .span(24)
    )


def heart_rate() -> timeseries.Panel:
    q = (
        f'SELECT mean("bpm") FROM {HEART_RATE.quoted} WHERE {where(PERSON, DEVICE, TIME)} '
        'GROUP BY time($__interval), "device" fill(null)'
    )
    return (
        timeseries.Panel()
        .title("Heart rate")
        .with_target(InfluxQL(q).alias("$tag_device"))
        .unit("bpm")
        .line_width(1)
        .thresholds(thresholds((None, "green"), (100, "orange")))
        .height(8)
        .span(12)
    )


def rr_panel() -> timeseries.Panel:
    rr = (
        f'SELECT mean("rr_ms") FROM {RR.quoted} WHERE {where(PERSON, DEVICE, TIME)} '
        'GROUP BY time($__interval), "device" fill(null)'
    )
    # RMSSD: root mean square of successive RR differences, per device, in 5-minute windows.
    rmssd = (
        'SELECT sqrt(mean("d2")) AS "RMSSD" FROM ('
        f'SELECT pow(difference("rr_ms"), 2) AS "d2" FROM {RR.quoted} '
        f'WHERE {where(PERSON, DEVICE, TIME)} GROUP BY "device"'
        f') WHERE {TIME} GROUP BY time(5m), "device" fill(none)'
    )
    return (
        timeseries.Panel()
        .title("RR interval and RMSSD (5 min)")
        .with_target(InfluxQL(rr).alias("RR $tag_device"))
        .with_target(InfluxQL(rmssd).ref_id("B").alias("RMSSD $tag_device"))
        .unit("ms")
        .line_width(1)
        .override_by_regexp("^RMSSD", [prop("custom.axisPlacement", "right"), prop("custom.lineWidth", 2)])
        .height(8)
        .span(12)
    )


def summary() -> stat.Panel:
    fields = ", ".join(f'last("{f}") AS "{title}"' for f, title, _ in SUMMARY)
    q = f'SELECT {fields} FROM {NIGHT.quoted} WHERE {where(PERSON, THIS_NIGHT)}'
    panel = (
        stat.Panel()
        .title("Night of $night")
        .description("The night's summary (night measurement).")
        .with_target(InfluxQL(q).table())
        .decimals(0)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields(""))
        .height(5)
        .span(24)
    )
    for _, title, unit in SUMMARY:
        panel = panel.override_by_name(title, [prop("unit", unit)])
    return panel


def nights() -> table.Panel:
    return (
        nights_table(
            '"tst_min", "elemental_mg", "flagged"',
            "Click a night to show it (sets the time range to lights out - 1 h .. lights on + 1 h).",
        )
        .override_by_name("tst_min", [prop("unit", "m")])
        .height(8)
    )


def build() -> dash.Dashboard:
    return (
        base_dashboard(UID, "magsleep · Night", "One night: stages, heart rate, RR/RMSSD, dose and summary.")
        .time("now-24h", "now")
        .with_variable(device_variable())
        .with_variable(night_variable())
        .annotation(dose_annotation())
        .with_panel(summary())
        .with_panel(hypnogram())
        .with_panel(heart_rate())
        .with_panel(rr_panel())
        .with_panel(nights())
    )
