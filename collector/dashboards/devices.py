"""Devices: connection state, last seen, battery, reconnects, data coverage."""

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
    device_state_mappings,
    device_variable,
    prop,
    thresholds,
    where,
)
from collector.dashboards.influxql import InfluxQL
from collector.storage.schema import DEVICE_STATUS, HEART_RATE, NIGHT

UID = "magsleep-devices"


def state_timeline() -> statetimeline.Panel:
    q = f'SELECT "state" FROM {DEVICE_STATUS.quoted} WHERE {where(PERSON, DEVICE, TIME)} GROUP BY "device"'
    return (
        statetimeline.Panel()
        .title("Connection state")
        .with_target(InfluxQL(q).alias("$tag_device"))
        .mappings(device_state_mappings())
        .show_value(cm.VisibilityMode.NEVER)
        .merge_values(True)
        .height(7)
        .span(24)
    )


def last_seen() -> stat.Panel:
    # A single selector keeps the time of the selected point: the last status the device sent.
    q = (f'SELECT last("connected") AS "connected" FROM {DEVICE_STATUS.quoted} '
         f'WHERE {where(PERSON, DEVICE)} GROUP BY "device"')
    return (
        stat.Panel()
        .title("Last seen")
        .with_target(InfluxQL(q).table().alias("$tag_device"))
        .unit("dateTimeFromNow")
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.NONE)
        .text_mode(cm.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).values(False).fields("/^Time$/"))
        .height(5)
        .span(8)
    )


def now_table() -> table.Panel:
    cols = ("state", "battery_pct", "reconnects", "rssi_dbm", "notify_rate", "model", "firmware")
    fields = ", ".join(f'last("{c}") AS "{c}"' for c in cols)
    q = f'SELECT {fields} FROM {DEVICE_STATUS.quoted} WHERE {where(PERSON, DEVICE)} GROUP BY "device"'
    return (
        table.Panel()
        .title("Devices now")
        .with_target(InfluxQL(q).table())
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(dm.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
        .mappings(device_state_mappings())
        .override_by_name(
            "battery_pct",
            [prop("unit", "percent"), prop("thresholds", {"mode": "absolute", "steps": [
                {"value": None, "color": "red"}, {"value": 20, "color": "orange"}, {"value": 40, "color": "green"}]}),
             prop("custom.cellOptions", {"type": "color-text"})],
        )
        .override_by_name("rssi_dbm", [prop("unit", "dBm")])
        .override_by_name("notify_rate", [prop("unit", "hertz")])
        .height(5)
        .span(16)
    )


def battery() -> timeseries.Panel:
    q = (
        f'SELECT last("battery_pct") FROM {DEVICE_STATUS.quoted} WHERE {where(PERSON, DEVICE, TIME)} '
        'GROUP BY time($__interval), "device" fill(none)'
    )
    return (
        timeseries.Panel()
        .title("Battery")
        .with_target(InfluxQL(q).alias("$tag_device"))
        .unit("percent")
        .min(0)
        .max(100)
        .thresholds(thresholds((None, "red"), (20, "orange"), (40, "green")))
        .height(8)
        .span(12)
    )


def reconnects() -> timeseries.Panel:
    q = (
        f'SELECT max("reconnects") FROM {DEVICE_STATUS.quoted} WHERE {where(PERSON, DEVICE, TIME)} '
        'GROUP BY time($__interval), "device" fill(none)'
    )
    return (
        timeseries.Panel()
        .title("Reconnects since the daemon started")
        .with_target(InfluxQL(q).alias("$tag_device"))
        .unit("none")
        .decimals(0)
        .draw_style(cm.GraphDrawStyle.LINE)
        .line_interpolation(cm.LineInterpolation.STEP_AFTER)
        .height(8)
        .span(12)
    )


def coverage() -> timeseries.Panel:
    q = f'SELECT "coverage_pct" AS "coverage" FROM {NIGHT.quoted} WHERE {where(PERSON, TIME)}'
    return (
        timeseries.Panel()
        .title("Usable signal per night")
        .description("Share of time in bed with usable signal (night.coverage_pct); below 80% the night is weak.")
        .with_target(InfluxQL(q).alias("coverage"))
        .unit("percent")
        .min(0)
        .max(100)
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(80)
        .thresholds(thresholds((None, "red"), (60, "orange"), (80, "green")))
        .color_scheme(dash.FieldColor().mode(dm.FieldColorModeId.THRESHOLDS))
        .height(8)
        .span(12)
    )


def samples_per_day() -> timeseries.Panel:
    q = (
        f'SELECT count("bpm") FROM {HEART_RATE.quoted} WHERE {where(PERSON, DEVICE, TIME)} '
        'GROUP BY time(1d), "device" fill(0)'
    )
    return (
        timeseries.Panel()
        .title("Heart-rate samples per day")
        .with_target(InfluxQL(q).alias("$tag_device"))
        .unit("none")
        .draw_style(cm.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .height(8)
        .span(12)
    )


def build() -> dash.Dashboard:
    return (
        base_dashboard(UID, "magsleep · Devices", "Are the wearables connected, charged and delivering data?")
        .time("now-7d", "now")
        .with_variable(device_variable())
        .with_panel(state_timeline())
        .with_panel(last_seen())
        .with_panel(now_table())
        .with_panel(battery())
        .with_panel(reconnects())
        .with_panel(coverage())
        .with_panel(samples_per_day())
    )
