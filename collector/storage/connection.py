"""Where to reach InfluxDB, resolved from settings (the embedded local instance or a configured one)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from collector.errors import StorageError
from collector.settings import Settings
from collector.storage import local_influx


@dataclass(frozen=True, slots=True)
class InfluxTarget:
    """Everything a writer or reader needs; secrets stay out of ``repr``."""

    url: str
    version: int
    database: str
    retention_policy: str
    username: str
    org: str
    bucket: str
    timeout_s: float
    _password: str | None = None
    _token: str | None = None

    def __repr__(self) -> str:
        return f"InfluxTarget(url={self.url!r}, version={self.version}, database={self.database!r})"

    @property
    def password(self) -> str | None:
        return self._password

    @property
    def token(self) -> str | None:
        return self._token


def influx_target(settings: Settings, *, url: str | None = None) -> InfluxTarget:
    """Resolve the InfluxDB to talk to. With ``embedded``, the local instance must be running."""
    i = settings.influx
    if url is None:
        if i.embedded:
            inst = local_influx.status(local_influx.embedded_root(settings))
            if inst is None:
                raise StorageError(
                    "the embedded local InfluxDB is not running; start it with "
                    "'magsleep influx start', or set influx.embedded = false and influx.url"
                )
            url = inst.url
        else:
            url = i.url
    return InfluxTarget(
        url=url,
        version=1 if i.embedded else i.version,
        database=i.database,
        retention_policy=i.retention_policy,
        username=i.username,
        org=i.org,
        bucket=i.bucket,
        timeout_s=i.timeout_s,
        _password=i.password_value(),
        _token=i.token_value(),
    )


def basic_auth(username: str, password: str) -> str:
    """An HTTP Basic Authorization header value."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
