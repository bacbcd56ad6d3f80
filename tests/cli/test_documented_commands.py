"""Every command written in README.md and docs/*.md works through the installed console script.

The console script loads only the module registered for the command being run
(collector/cli/__init__.py), so the in-process app (which has everything) cannot prove this:
each documented command path runs as ``magsleep PATH --help`` in a subprocess.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import typer

from collector.cli import app, build_app
from tests.cli.console import Console, flat
from tests.cli.documented import command_path, command_paths

FULL = typer.main.get_command(app)
PATHS = command_paths(FULL)
Done = subprocess.CompletedProcess[str]


def _tree(cmd: Any) -> dict[str, Any]:
    return {n: _tree(c) for n, c in sorted((getattr(cmd, "commands", None) or {}).items())}


@pytest.fixture(scope="module")
def helps(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, ...], Done]:
    """``magsleep PATH --help`` for every documented path, four at a time (each is a ~0.5 s process)."""
    home = tmp_path_factory.mktemp("home")
    con = Console(home, {"persons": [{"name": "alice", "timezone": "Europe/Berlin"}]})
    con.write_config()
    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip(PATHS, pool.map(lambda p: con.run(*p, "--help"), PATHS), strict=True))


def test_the_docs_are_read() -> None:
    for path in [("night", "lights-out"), ("night", "lights-on"), ("dose", "add"), ("nights",),
                 ("nights", "compute"), ("influx", "status"), ("plan", "show")]:
        assert path in PATHS, f"magsleep {' '.join(path)} not found in the docs"
    # an unknown command word is kept, so a misspelt command in the docs fails below
    assert command_path(["nihgt", "tag"], FULL) == ("nihgt",)
    assert command_path(["night", "lihgts-out"], FULL) == ("night", "lihgts-out")
    assert command_path(["forget", "h10-alice"], FULL) == ("forget",)


@pytest.mark.parametrize("path", list(PATHS), ids=lambda p: " ".join(p))
def test_documented_command_answers_help(
    path: tuple[str, ...], helps: dict[tuple[str, ...], Done]
) -> None:
    res = helps[path]
    where = ", ".join(m.where for m in PATHS[path][:3])
    out = flat(res.stdout + res.stderr)
    assert res.returncode == 0, f"`magsleep {' '.join(path)}` ({where}) through the console script: {out}"
    assert "No such command" not in out
    assert f"Usage: magsleep {' '.join(path)}" in out


@pytest.mark.parametrize("name", sorted(FULL.commands))  # type: ignore[attr-defined]
def test_lazy_app_has_every_subcommand(name: str) -> None:
    """What the console script builds for ``name`` has the same commands under it as the full app."""
    lazy = typer.main.get_command(build_app(name))
    assert _tree(lazy.commands[name]) == _tree(FULL.commands[name])  # type: ignore[attr-defined]


def test_real_invocations(console: Console, tmp_path: Path) -> None:
    """A few documented commands for real (harmless ones: nothing outside the temporary home)."""
    res = console.run("version")
    assert res.returncode == 0 and res.stdout.startswith("magsleep ")
    res = console.run("schema")
    assert res.returncode == 0 and "heart_rate" in res.stdout
    res = console.run("config", "check")
    assert res.returncode == 0, res.stderr
    assert "alice" in res.stdout
    res = console.run("dose", "list", "--since", "7d")
    assert res.returncode == 0, res.stderr
    assert "0 dose(s)" in res.stdout
    res = console.run("night", "tags", "--since", "yesterday")
    assert res.returncode == 0, res.stderr
    assert "0 night tag(s)" in res.stdout
    res = console.run("devices")
    assert res.returncode == 0, res.stderr
    assert "no devices registered" in res.stdout
    res = console.run("dose", "export", "-o", str(tmp_path / "doses.csv"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "doses.csv").read_text().startswith("id,person,")


def test_lights_out_and_on_for_real(console: Console, influx_server: Any, influx_db: str) -> None:
    """The README's `magsleep night lights-out [--at 23:10]` (it once answered "No such command")."""
    console.settings["influx"] = {"embedded": False, "url": influx_server.url, "database": influx_db}
    res = console.run("night", "lights-out", "--at", "23:10")
    assert res.returncode == 0, res.stderr
    assert "lights out at 23:10" in flat(res.stdout)
    res = console.run("night", "lights-on", "--at", "06:40", "-p", "alice")
    assert res.returncode == 0, res.stderr
    rows = influx_server.rows("SELECT * FROM night_tag", influx_db)
    assert sorted((str(r["tag"]), str(r["person"])) for r in rows) == [("lights_on", "alice"), ("lights_out", "alice")]
