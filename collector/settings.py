"""Settings: a TOML file plus ``MAGSLEEP_*`` environment variables, validated once, with no I/O.

Precedence (highest first): keyword arguments, environment (``MAGSLEEP_INFLUX__URL``, nested
keys joined by ``__``), the TOML file, defaults. The file is ``--config``, else
``$MAGSLEEP_CONFIG``, else ``config/magsleep.toml`` when it exists.

Secrets (InfluxDB token/password, API tokens) are :class:`pydantic.SecretStr`; they can also come
from a file path (``token_file``), read when the secret is first needed, never at validation.
Booleans are strict (``true``/``false``; in ``MAGSLEEP_*`` variables also ``1``/``0``); an error
names the environment variable that set the bad value, else the file.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from datetime import time as dtime
from pathlib import Path
from typing import Any, ClassVar, Literal
from zoneinfo import ZoneInfo, available_timezones

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from collector.errors import ConfigError
from collector.storage.files import read_text

DEFAULT_CONFIG_PATH = Path("config/magsleep.toml")
ENV_CONFIG = "MAGSLEEP_CONFIG"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def default_state_dir() -> Path:
    """Where magsleep keeps its outbox, journal, registry and the local InfluxDB."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "magsleep"


#: What to do when a command needs a person and none is configured.
NO_PERSONS = "no persons configured; add a [[persons]] entry to the settings file"

def _unique(names: list[str], what: str) -> None:
    """Raise ``ValueError`` naming the repeated ones when ``names`` repeat."""
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{what} must be unique; repeated: {', '.join(dupes)}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret(value: SecretStr | None, file: Path | None, key: str = "token_file") -> str | None:
    """The secret's value, from the setting itself or from the file it points at (setting ``key``)."""
    if value is not None and value.get_secret_value():
        return value.get_secret_value()
    if file is not None:
        path = file.expanduser()
        try:
            return read_text(path, what=f"secret file ({key})", error=ConfigError,
                             advice="it must hold the secret as text (UTF-8) and nothing else").strip()
        except FileNotFoundError:
            raise ConfigError(f"secret file ({key}) {path} does not exist; fix the path") from None
    return None


class InfluxSettings(_Section):
    """Where points go. ``embedded`` uses the private local InfluxDB 1.x (``magsleep influx start``)."""

    version: Literal[1, 2] = 1
    embedded: StrictBool = True
    url: str = "http://127.0.0.1:8086"
    # 1.x (and the v1-compatible API of 2.x/3.x)
    database: str = "magsleep"
    retention_policy: str = ""
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    # 2.x
    org: str = ""
    bucket: str = "magsleep"
    token: SecretStr | None = None
    token_file: Path | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=300)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        if not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8086")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _check_v2(self) -> InfluxSettings:
        if self.version == 2 and not self.embedded and not self.org:
            raise ValueError("influx.org is required when influx.version = 2")
        return self

    def password_value(self) -> str | None:
        return read_secret(self.password, self.password_file, "influx.password_file")

    def token_value(self) -> str | None:
        return read_secret(self.token, self.token_file, "influx.token_file")


class StorageSettings(_Section):
    state_dir: Path = Field(default_factory=default_state_dir)
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval_s: float = Field(default=1.0, gt=0, le=60)
    outbox: StrictBool = True
    outbox_max_mb: int = Field(default=1024, ge=1)
    max_retry_backoff_s: float = Field(default=60.0, gt=0, le=3600)

    def path(self, name: str) -> Path:
        """The state file ``name`` under ``state_dir``: every module asks here, none joins the path itself."""
        return self.state_dir.expanduser() / name


class PersonSettings(_Section):
    name: str
    age: int = Field(default=40, ge=1, le=120)
    sex: Literal["female", "male"] = "female"
    timezone: str = "UTC"
    night_start: dtime = dtime(18, 0)
    night_end: dtime = dtime(14, 0)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be 1-64 letters, digits, '_', '.', '-' starting with a letter or digit")
        return v

    @field_validator("timezone")
    @classmethod
    def _check_tz(cls, v: str) -> str:
        if v not in available_timezones():
            raise ValueError(f"unknown time zone {v!r}; use an IANA name like 'Europe/Berlin'")
        return v

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class DoseSettings(_Section):
    ceiling_elemental_mg: float = Field(default=2000.0, gt=0)
    daily_warning_elemental_mg: float = Field(default=350.0, gt=0)
    #: A form name (collector/doses/forms.py), checked where doses use it (configured_form).
    default_form: str = "glycinate"


class ApiSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8765, ge=0, le=65535)
    tokens: list[SecretStr] = Field(default_factory=list)
    #: A file with more bearer tokens, one per line (read when the API starts, never logged).
    token_file: Path | None = None
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    cors_origins: list[str] = Field(default_factory=list)
    # Host names (besides loopback and api.host) the API answers to; "*" turns the check off.
    allowed_hosts: list[str] = Field(default_factory=list)
    # Origins (besides the API's own and cors_origins) whose pages may write, e.g. behind a proxy.
    allowed_origins: list[str] = Field(default_factory=list)

    def token_values(self) -> list[str]:
        """The bearer tokens: ``tokens`` and the lines of ``token_file``. Raises ConfigError if unreadable."""
        values = [t.get_secret_value() for t in self.tokens if t.get_secret_value()]
        text = read_secret(None, self.token_file, "api.token_file")
        if text is not None:
            values += [line.strip() for line in text.splitlines() if line.strip()]
        return values


#: Names of the built-in BLE profiles; a [[ble.generic]] profile may not reuse them.
BUILTIN_PROFILE_NAMES = frozenset({"heart_rate", "bangle", "infinitime", "polar_pmd"})
_UUID_RE = re.compile(r"^(0x)?([0-9a-f]{4}|[0-9a-f]{8}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$")
_STRUCT_RE = re.compile(r"^[<>!=]?(\d*[xbBhHiIlLqQefd])+$")


#: Pseudo-fields of a ``[[ble.generic]]`` acceleration sensor (see ``acceleration_hz``).
ACCELERATION_FIELDS = ("x_g", "y_g", "z_g")


class GenericProfileSettings(_Section):
    """A sensor profile defined in config (``[[ble.generic]]``): one characteristic, one struct, one point.

    Each notification (or indication) of ``characteristic`` is unpacked with ``format`` (Python
    struct syntax, little-endian unless it starts with '>' or '!'); value ``i`` times ``scale[i]``
    plus ``offset[i]`` becomes field ``fields[i]`` of ``measurement`` ("" skips a value).
    ``devices`` lists registered aliases or addresses the profile applies to (besides devices whose
    registry entry names the profile). ``acceleration_hz``: the sensor notifies one raw acceleration
    sample at this steady rate; the values named ``x_g``, ``y_g``, ``z_g`` (in g after scale and
    offset) become ActiGraph counts per minute (docs/trackers.md).
    """

    name: str
    service: str
    characteristic: str
    format: str
    fields: list[str]
    measurement: str = "motion"
    scale: float | list[float] = 1.0
    offset: float | list[float] = 0.0
    devices: list[str] = Field(default_factory=list)
    acceleration_hz: float | None = Field(default=None, gt=0, le=1000)

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("must be 1-64 letters, digits, '_', '.', '-' starting with a letter or digit")
        if v in BUILTIN_PROFILE_NAMES:
            raise ValueError(f"{v!r} is a built-in profile; choose another name")
        return v

    @field_validator("service", "characteristic")
    @classmethod
    def _check_uuid(cls, v: str) -> str:
        if not _UUID_RE.match(v.strip().lower()):
            raise ValueError("must be a UUID: 16-bit ('2a6e' or '0x2A6E') or 128-bit "
                             "('00002a6e-0000-1000-8000-00805f9b34fb')")
        return v.strip().lower()

    @field_validator("format")
    @classmethod
    def _check_format(cls, v: str) -> str:
        import struct

        v = v.replace(" ", "")
        if not _STRUCT_RE.match(v):
            raise ValueError("must be a struct format of numbers, e.g. '<hH' (codes x b B h H i I l L q Q e f d; "
                             "'<' little-endian, '>' big-endian)")
        if v[0] not in "<>!=":
            v = "<" + v
        struct.calcsize(v)
        return v

    @model_validator(mode="after")
    def _check_fields(self) -> GenericProfileSettings:
        import struct

        from collector.storage.schema import MEASUREMENTS, MOTION, SENSOR_MEASUREMENTS

        n = len(struct.unpack(self.format, bytes(struct.calcsize(self.format))))
        if len(self.fields) != n:
            raise ValueError(f"format {self.format!r} unpacks {n} value(s) but fields lists {len(self.fields)}; "
                             "give one name per value ('' to skip one)")
        for what, v in (("scale", self.scale), ("offset", self.offset)):
            if isinstance(v, list) and len(v) != n:
                raise ValueError(f"{what} lists {len(v)} numbers, need one per value ({n}) or a single number")
        m = MEASUREMENTS.get(self.measurement)
        if m is None or self.measurement not in SENSOR_MEASUREMENTS:
            raise ValueError(f"measurement {self.measurement!r} cannot be fed by a sensor; use one of "
                             f"{', '.join(SENSOR_MEASUREMENTS)}")
        numeric = {f.name: f.type for f in m.fields if f.type in ("int", "float")}
        axes = [f for f in self.fields if f in ACCELERATION_FIELDS]
        if self.acceleration_hz is not None:
            if self.measurement != MOTION.name or sorted(axes) != sorted(ACCELERATION_FIELDS):
                raise ValueError("acceleration_hz needs measurement = \"motion\" and the fields x_g, y_g, z_g "
                                 "once each (the sample in g after scale and offset)")
        elif axes:
            raise ValueError(f"{axes[0]!r} is raw acceleration: set acceleration_hz (the sensor's sample rate) so "
                             "magsleep can turn it into ActiGraph counts")
        for f in self.fields:
            if f and f not in numeric and f not in axes:
                raise ValueError(f"{self.measurement} has no numeric field {f!r}; its numeric fields: "
                                 f"{', '.join(numeric)}")
        if not any(self.fields):
            raise ValueError("fields names no field at all")
        return self


