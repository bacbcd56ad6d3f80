"""Effects: the answer first (the verdict and the next step), magnesium vs control per metric
(difference, CI, probability of benefit, n, nights needed), before/after, a table of all metrics in
the verdict's order with plain names, and adherence to the trial plan."""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

from collector.dashboards.common import (
    CONTROL_COLOR,
    MAGNESIUM_COLOR,
    PERSON,
    TIME,
    base_dashboard,
    eq,
    multi_variable,
    prop,
    thresholds,
    value_map,
    where,
)
from collector.dashboards.influxql import InfluxQL
from collector.storage.schema import EFFECT, EFFECT_VERDICT, NIGHT, TRIAL_PLAN

UID = "magsleep-effects"
METRIC = '"metric" =~ /^$metric$/'  # multi-value: Grafana sends (a|b)

EFFECT_COLUMNS = (
    ("estimate", "difference"),
    ("ci_low", "CI low"),
    ("ci_high", "CI high"),
    ("prob_benefit", "P(benefit)"),
    ("n_mg", "n magnesium"),
    ("n_control", "n control"),
    ("nights_needed", "nights needed"),
)


def metric_variable() -> dash.QueryVariable:
    """The metrics that have effect estimates for the person (as written by `magsleep effects`)."""
    return (
        multi_variable("metric", "Metric", f'SHOW TAG VALUES FROM {EFFECT.quoted} WITH KEY = "metric" WHERE {PERSON}')
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


def latest(columns: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f'last("{f}") AS "{alias}"' for f, alias in columns)


def effect_stat() -> stat.Panel:
    cond = where(PERSON, eq("comparison", "mg_vs_control"), METRIC)
    q = f'SELECT {latest(EFFECT_COLUMNS)} FROM {EFFECT.quoted} WHERE {cond}'
    return (
        stat.Panel()
        .title("$metric: magnesium − control")
        .description(
            "Latest estimate (unit of the metric) with its 95% CI, the posterior probability that magnesium "
            "helps, the nights per arm, and the nights per arm needed for the stated CI width."
        )
        .repeat("metric")
        .repeat_direction("h")
        .max_per_row(3)
        .with_target(InfluxQL(q).table())
        .decimals(1)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields(""))
        .override_by_name(
            "P(benefit)",
            [
                prop("unit", "percentunit"),
                prop("decimals", 0),
                prop("color", {"mode": "thresholds"}),
                prop("thresholds", {"mode": "absolute", "steps": [
                    {"value": None, "color": "text"}, {"value": 0.9, "color": "green"}]}),
            ],
        )
        .override_by_regexp("^n|nights", [prop("unit", "none"), prop("decimals", 0)])
        .height(6)
        .span(8)
    )


def estimate_over_time() -> timeseries.Panel:
    q = (
        f'SELECT "estimate", "ci_low", "ci_high" FROM {EFFECT.quoted} '
        f"WHERE {where(PERSON, eq('comparison', 'mg_vs_control'), METRIC, TIME)} GROUP BY \"metric\""
    )
    return (
        timeseries.Panel()
        .title("Estimate as nights accrue")
        .description("Each point is one analysis run; the band is the 95% CI. It should narrow over time.")
        .with_target(InfluxQL(q).alias("$tag_metric $col"))
        .draw_style(cm.GraphDrawStyle.LINE)
        .show_points(cm.VisibilityMode.ALWAYS)
        .override_by_regexp("ci_high$", [prop("custom.fillBelowTo", "ci_low"), prop("custom.lineWidth", 0)])
        .override_by_regexp("ci_low$", [prop("custom.lineWidth", 0)])
        .height(8)
        .span(24)
    )


def verdict_panel() -> table.Panel:
    """The verdict (`magsleep effects` writes it as ``effect_verdict``): one answer first, then the next step."""
    q = (f'SELECT last("headline") AS "answer", last("next_step") AS "next step" FROM {EFFECT_VERDICT.quoted} '
         f"WHERE {where(PERSON, eq('comparison', 'mg_vs_control'))}")
    return (
        table.Panel()
        .title("The answer")
        .description("The verdict of the latest `magsleep effects` run: what changed on magnesium nights, "
                     "ranked by what matters; metrics the night's staging cannot measure are named as such "
                     "(docs/effects.md, measurement validity).")
        .with_target(InfluxQL(q).table())
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
        .override_by_name("answer", [prop("custom.cellOptions", {"type": "auto", "wrapText": True}),
                                     prop("custom.width", 900)])
        .override_by_name("next step", [prop("custom.cellOptions", {"type": "auto", "wrapText": True})])
        .height(5)
        .span(24)
    )


