"""Overview: nightly metrics over time, magnesium nights marked, latest effects."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries
from grafana_foundation_sdk.models import common as cm

from collector.dashboards.common import (
    CONTROL_COLOR,
    METRICS,
    PERSON,
    TIME,
    Metric,
    base_dashboard,
    dose_annotation,
    dose_color_overrides,
    eq,
    nights_table,
    prop,
    where,
)
from collector.dashboards.influxql import InfluxQL
from collector.storage.schema import EFFECT, NIGHT

UID = "magsleep-overview"


def metric_panel(m: Metric) -> timeseries.Panel:
    nightly = InfluxQL(f'SELECT "{m.field}" FROM {NIGHT.quoted} WHERE {where(PERSON, TIME)} GROUP BY "dose"').alias(
        "$tag_dose"
    )
    rolling = (
        InfluxQL(f'SELECT moving_average("{m.field}", 7) AS "7-night mean" FROM {NIGHT.quoted} '
                 f"WHERE {where(PERSON, TIME)}")
        .ref_id("B")
        .alias("7-night mean")
    )
    panel = (
        timeseries.Panel()
        .title(m.title)
        .description(f"night.{m.field} per night, coloured by dose; the line is the 7-night rolling mean.")
        .with_target(nightly)
        .with_target(rolling)
        .unit(m.unit)
        .draw_style(cm.GraphDrawStyle.POINTS)
        .point_size(7)
        .span_nulls(True)
        .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.LIST).placement(cm.LegendPlacement.BOTTOM))
        .height(8)
        .span(12)
    )
    for name, props in dose_color_overrides():
        panel = panel.override_by_name(name, props)
    return panel.override_by_name(
        "7-night mean",
        [
            prop("custom.drawStyle", "line"),
            prop("custom.lineWidth", 2),
            prop("color", {"mode": "fixed", "fixedColor": CONTROL_COLOR}),
        ],
    )


def effect_stat(m: Metric) -> stat.Panel:
    q = (
        'SELECT last("estimate") AS "difference", last("ci_low") AS "CI low", last("ci_high") AS "CI high", '
        f'last("n_mg") AS "n magnesium", last("n_control") AS "n control" FROM {EFFECT.quoted} '
        f"WHERE {where(PERSON, eq('comparison', 'mg_vs_control'), eq('metric', m.field))}"
    )
    return (
        stat.Panel()
        .title(f"{m.title}: magnesium − control")
        .description("Latest estimate with its 95% CI and the nights behind it (effect measurement).")
        .with_target(InfluxQL(q).table())
        .unit(m.unit)
        .decimals(1)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .color_mode(cm.BigValueColorMode.NONE)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields(""))
        .override_by_regexp("^n ", [prop("unit", "none"), prop("decimals", 0)])
        .height(5)
        .span(8)
    )


def all_nights() -> table.Panel:
    return (
        nights_table(
            '"tst_min", "sol_min", "waso_min", "se_pct", "hr_mean_bpm", "rmssd_ms", "elemental_mg", '
            '"coverage_pct", "flagged"',
            "One row per night; click a night to open it.",
        )
        .override_by_name("coverage_pct", [prop("unit", "percent")])
        .override_by_regexp("_min$", [prop("unit", "m")])
        .height(10)
    )


def build() -> dash.Dashboard:
    d = (
        base_dashboard(UID, "magsleep · Overview", "Your nights over time, magnesium nights marked, latest effects.")
        .time("now-60d", "now")
        .annotation(dose_annotation())
        .with_row(dash.Row("Latest effects (magnesium − control)"))
    )
    for m in METRICS[:3]:
        d = d.with_panel(effect_stat(m))
    d = d.with_row(dash.Row("Nightly metrics"))
    for m in METRICS:
        d = d.with_panel(metric_panel(m))
    return d.with_row(dash.Row("Nights")).with_panel(all_nights())

