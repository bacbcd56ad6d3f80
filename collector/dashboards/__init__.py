"""Grafana dashboards as code (grafana-foundation-sdk, InfluxQL targets).

``build_all()`` returns every dashboard as JSON-ready data keyed by file name;
``magsleep dashboards build`` writes them to ``dashboards/``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from collector.dashboards import devices, effects, night, overview

BUILDERS: dict[str, Callable[[], dash.Dashboard]] = {
    "overview.json": overview.build,
    "night.json": night.build,
    "effects.json": effects.build,
    "devices.json": devices.build,
}

DEFAULT_DIR = Path("dashboards")


# The SDK writes the interval-variable keys on every variable; @grafana/schema's VariableModel
# does not know them, and Grafana ignores them on other variable types.
_INTERVAL_ONLY_KEYS = ("auto", "auto_count", "auto_min")


def build_all() -> dict[str, dict[str, Any]]:
    """Every dashboard as plain JSON data, keyed by file name."""
    out: dict[str, dict[str, Any]] = {}
    for name, builder in BUILDERS.items():
        data: dict[str, Any] = json.loads(json.dumps(builder().build(), cls=JSONEncoder))
        for variable in data.get("templating", {}).get("list", []):
            if variable.get("type") != "interval":
                for key in _INTERVAL_ONLY_KEYS:
                    variable.pop(key, None)
        out[name] = data
    return out


def render(data: dict[str, Any]) -> str:
    """The committed text form of a dashboard: stable key order, two-space indent, final newline."""
    return json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_all(out_dir: Path = DEFAULT_DIR) -> list[Path]:
    """Write every dashboard JSON file into ``out_dir``; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, data in build_all().items():
        path = out_dir / name
        path.write_text(render(data), encoding="utf-8")
        paths.append(path)
    return paths


def stale(out_dir: Path = DEFAULT_DIR) -> list[str]:
    """File names in ``out_dir`` that differ from what the code builds (missing counts as stale)."""
    bad = []
    for name, data in build_all().items():
        path = out_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != render(data):
            bad.append(name)
    return bad