def effects_table(comparison: str, title: str) -> table.Panel:
    cols = (("label", "name"), ("state", "verdict"), *EFFECT_COLUMNS, ("p_adj", "p (BH)"), ("unit", "unit"),
            ("summary", "summary"), ("rank", "rank"))
    q = (f"SELECT {latest(cols)} FROM {EFFECT.quoted} "
         f'WHERE {where(PERSON, eq("comparison", comparison))} GROUP BY "metric"')
    return (
        table.Panel()
        .title(title)
        .description("In the verdict's order (what matters first; not alphabetical), with plain names; "
                     "'cannot_measure': the night's staging cannot measure this metric, so no effect is shown.")
        .with_target(InfluxQL(q).table())
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="sortBy", options={"sort": [{"field": "rank"}]}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True, "rank": True}}))
        .override_by_name("P(benefit)", [prop("unit", "percentunit"), prop("decimals", 0)])
        .override_by_regexp("^(difference|CI)", [prop("decimals", 2)])
        .height(9)
        .span(24)
    )


def adherence_timeline() -> statetimeline.Panel:
    planned = f'SELECT "magnesium" AS "planned" FROM {TRIAL_PLAN.quoted} WHERE {where(PERSON, TIME)}'
    taken = f'SELECT "elemental_mg" AS "taken (mg)" FROM {NIGHT.quoted} WHERE {where(PERSON, TIME)}'
    return (
        statetimeline.Panel()
        .title("Trial plan vs what happened")
        .description("Top: the plan (magnesium or control night). Bottom: elemental magnesium taken that night.")
        .with_target(InfluxQL(planned))
        .with_target(InfluxQL(taken).ref_id("B"))
        .mappings([value_map({"true": ("magnesium", MAGNESIUM_COLOR), "false": ("control", CONTROL_COLOR)})])
        .thresholds(thresholds((None, CONTROL_COLOR), (1, MAGNESIUM_COLOR)))
        .color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .show_value(cm.VisibilityMode.AUTO)
        .height(6)
        .span(16)
    )


def adherence_stats() -> stat.Panel:
    mg, ctl = '"magnesium" = true', '"magnesium" = false'
    planned_mg = (f'SELECT count("magnesium") AS "planned magnesium" FROM {TRIAL_PLAN.quoted} '
                  f"WHERE {where(PERSON, mg, TIME)}")
    planned_ctl = (f'SELECT count("magnesium") AS "planned control" FROM {TRIAL_PLAN.quoted} '
                   f"WHERE {where(PERSON, ctl, TIME)}")
    nights = f'SELECT count("tst_min") AS "nights" FROM {NIGHT.quoted} WHERE {where(PERSON, TIME)} GROUP BY "dose"'
    return (
        stat.Panel()
        .title("Plan and nights")
        .with_target(InfluxQL(planned_mg))
        .with_target(InfluxQL(planned_ctl).ref_id("B"))
        .with_target(InfluxQL(nights).ref_id("C").alias("$tag_dose nights"))
        .unit("none")
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["sum"]).values(False).fields(""))
        .height(6)
        .span(8)
    )


def build() -> dash.Dashboard:
    return (
        base_dashboard(UID, "magsleep · Effects", "Does magnesium change my sleep? Differences with honest CIs.")
        .time("now-1y", "now")
        .with_variable(metric_variable())
        .with_panel(verdict_panel())
        .with_row(dash.Row("Magnesium vs control"))
        .with_panel(effect_stat())
        .with_panel(estimate_over_time())
        .with_panel(effects_table("mg_vs_control", "All metrics: magnesium vs control"))
        .with_row(dash.Row("Before / after"))
        .with_panel(effects_table("before_after", "All metrics: after starting magnesium vs before"))
        .with_row(dash.Row("Trial plan adherence"))
        .with_panel(adherence_timeline())
        .with_panel(adherence_stats())
    )
