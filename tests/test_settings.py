"""Settings: TOML + environment, one clear message per bad key, secrets never shown."""

from __future__ import annotations

import os
import subprocess
import sys
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


# -- issue 20 #9: config that passed the check but broke later, or blamed the wrong source -------

MAGSLEEP_BIN = str(Path(sys.executable).parent / "magsleep")


@pytest.mark.parametrize(("toml", "needle"), [
    ('[influx]\nembedded = "yes"\n', "influx.embedded: Input should be a valid boolean (got 'yes'); write true or "
                                    "false without quotes"),
    ('[influx]\nembedded = 1\n', "influx.embedded: Input should be a valid boolean (got 1)"),
    ('[storage]\noutbox = "no"\n', "storage.outbox: Input should be a valid boolean (got 'no')"),
    ('[nights]\nmotion_staging = "true"\n', "nights.motion_staging: Input should be a valid boolean"),
    ('[api]\ntoken_file = 7\n', "api.token_file: Input is not a valid path"),
])
def test_strict_values_are_checked_at_load(tmp_path: Path, toml: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError) as ei:
        load_settings(cfg)
    assert needle in str(ei.value)
    assert f"invalid settings in {cfg}:" in str(ei.value)


def test_config_check_refuses_an_unknown_default_form(tmp_path: Path) -> None:
    """`default_form = "kryptonite"` passed `config check` and then broke every `dose add`; every command
    checks it after loading the settings (the forms are the doses', tests/doses/test_rules.py)."""
    cfg = tmp_path / "m.toml"
    cfg.write_text('[doses]\ndefault_form = "kryptonite"\n')
    r = subprocess.run([MAGSLEEP_BIN, "--config", str(cfg), "config", "check"], capture_output=True, text=True,
                       timeout=60, env={**_env_without_magsleep(), "COLUMNS": "300"})
    assert r.returncode == 2
    assert "doses.default_form: unknown form 'kryptonite'; use one of: glycinate" in r.stderr


def _env_without_magsleep() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MAGSLEEP_")}


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("FALSE", False), ("0", False),
                                                 ("true", True), ("1", True), ("True", True)])
def test_env_booleans(monkeypatch: pytest.MonkeyPatch, value: str, expected: bool) -> None:
    monkeypatch.setenv("MAGSLEEP_INFLUX__EMBEDDED", value)
    monkeypatch.setenv("MAGSLEEP_STORAGE__OUTBOX", value)
    s = load_settings(None)
    assert s.influx.embedded is expected and s.storage.outbox is expected


def test_env_errors_name_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[influx]\nurl = "http://127.0.0.1:8086"\n')
    monkeypatch.setenv("MAGSLEEP_INFLUX__EMBEDDED", "yes")
    monkeypatch.setenv("MAGSLEEP_STORAGE__BATCH_SIZE", "0")
    with pytest.raises(ConfigError) as ei:
        load_settings(cfg)
    msg = str(ei.value)
    assert msg.startswith("invalid settings in the environment:")  # the file is fine
    assert "MAGSLEEP_INFLUX__EMBEDDED (influx.embedded): Input should be a valid boolean (got 'yes')" in msg
    assert "MAGSLEEP_STORAGE__BATCH_SIZE (storage.batch_size): Input should be greater than or equal to 1" in msg


def test_env_and_file_errors_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text('[nights]\nmotion_staging = "true"\n')
    monkeypatch.setenv("MAGSLEEP_INFLUX", '{"timeout_s": -1}')
    with pytest.raises(ConfigError) as ei:
        load_settings(cfg)
    msg = str(ei.value)
    assert msg.startswith(f"invalid settings in {cfg} and the environment:")
    assert "MAGSLEEP_INFLUX (influx.timeout_s):" in msg
    assert "\n  nights.motion_staging: Input should be a valid boolean" in msg


def test_unknown_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSLEEP_INFLUX__URLL", "http://x:1")
    with pytest.raises(ConfigError, match=r"MAGSLEEP_INFLUX__URLL \(influx.urll\): unknown key"):
        load_settings(None)


def test_missing_config_named_by_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAGSLEEP_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope.toml \(named by MAGSLEEP_CONFIG\) does not exist"):
        load_settings()


def test_api_token_file_is_a_setting(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("tok-a\n  tok-b  \n\n")
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'[api]\ntokens = ["tok-0"]\ntoken_file = "{tokens}"\n')
    s = load_settings(cfg)
    assert s.api.token_values() == ["tok-0", "tok-a", "tok-b"]
    assert "tok-a" not in repr(s) + str(s.masked())


def test_secret_file_errors_name_the_setting(tmp_path: Path) -> None:
    s = load_settings(None, api={"token_file": tmp_path / "nope"})
    with pytest.raises(ConfigError, match=r"secret file \(api.token_file\) .*nope does not exist"):
        s.api.token_values()
