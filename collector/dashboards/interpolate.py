"""Interpolate dashboard queries the way Grafana's InfluxDB data source does, to test them.

Covers what magsleep's dashboards use: ``$timeFilter``, ``$__interval``/``$__interval_ms``,
``$var``/``${var}``/``[[var]]`` template variables (regex-escaped inside ``/.../``, multi values as
``(a|b)``, "All" as the variable's allValue), and the Grafana alias patterns ``$tag_x``/``$col``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ALL = "$__all"
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|{}\[\]/]")
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]")


def escape_regex(value: str) -> str:
    """Grafana's ``escapeRegex`` (also escapes ``/`` so the value fits in an InfluxQL regex)."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


@dataclass(frozen=True)
class Variable:
    """A template variable's current value, as Grafana would have it selected."""

    name: str
    value: str | Sequence[str]
    all_value: str | None = None


@dataclass(frozen=True)
class Context:
    """Time range (epoch ms), interval and the variables' values."""

    from_ms: int
    to_ms: int
    interval: str = "1m"
    variables: Mapping[str, Variable] = field(default_factory=dict)

    @property
    def interval_ms(self) -> int:
        m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", self.interval)
        if m is None:
            raise ValueError(f"interval {self.interval!r} must look like 10s, 1m, 5m, 1h")
        return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}[m.group(2)]


def _in_regex(query: str, start: int) -> bool:
    """Whether position ``start`` lies inside a ``/.../`` regex literal of an InfluxQL query."""
    inside = False
    i = 0
    while i < start:
        c = query[i]
        if c == "\\":
            i += 2
            continue
        if c == "/":
            inside = not inside
        elif c in "'\"" and not inside:
            end = query.find(c, i + 1)
            i = end if end != -1 else len(query)
        i += 1
    return inside


def interpolate(query: str, ctx: Context) -> str:
    """The query as Grafana would send it to InfluxDB."""
    builtins = {
        "timeFilter": f"time >= {ctx.from_ms}ms and time <= {ctx.to_ms}ms",
        "__interval": ctx.interval,
        "__interval_ms": str(ctx.interval_ms),
    }

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        var = ctx.variables.get(name)
        if var is None:
            return m.group(0)  # e.g. $tag_x in an alias: left for Grafana
        if var.value in (ALL, [ALL]) and var.all_value is not None:
            return var.all_value
        if isinstance(var.value, str):
            # A single value is escaped only where it stands inside a /regex/.
            return escape_regex(var.value) if _in_regex(query, m.start()) else var.value
        # Several values are always joined as a regex group, wherever they stand.
        escaped = [escape_regex(v) for v in var.value]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"

    return _VAR.sub(repl, query)


def panel_targets(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Any]]]:
    """(panel title, panel, target) for every query target of every panel, rows included."""
    for panel in dashboard.get("panels", []):
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []) or []:
                yield inner.get("title", ""), inner, target


def annotation_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for anno in dashboard.get("annotations", {}).get("list", []):
        target = anno.get("target") or {}
        if "query" in target:
            yield anno["name"], target["query"]


def variable_queries(dashboard: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            yield var["name"], var["query"]
