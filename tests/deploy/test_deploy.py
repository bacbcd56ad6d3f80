"""docker-compose.yml, .env.example, Grafana provisioning and the systemd units."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SYSTEM_UNIT = REPO / "config" / "systemd" / "magsleep.service"
USER_UNIT = REPO / "config" / "systemd" / "user" / "magsleep.service"
PROVISIONING = REPO / "config" / "grafana" / "provisioning"
REQUIRED = ("INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_TOKEN", "GRAFANA_ADMIN_PASSWORD")


def env_example() -> dict[str, str]:
    out = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


def filled_env(tmp_path: Path, drop: str | None = None) -> Path:
    values = env_example()
    for k in REQUIRED:
        values[k] = "not-a-real-secret-1"
    if drop:
        values.pop(drop)
    p = tmp_path / "env"
    p.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    return p


def compose_vars() -> set[str]:
    text = "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))
    return set(re.findall(r"\$\{(\w+)", text))


def test_compose_validates_against_compose_spec() -> None:
    exe = Path(sys.executable).parent / "check-jsonschema"
    r = subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_spec_check_catches_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "docker-compose.yml"
    bad.write_text(COMPOSE.read_text().replace("restart: unless-stopped", "restarts: unless-stopped", 1))
    exe = Path(sys.executable).parent / "check-jsonschema"
    r = subprocess.run([str(exe), "--builtin-schema", "vendor.compose-spec", str(bad)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1


def _docker_compose() -> str:
    exe = shutil.which("docker-compose")
    assert exe, "install Debian's docker-compose (apt-get install docker-compose) to run this test"
    return exe


def test_docker_compose_config(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in compose_vars()}
    r = subprocess.run([_docker_compose(), "--env-file", str(filled_env(tmp_path)), "-f", str(COMPOSE), "config"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load(r.stdout)
    s = cfg["services"]
    assert set(s) == {"influxdb", "grafana", "collector"}
    assert re.fullmatch(r"influxdb:2\.\d+\.\d+", s["influxdb"]["image"])
    assert re.fullmatch(r"grafana/grafana-oss:11\.6\.\d+", s["grafana"]["image"])
    g = s["grafana"]["environment"]
    assert g["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert g["GF_SECURITY_ADMIN_PASSWORD"] == "not-a-real-secret-1"
    i = s["influxdb"]["environment"]
    assert i["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert i["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == g["INFLUXDB_TOKEN"] == "not-a-real-secret-1"
    c = s["collector"]
    assert c["network_mode"] == "host"
    assert c["build"]["dockerfile"] == "Dockerfile"
    targets = {v["target"] if isinstance(v, dict) else v.split(":")[1] for v in c["volumes"]}
    assert {"/run/dbus/system_bus_socket", "/config", "/state"} <= targets
    assert c["environment"]["MAGSLEEP_INFLUX__TOKEN"] == "not-a-real-secret-1"
    # After a reboot the collector starts only once InfluxDB answers (its own, not the embedded one).
    assert c["environment"]["MAGSLEEP_INFLUX__EMBEDDED"] == "false"
    assert c["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert s["influxdb"]["healthcheck"]["test"][:2] == ["CMD", "influx"]
    assert s["influxdb"]["restart"] == s["collector"]["restart"] == "unless-stopped"
    # every path the compose file mounts from the repo exists
    for svc in s.values():
        for v in svc.get("volumes", []):
            src = v["source"] if isinstance(v, dict) else v.split(":")[0]
            if src.startswith(str(REPO)):
                assert Path(src).exists(), src


@pytest.mark.parametrize("missing", REQUIRED)
def test_docker_compose_refuses_a_missing_secret(tmp_path: Path, missing: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in compose_vars()}
    r = subprocess.run(
        [_docker_compose(), "--env-file", str(filled_env(tmp_path, drop=missing)), "-f", str(COMPOSE), "config", "-q"],
        capture_output=True, text=True, timeout=60, env=env, cwd=REPO,
    )
    assert r.returncode != 0
    assert missing in r.stderr


def test_env_example_documents_every_variable() -> None:
    documented = env_example()
    assert compose_vars() == set(documented)
    lines = ENV_EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith("#"):
            j = i - 1
            while j >= 0 and lines[j] and not lines[j].startswith("#"):
                j -= 1  # variables of one block share the comment above the block
            assert j >= 0 and lines[j].startswith("# ") and len(lines[j]) > 10, f"{line}: needs a comment above it"
    for k in REQUIRED:
        assert documented[k] == "", f"{k} must be empty in the example"


def test_dockerfile_and_dockerignore() -> None:
    text = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert froms and all(re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", f) for f in froms)
    assert re.search(r"^USER magsleep$", text, flags=re.M)
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else stays out of the build context (.env, state, .venv)
    for copied in re.findall(r"^COPY (?!--from)(.+) \S+$", text, flags=re.M):
        for item in copied.split():
            assert (REPO / item).exists(), item
            assert f"!{item}" in ignore or f"!{item}/" in ignore, item


def test_grafana_provisioning() -> None:
    ds = yaml.safe_load((PROVISIONING / "datasources" / "magsleep.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    v2, v1 = by_uid["magsleep-influxdb"], by_uid["magsleep-influxdb-v1"]
    assert v2["type"] == v1["type"] == "influxdb"
    assert v2["jsonData"]["version"] == v1["jsonData"]["version"] == "InfluxQL"
    assert v2["secureJsonData"]["httpHeaderValue1"] == "Token ${INFLUXDB_TOKEN}"
    assert v2["isDefault"] is True
    referenced = set(re.findall(r"\$\{(\w+)\}", (PROVISIONING / "datasources" / "magsleep.yaml").read_text()))
    grafana_env = set(re.findall(r"^      (\w+): ", COMPOSE.read_text().split("  grafana:")[1].split("  collector:")[0],
                                 flags=re.M))
    assert referenced <= grafana_env
    dash = yaml.safe_load((PROVISIONING / "dashboards" / "magsleep.yaml").read_text())
    (provider,) = dash["providers"]
    path = provider["options"]["path"]
    mounted = re.findall(r"\./dashboards/(\w+\.json):" + re.escape(path) + r"/\1:ro", COMPOSE.read_text())
    from collector.dashboards import BUILDERS

    assert sorted(mounted) == sorted(BUILDERS)


def unit(path: Path) -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        assert current is not None, line
        k, _, v = line.partition("=")
        current.setdefault(k, []).append(v)
    return sections


def test_system_unit_is_hardened() -> None:
    s = unit(SYSTEM_UNIT)["Service"]
    for key, value in {
        "NoNewPrivileges": "yes", "PrivateTmp": "yes", "ProtectHome": "yes", "ProtectSystem": "strict",
        "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes", "CapabilityBoundingSet": "", "LockPersonality": "yes",
    }.items():
        assert s.get(key) == [value], key
    assert s["User"] == ["magsleep"] and s["SupplementaryGroups"] == ["bluetooth"]
    assert s["ExecStart"][0].endswith("magsleep run")
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0]  # the system D-Bus
    assert unit(SYSTEM_UNIT)["Install"]["WantedBy"] == ["multi-user.target"]


@pytest.mark.parametrize("path", [SYSTEM_UNIT, USER_UNIT], ids=["system", "user"])
def test_units_start_the_embedded_influxdb_after_a_reboot(path: Path) -> None:
    """'magsleep run' starts the embedded influxd under the state dir; the unit must let it."""
    u = unit(path)
    s = u["Service"]
    assert s["ExecStart"][0].endswith("magsleep run")
    assert s["StateDirectory"] == ["magsleep"]  # writable for influxd's data even with ProtectSystem=strict
    assert s["Environment"].count("MAGSLEEP_STORAGE__STATE_DIR=/var/lib/magsleep" if path == SYSTEM_UNIT
                                  else "MAGSLEEP_STORAGE__STATE_DIR=%S/magsleep") == 1
    assert s["Restart"] == ["on-failure"]
    assert "KillMode" not in s  # control-group: influxd, a child in the unit's cgroup, stops with it
    assert u["Install"]["WantedBy"] == [("multi-user.target" if path == SYSTEM_UNIT else "default.target")]
    assert "embedded InfluxDB" in path.read_text()


def test_user_unit() -> None:
    u = unit(USER_UNIT)
    s = u["Service"]
    assert s["NoNewPrivileges"] == ["yes"] and s["PrivateTmp"] == ["yes"]
    assert "ProtectHome" not in s  # the program and its data live in $HOME
    assert "User" not in s
    assert s["ExecStart"] == ["%h/.local/bin/magsleep run"]
    assert u["Install"]["WantedBy"] == ["default.target"]


def _verifiable(src: Path, tmp_path: Path) -> Path:
    """A copy runnable here: ExecStart points at this venv's magsleep, the user/group exist."""
    text = src.read_text()
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={Path(sys.executable).parent / 'magsleep'}", text, flags=re.M)
    text = re.sub(r"^(User|Group)=magsleep$", r"\1=root", text, flags=re.M)
    text = re.sub(r"^SupplementaryGroups=.*$", "SupplementaryGroups=", text, flags=re.M)
    out = tmp_path / "magsleep.service"
    out.write_text(text)
    return out


@pytest.mark.parametrize("user", [False, True], ids=["system", "user"])
def test_systemd_analyze_verify(tmp_path: Path, user: bool) -> None:
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze is part of systemd; install it to run this test"
    path = _verifiable(USER_UNIT if user else SYSTEM_UNIT, tmp_path)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    cmd = [exe, *(["--user"] if user else []), "verify", str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)})
    assert r.returncode == 0, r.stderr
    assert "Unknown key" not in r.stderr and "Unknown section" not in r.stderr, r.stderr


def test_systemd_security_exposure_is_low(tmp_path: Path) -> None:
    exe = shutil.which("systemd-analyze")
    assert exe
    r = subprocess.run([exe, "security", "--offline=true", "--no-pager", str(_verifiable(SYSTEM_UNIT, tmp_path))],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([\d.]+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) < 3.0  # systemd rates < 4 as OK; the defaults score 9.6
