"""The core CLI: version, schema, and the private local InfluxDB (start/status/ping/stop)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from collector import __version__
from collector.cli import app
from collector.storage import local_influx
from collector.storage.schema import render_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_version() -> None:
    res = CliRunner().invoke(app, ["version"])
    assert res.exit_code == 0
    assert __version__ in res.output


def test_schema_doc_is_in_step_with_code() -> None:
    assert (ROOT / "docs" / "schema.md").read_text() == render_markdown(), (
        "docs/schema.md is stale: run `magsleep schema > docs/schema.md`"
    )


def test_local_influx_lifecycle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = local_influx.free_port()
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[influx]\nurl = "http://127.0.0.1:{port}"\n[storage]\nstate_dir = "{tmp_path / "state"}"\n')
    run = CliRunner()
    base = ["--config", str(cfg)]
    res = run.invoke(app, [*base, "influx", "ping"])
    assert res.exit_code == 2
    assert "not running" in res.output
    try:
        res = run.invoke(app, [*base, "influx", "start"])
        assert res.exit_code == 0, res.output
        assert f"127.0.0.1:{port}" in res.output
        res = run.invoke(app, [*base, "influx", "status"])
        assert res.exit_code == 0
        res = run.invoke(app, [*base, "influx", "ping"])
        assert res.exit_code == 0, res.output
        assert "answers /ping" in res.output
        # A second start finds the running one instead of starting another.
        res = run.invoke(app, [*base, "influx", "start"])
        assert res.exit_code == 0
    finally:
        res = run.invoke(app, [*base, "influx", "stop"])
    assert "stopped" in res.output
    assert run.invoke(app, [*base, "influx", "status"]).exit_code == 1
    assert not local_influx.ping(f"http://127.0.0.1:{port}")


def test_start_refuses_a_taken_port(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        cfg = tmp_path / "m.toml"
        cfg.write_text(f'[influx]\nurl = "http://127.0.0.1:{port}"\n[storage]\nstate_dir = "{tmp_path}"\n')
        res = CliRunner().invoke(app, ["--config", str(cfg), "influx", "start"])
    assert res.exit_code == 2
    assert f"port {port} is taken" in res.output


def test_main_loads_only_the_command_it_runs(capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess
    import sys

    code = (
        "import sys; from collector.cli import main\n"
        "try:\n    main(['--config', '/nonexistent-but-unread', 'version'])\n"
        "except SystemExit:\n    pass\n"
        "print('statsmodels' in sys.modules, 'collector.effects.analysis' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("False False")
    assert __version__ in out


def test_command_of_skips_root_options() -> None:
    from collector.cli import _command_of

    assert _command_of(["--config", "x.toml", "dose", "add", "3"]) == "dose"
    assert _command_of(["-c", "x.toml", "--help"]) is None
    assert _command_of(["effects", "--format", "json"]) == "effects"
