"""A fast InfluxDB line-protocol encoder.

Escaping follows influxdb-client's ``Point.to_line_protocol`` exactly (property-tested for
equivalence): measurement escapes ``,`` and space; tag keys/values and field keys escape ``,``,
``=`` and space; ``\\n``, ``\\t``, ``\\r`` become their two-character escapes; string field values
escape ``"`` and ``\\``. Tags with empty values and fields that are ``None`` or non-finite floats
are left out, as influxdb-client does. Tags and fields are written sorted by key.

Speed comes from caching the escaped series key (measurement + tags) and escaped field keys:
every point of a series after the first costs only value formatting.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from collector.errors import ValidationError

FieldValue = int | float | bool | str
Precision = Literal["ns", "us", "ms", "s"]

_DIVISOR: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


@dataclass(frozen=True, slots=True)
class Point:
    """One InfluxDB point. ``time_ns`` is nanoseconds since the Unix epoch (UTC)."""

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int
    _hash: int = field(default=0, compare=False, repr=False)

    def series_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.measurement, tuple(sorted(self.tags.items()))


def escape_measurement(name: str) -> str:
    return name.translate(_ESCAPE_MEASUREMENT)


def escape_key(key: str) -> str:
    return key.translate(_ESCAPE_KEY)


def escape_tag_value(value: str) -> str:
    ret = value.translate(_ESCAPE_KEY)
    # A trailing backslash would escape the separating space; influxdb-client adds a space.
    if ret.endswith("\\"):
        ret += " "
    return ret


def escape_string(value: str) -> str:
    return value.translate(_ESCAPE_STRING)


_series_cache: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_key_cache: dict[str, str] = {}
_CACHE_LIMIT = 100_000


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped ``measurement,tag=value,...`` part of a line, cached per series."""
    ck = (measurement, tuple(sorted(tags.items())))
    prefix = _series_cache.get(ck)
    if prefix is None:
        m = escape_measurement(measurement)
        if not m:
            raise ValidationError("a measurement name must not be empty")
        parts = [m]
        for k, v in ck[1]:
            ek = escape_key(k)
            ev = escape_tag_value(v)
            if ek and ev:
                parts.append(f"{ek}={ev}")
        prefix = ",".join(parts)
        if len(_series_cache) >= _CACHE_LIMIT:
            _series_cache.clear()
        _series_cache[ck] = prefix
    return prefix


def _field_key(k: str) -> str:
    ek = _key_cache.get(k)
    if ek is None:
        ek = k.translate(_ESCAPE_KEY)
        if len(_key_cache) >= _CACHE_LIMIT:
            _key_cache.clear()
        _key_cache[k] = ek
    return ek


def format_value(value: FieldValue) -> str | None:
    """The line-protocol text of one field value, or None when it is left out."""
    t = type(value)
    if t is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            return None
        s = str(value)
        return s[:-2] if s.endswith(".0") else s
    if t is int:
        return f"{value}i"
    if t is bool:
        return "true" if value else "false"
    if t is str:
        return '"' + value.translate(_ESCAPE_STRING) + '"'  # type: ignore[union-attr]
    # subclasses and numpy scalars
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{int(value)}i"
    if isinstance(value, float):
        return format_value(float(value))
    if isinstance(value, str):
        return format_value(str(value))
    if hasattr(value, "dtype"):  # numpy scalar
        return format_value(value.item())
    raise ValidationError(f"field value {value!r} has unsupported type {t.__name__}; use int, float, bool or str")


def format_fields(fields: Mapping[str, FieldValue]) -> str:
    parts = []
    for k in sorted(fields):
        v = fields[k]
        if v is None:
            continue
        s = format_value(v)
        if s is not None:
            parts.append(f"{_field_key(k)}={s}")
    return ",".join(parts)


def encode_line(
    measurement: str,
    tags: Mapping[str, str],
    fields: Mapping[str, FieldValue],
    time_ns: int | None,
    precision: Precision = "ns",
) -> str:
    """One line of line protocol; empty string when no field survives (as influxdb-client)."""
    f = format_fields(fields)
    if not f:
        return ""
    prefix = series_prefix(measurement, tags)
    if time_ns is None:
        return f"{prefix} {f}"
    return f"{prefix} {f} {time_ns // _DIVISOR[precision]}"


def encode_point(point: Point, precision: Precision = "ns") -> str:
    return encode_line(point.measurement, point.tags, point.fields, point.time_ns, precision)


def encode_points(points: Iterable[Point], precision: Precision = "ns") -> list[str]:
    """Lines for many points, skipping points with no field left."""
    out = []
    div = _DIVISOR[precision]
    for p in points:
        f = format_fields(p.fields)
        if f:
            out.append(f"{series_prefix(p.measurement, p.tags)} {f} {p.time_ns // div}")
    return out