class ProxySettings(_Section):
    """An ESPHome Bluetooth proxy (``[[ble.proxies]]``): an ESP32 running ``bluetooth_proxy: active: true``.

    ``noise_psk`` (or the file ``noise_psk_file`` holding it) is the node's ``api: encryption: key:``
    (base64, 32 bytes); without one the connection is plaintext (docs/ble.md, "ESPHome proxies").
    """

    host: str = Field(min_length=1)
    port: int = Field(default=6053, ge=1, le=65535)
    #: Label in logs and in 'magsleep scan' (default: the host).
    name: str = ""
    noise_psk: SecretStr | None = None
    noise_psk_file: Path | None = None

    @property
    def label(self) -> str:
        return self.name or self.host

    def psk(self) -> str | None:
        """The Noise pre-shared key, or None for plaintext. Raises ConfigError if the file is unreadable."""
        return read_secret(self.noise_psk, self.noise_psk_file, "ble.proxies.noise_psk_file")


class BleSettings(_Section):
    adapter: str = "hci0"
    scan_timeout_s: float = Field(default=10.0, gt=0, le=300)
    connect_timeout_s: float = Field(default=20.0, gt=0, le=300)
    silence_timeout_s: float = Field(default=30.0, gt=0, le=3600)
    max_backoff_s: float = Field(default=60.0, gt=0, le=3600)
    #: Seconds between history pulls (Bangle.js sleeplog) while a tracker stays connected.
    history_pull_s: float = Field(default=1800.0, ge=10, le=86400)
    generic: list[GenericProfileSettings] = Field(default_factory=list)
    #: ESPHome Bluetooth proxies heard besides the local adapter (collector/ble/esphome.py).
    proxies: list[ProxySettings] = Field(default_factory=list)

    @field_validator("proxies")
    @classmethod
    def _unique_proxies(cls, v: list[ProxySettings]) -> list[ProxySettings]:
        keys = [f"{p.host}:{p.port}" for p in v]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"[[ble.proxies]] lists the same proxy twice: {', '.join(dupes)}")
        return v

    @field_validator("generic")
    @classmethod
    def _unique_generic(cls, v: list[GenericProfileSettings]) -> list[GenericProfileSettings]:
        _unique([g.name for g in v], "[[ble.generic]] names")
        return v


