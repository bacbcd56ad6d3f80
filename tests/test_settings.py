"""Settings: TOML + environment, one clear message per bad key, secrets never shown."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from collector.cli import app
from collector.errors import ConfigError
from collector.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "magsleep.example.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("MAGSLEEP_"):
            monkeypatch.delenv(k)


def test_example_config_is_valid() -> None:
    s = load_settings(EXAMPLE)
    assert s.persons[0].name == "alice"
    assert s.influx.embedded is True


def _keys(model: type[BaseModel], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, f in model.model_fields.items():
        ann = f.annotation
        key = f"{prefix}{name}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out |= _keys(ann, key + ".")
        else:
            out.add(key)
    return out


def test_example_config_documents_every_setting() -> None:
    text = EXAMPLE.read_text()
    missing = []
    for key in sorted(_keys(Settings)):
        leaf = key.rpartition(".")[2]
        if key in ("persons",):
            continue
        if leaf + " " not in text and leaf + "=" not in text and f"# {leaf}" not in text and f".{leaf}]" not in text:
            missing.append(key)
    assert not missing, f"config/magsleep.example.toml does not mention: {missing}"


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[influx]\nurl = "http://a:1"\ndatabase = "x"\n')
    monkeypatch.setenv("MAGSLEEP_INFLUX__DATABASE", "fromenv")
    s = load_settings(cfg)
    assert s.influx.url == "http://a:1"
    assert s.influx.database == "fromenv"


def test_config_path_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('log_level = "DEBUG"\n')
    monkeypatch.setenv("MAGSLEEP_CONFIG", str(cfg))
    assert load_settings().log_level == "DEBUG"


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ('[influx]\nurl = "localhost:8086"\n', "influx.url: Value error, must be an http:// or https:// URL"),
        ("[influx]\nversion = 3\n", "influx.version: Input should be 1 or 2 (got 3)"),
        ("[storage]\nbatch_size = 0\n", "storage.batch_size: Input should be greater than or equal to 1"),
        ("[storage]\nbatchsize = 10\n", "storage.batchsize: unknown key"),
        ('[[persons]]\nname = "a b"\n', "persons.0.name: Value error, must be 1-64 letters"),
        ('[[persons]]\nname = "a"\ntimezone = "Mars/Olympus"\n', "unknown time zone 'Mars/Olympus'"),
        ('[[persons]]\nname = "a"\n[[persons]]\nname = "a"\n', "person names must be unique; repeated: a"),
        ("[analysis]\ndose_window_h = [5, 2]\n", "analysis.dose_window_h: Value error, must be [start, end]"),
        ('[influx]\nembedded = false\nversion = 2\nurl = "http://x:1"\n', "influx.org is required"),
        ("[influx\n", "cannot parse"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, toml: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as ei:
        load_settings(cfg)
    assert needle in str(ei.value)
    assert str(cfg) in str(ei.value)


def test_missing_explicit_config_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_secrets_are_masked_and_readable_from_files(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("tok-from-file\n")
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[influx]\npassword = "hunter2"\ntoken_file = "{secret}"\n[api]\ntokens = ["api-secret-1"]\n')
    s = load_settings(cfg)
    assert s.influx.token_value() == "tok-from-file"
    assert s.influx.password_value() == "hunter2"
    dumped = repr(s) + str(s.masked())
    for secret_text in ("hunter2", "api-secret-1", "tok-from-file"):
        assert secret_text not in dumped
    assert s.masked()["influx"]["password"] == "***"
    assert s.masked()["api"]["tokens"] == ["***"]


def test_config_check_cli_masks_secrets(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[influx]\npassword = "hunter2"\n')
    res = CliRunner().invoke(app, ["--config", str(cfg), "config", "check"])
    assert res.exit_code == 0, res.output
    assert "settings are valid" in res.output
    assert "hunter2" not in res.output
    assert "influx.password = '***'" in res.output


def test_config_check_cli_reports_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("[storage]\nflush_interval_s = -1\n")
    res = CliRunner().invoke(app, ["--config", str(cfg), "config", "check"])
    assert res.exit_code == 2
    assert "storage.flush_interval_s" in res.output


def test_unknown_person_error_lists_known() -> None:
    s = load_settings(EXAMPLE)
    with pytest.raises(ConfigError, match=r"unknown person 'zed' \(known: alice\)"):
        s.person("zed")
