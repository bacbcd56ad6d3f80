"""Options that mean the same thing look the same in every command; errors print as written."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from collector.cli import app
from tests.cli.console import Console, flat


def _options(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[str, list[str]]]:
    out = [(" ".join(path), list(p.opts)) for p in cmd.params if getattr(p, "opts", None)]
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        out += _options(sub, (*path, name))
    return out


def test_person_is_person_or_p_everywhere() -> None:
    opts = _options(typer.main.get_command(app))
    with_person = {cmd for cmd, o in opts if "--person" in o}
    assert {"report", "effects", "nights", "dose list", "plan", "sim backfill"} <= with_person
    for cmd, o in opts:
        if "--person" in o:
            assert "-p" in o, f"magsleep {cmd}: --person without -p"
        elif "-p" in o:
            pytest.fail(f"magsleep {cmd}: -p means {o}, not --person")


@pytest.mark.parametrize("argv", [["plan", "today", "-p", "zoe"], ["effects", "--person", "zoe"],
                                  ["plan", "show", "-p", "zoe"]])
def test_unknown_person_error_shows_the_settings_section(console: Console, argv: list[str]) -> None:
    res = console.run(*argv)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "error: unknown person 'zoe' (known: alice); add a [[persons]] entry" in flat(res.stderr)


def test_no_persons_error_shows_the_settings_section(console: Console) -> None:
    console.settings = {}
    res = console.run("effects")
    assert res.returncode == 2
    assert "add a [[persons]] entry to the settings file" in flat(res.stderr)


def test_markup_in_a_dose_note_is_kept(console: Console, tmp_path: Any) -> None:
    """Free text is printed as typed (rich would take "[b]" for markup)."""
    csv = tmp_path / "d.csv"
    csv.write_text("id,person,supplement,form,amount_mg,elemental_mg,taken_at,note\n"
                   ",alice,magnesium,glycinate,300,,2026-11-20T22:10:00+01:00,[b]with tea[/b] [[x]]\n")
    res = console.run("dose", "import", str(csv), MAGSLEEP_INFLUX__EMBEDDED="false",
                      MAGSLEEP_INFLUX__URL="http://127.0.0.1:9")
    assert res.returncode == 0, res.stderr
    res = console.run("dose", "list", COLUMNS="200")
    assert "[b]with tea[/b] [[x]]" in res.stdout, res.stdout