class AnalysisSettings(_Section):
    dose_window_h: tuple[float, float] = (0.0, 4.0)
    washout_nights: int = Field(default=0, ge=0, le=60)
    min_nights_per_arm: int = Field(default=3, ge=1)

    @field_validator("dose_window_h")
    @classmethod
    def _check_window(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not (0 <= v[0] < v[1] <= 24):
            raise ValueError("must be [start, end] hours before lights out with 0 <= start < end <= 24")
        return v


class NightsSettings(_Section):
    """Nightly staging and metrics (collector/nights, docs/nights.md)."""

    @model_validator(mode="before")
    @classmethod
    def _removed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict) and "motion_scale" in data:
            logging.getLogger(__name__).warning(
                "nights.motion_scale is no longer used and is ignored: trackers store ActiGraph activity counts, "
                "which Cole-Kripke reads as published (docs/nights.md, motion); delete the line from the settings")
            data = {k: v for k, v in data.items() if k != "motion_scale"}
        return data

    classifier: Literal["wrn-gru-mesa", "ws-gru-mesa", "wrn-gru-mesa-weighted"] = "wrn-gru-mesa"
    #: A separate wake/sleep model overriding the 3-stage model's wake ("none": the rule below decides).
    wake_classifier: Literal["ws-gru-mesa", "none"] = "none"
    #: Staging rule (collector/nights/wake.py), each default chosen leave-one-subject-out on real
    #: PSG nights (docs/validation.md): P(wake) from the classifier alone or with the night's own HR
    #: and RMSSD; two-state transition smoothing; thresholds on P(wake) and P(REM | sleep).
    wake_model: Literal["classifier", "night-relative"] = "night-relative"
    smoothing: Literal["none", "hmm"] = "none"
    wake_threshold: float = Field(default=0.4, gt=0, lt=1)
    rem_threshold: float = Field(default=0.3, gt=0, lt=1)
    motion_staging: StrictBool = False
    min_coverage_pct: float = Field(default=80.0, ge=0, le=100)
    #: ``magsleep run`` computes new nights this often (minutes; 0: only ``magsleep nights compute``).
    compute_every_min: float = Field(default=60.0, ge=0)
    #: A night closes early (before its window ends, as a provisional night) once this many minutes
    #: of wake or no signal followed the last sleep, or at a lights-on tag (docs/nights.md).
    close_after_min: float = Field(default=30.0, ge=1, le=600)


_TOPIC_RE = re.compile(r"^[^/#+\s][^#+\s]*[^/#+\s]$|^[^/#+\s]$")


