"""The composition layer's boundary: ``ble/`` knows only wearables and a point sink."""

from __future__ import annotations

import ast
from pathlib import Path

import collector

ROOT = Path(collector.__file__).parent


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every ``collector.*`` module each file of ``package`` imports (at any depth, lazy ones too)."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
        out[str(path.relative_to(ROOT))] = {n for n in names if n.startswith("collector.")}
    return out


def test_ble_imports_neither_doses_nor_mqtt_nor_the_schedule_nor_app() -> None:
    # ble may use the nights' pure helpers (activity counts) but not the schedule that runs them
    banned = ("collector.doses", "collector.mqtt", "collector.nights.schedule", "collector.app", "collector.cli")
    found = {f: sorted(m for m in mods if m.startswith(banned))
             for f, mods in imported_modules("ble").items()}
    assert {f: m for f, m in found.items() if m} == {}
    # the walk sees the daemon's imports at all (a broken walk would pass the check above)
    assert "collector.ble.session" in imported_modules("ble")["ble/daemon.py"]



def test_doses_import_neither_ble_nor_app_nor_cli() -> None:
    banned = ("collector.ble", "collector.app", "collector.cli")
    found = {f: sorted(m for m in mods if m.startswith(banned))
             for f, mods in imported_modules("doses").items()}
    assert {f: m for f, m in found.items() if m} == {}


def test_the_dose_night_effects_and_ble_commands_import_no_other_command_module() -> None:
    """CLI modules parse, call and render; what they share is in cli/common.py (or the layers below)."""
    mods = imported_modules("cli")
    for name in ("dose_cmd", "night_cmd", "effects_cmd", "ble_cmd"):
        others = sorted(m for m in mods[f"cli/{name}.py"]
                        if m.startswith("collector.cli.") and m != "collector.cli.common")
        assert others == [], name
    assert "collector.app.doses" in mods["cli/night_cmd.py"]  # the walk sees them