class MqttSettings(_Section):
    """Home Assistant over MQTT (collector/mqtt, docs/home-assistant.md). Empty ``host``: off,
    and nothing is published."""

    host: str = ""
    port: int = Field(default=1883, ge=1, le=65535)
    tls: StrictBool = False
    #: CA bundle for a broker with its own certificate authority (default: the system's).
    ca_file: Path | None = None
    username: str = ""
    password: SecretStr | None = None
    password_file: Path | None = None
    #: Base of magsleep's state, command and reminder topics.
    topic_prefix: str = "magsleep"
    #: Publish Home Assistant discovery configs under ``discovery_prefix``.
    discovery: StrictBool = True
    discovery_prefix: str = "homeassistant"
    #: Buttons (took magnesium, lights out/on); false: none published, commands ignored.
    commands: StrictBool = True
    reminders: StrictBool = True
    #: Local time (each person's time zone) of the evening reminder on planned nights.
    reminder_time: dtime = dtime(21, 0)
    #: Optional ntfy server (e.g. https://ntfy.sh) and topic for the reminders as well.
    ntfy_url: str = ""
    ntfy_topic: str = ""
    ntfy_token: SecretStr | None = None
    ntfy_token_file: Path | None = None
    #: Seconds between refreshes of the published states.
    refresh_s: float = Field(default=60.0, ge=1, le=3600)

    @field_validator("topic_prefix", "discovery_prefix")
    @classmethod
    def _check_topic(cls, v: str) -> str:
        if not _TOPIC_RE.match(v):
            raise ValueError("must be a topic without '+', '#', spaces or a leading/trailing '/', "
                             "e.g. 'magsleep'")
        return v

    @field_validator("ntfy_url")
    @classmethod
    def _check_ntfy_url(cls, v: str) -> str:
        if v and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("must be an http:// or https:// URL, e.g. https://ntfy.sh")
        return v.rstrip("/")

    @field_validator("ntfy_topic")
    @classmethod
    def _check_ntfy_topic(cls, v: str) -> str:
        if v and not re.match(r"^[A-Za-z0-9_-]{1,64}$", v):
            raise ValueError("must be 1-64 letters, digits, '_' or '-'")
        return v

    @model_validator(mode="after")
    def _check_ntfy(self) -> MqttSettings:
        if bool(self.ntfy_url) != bool(self.ntfy_topic):
            raise ValueError("set both mqtt.ntfy_url and mqtt.ntfy_topic, or neither")
        return self

    @property
    def configured(self) -> bool:
        return bool(self.host)

    def password_value(self) -> str | None:
        return read_secret(self.password, self.password_file, "mqtt.password_file")

    def ntfy_token_value(self) -> str | None:
        return read_secret(self.ntfy_token, self.ntfy_token_file, "mqtt.ntfy_token_file")


class Settings(BaseSettings):
    """All of magsleep's settings."""

    model_config = SettingsConfigDict(
        env_prefix="MAGSLEEP_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    # Set by load_settings before validation; a class-level slot keeps pydantic from seeing it.
    _toml_data: ClassVar[dict[str, Any] | None] = None

    influx: InfluxSettings = Field(default_factory=InfluxSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    persons: list[PersonSettings] = Field(default_factory=list)
    doses: DoseSettings = Field(default_factory=DoseSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ble: BleSettings = Field(default_factory=BleSettings)
    analysis: AnalysisSettings = Field(default_factory=AnalysisSettings)
    nights: NightsSettings = Field(default_factory=NightsSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("persons")
    @classmethod
    def _unique_persons(cls, v: list[PersonSettings]) -> list[PersonSettings]:
        _unique([p.name for p in v], "person names")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, _EnvBools(settings_cls, env_settings)]
        if cls._toml_data is not None:
            sources.append(InitSettingsSource(settings_cls, init_kwargs=cls._toml_data))
        return tuple(sources)

    def person(self, name: str) -> PersonSettings:
        for p in self.persons:
            if p.name == name:
                return p
        known = ", ".join(p.name for p in self.persons) or "none configured"
        raise ConfigError(f"unknown person {name!r} (known: {known}); add a [[persons]] entry")

    def one_person(self, name: str | None) -> PersonSettings:
        """The person ``name``, or the only configured one; a :class:`ConfigError` saying what to pass."""
        if name:
            return self.person(name)
        if len(self.persons) == 1:
            return self.persons[0]
        if not self.persons:
            raise ConfigError(NO_PERSONS)
        raise ConfigError(f"several persons are configured; pass --person ({', '.join(p.name for p in self.persons)})")

    def masked(self) -> dict[str, Any]:
        """The effective settings as plain data with every secret replaced by '***'."""
        data: dict[str, Any] = self.model_dump(mode="json")

        def walk(node: Any, src: Any) -> Any:
            if isinstance(src, SecretStr):
                return "***" if src.get_secret_value() else ""
            if isinstance(src, BaseModel):
                return {k: walk(node[k], getattr(src, k)) for k in node}
            if isinstance(src, list):
                return [walk(n, s) for n, s in zip(node, src, strict=True)]
            return node

        return walk(data, self)  # type: ignore[no-any-return]


_ENV_TRUE = frozenset({"true", "1"})
_ENV_FALSE = frozenset({"false", "0"})


class _EnvBools(PydanticBaseSettingsSource):
    """The environment source, with "true"/"false"/"1"/"0" turned into booleans for boolean settings.

    Booleans are strict (``embedded = "yes"`` in the TOML is an error, not True); an environment
    variable is always a string, so its usual spellings are converted here and only here.
    """

    def __init__(self, settings_cls: type[BaseSettings], inner: PydanticBaseSettingsSource) -> None:
        super().__init__(settings_cls)
        self._inner = inner

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._inner.get_field_value(field, field_name)

    def __call__(self) -> dict[str, Any]:
        return _env_bools(self.settings_cls, self._inner())


def _env_bools(model: type[BaseModel], data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for name, value in data.items():
        field = model.model_fields.get(name)
        if field is None:
            continue
        ann = field.annotation
        if ann is bool and isinstance(value, str):
            low = value.strip().lower()
            out[name] = True if low in _ENV_TRUE else False if low in _ENV_FALSE else value
        elif isinstance(ann, type) and issubclass(ann, BaseModel) and isinstance(value, dict):
            out[name] = _env_bools(ann, value)
    return out


def resolve_config_path(explicit: Path | None = None) -> tuple[Path | None, bool]:
    """The config file to read and whether the user asked for it explicitly."""
    if explicit is not None:
        return explicit, True
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env), True
    return (DEFAULT_CONFIG_PATH, False) if DEFAULT_CONFIG_PATH.is_file() else (None, False)


def env_variable_for(loc: tuple[int | str, ...]) -> str | None:
    """The ``MAGSLEEP_*`` variable that set the setting at ``loc``, if one is set.

    ``influx.embedded`` comes from ``MAGSLEEP_INFLUX__EMBEDDED``, or from ``MAGSLEEP_INFLUX`` as
    JSON; list items (``persons.0.name``) only from the list's variable (``MAGSLEEP_PERSONS``).
    """
    names: list[str] = []
    for part in loc:
        if not isinstance(part, str):
            break
        names.append(part)
    set_vars = {k.upper(): k for k in os.environ}
    for n in range(len(names), 0, -1):
        var = "MAGSLEEP_" + "__".join(names[:n]).upper()
        if var in set_vars:
            return set_vars[var]
    return None


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per bad key, blamed on the environment variable that set it or else on ``source``."""
    lines: list[str] = []
    in_env = in_source = False
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key; check the spelling against config/magsleep.example.toml"
        elif err["type"] in ("literal_error", "bool_type"):
            msg = f"{msg} (got {err.get('input')!r})"
        var = env_variable_for(tuple(err["loc"]))
        if var is not None:
            in_env = True
            if err["type"] == "bool_type":
                msg = f"{msg}; use true or false"
            lines.append(f"  {var} ({key}): {msg}")
        else:
            in_source = True
            if err["type"] == "bool_type":
                msg = f"{msg}; write true or false without quotes"
            lines.append(f"  {key}: {msg}")
    where = " and ".join(w for w, used in ((source, in_source), ("the environment", in_env)) if used)
    return "\n".join([f"invalid settings in {where}:", *lines])


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Read and validate settings once. Raises :class:`ConfigError` with a message per bad key."""
    path, explicit = resolve_config_path(config)
    via = f" (named by {ENV_CONFIG})" if config is None and os.environ.get(ENV_CONFIG) else ""
    data = _read_toml(path, explicit, via) if path is not None else None
    source = str(path) if data is not None else "environment/defaults"
    Settings._toml_data = data
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    except ValueError as exc:  # e.g. a MAGSLEEP_* variable holding JSON that does not parse
        raise ConfigError(f"cannot read the settings from the environment: {exc}") from None
    finally:
        Settings._toml_data = None


def _read_toml(path: Path, explicit: bool, via: str = "") -> dict[str, Any] | None:
    """The parsed config file; None if a file nobody asked for is missing. Never changes the file."""
    try:
        text = read_text(path, what="config file", error=ConfigError,
                         advice="save it as UTF-8 text (e.g. with iconv) or recreate it from "
                                "config/magsleep.example.toml")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(
                f"config file {path}{via} does not exist; create it from config/magsleep.example.toml or fix the path"
            ) from None
        return None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"cannot parse config file {path}: {exc}; fix the TOML syntax there") from None
