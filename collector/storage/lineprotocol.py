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

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Literal, NamedTuple

from collector.errors import ValidationError

FieldValue = int | float | bool | str
Precision = Literal["ns", "us", "ms", "s"]

_DIVISOR: dict[str, int] = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": r"\\"})


class Tags(Mapping[str, str]):
    """An immutable tag set that escapes itself once: use it for tags shared by many points.

    A device session builds one ``Tags`` and stamps every point with it, so encoding a point
    costs only its field values.
    """

    __slots__ = ("_items", "_map", "_prefixes", "encoded")

    def __init__(self, tags: Mapping[str, str] | None = None, /, **kw: str) -> None:
        merged = {**(tags or {}), **kw}
        self._items: tuple[tuple[str, str], ...] = tuple(sorted(merged.items()))
        self._map: dict[str, str] = dict(self._items)
        self.encoded: str = _encode_tags(self._items)
        self._prefixes: dict[str, str] = {}

    def prefix(self, measurement: str) -> str:
        """The escaped ``measurement,tags`` start of a line."""
        p = self._prefixes.get(measurement)
        if p is None:
            p = self._prefixes[measurement] = _measurement(measurement) + self.encoded
        return p

    def __getitem__(self, key: str) -> str:
        return self._map[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    def __hash__(self) -> int:
        return hash(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Tags):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._map == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Tags({self._map!r})"

    def with_(self, **kw: str) -> Tags:
        """A copy with some tags added or replaced."""
        return Tags(self._map, **kw)


class Point(NamedTuple):
    """One InfluxDB point. ``time_ns`` is nanoseconds since the Unix epoch (UTC).

    A named tuple: cheap to build (the collector makes one per beat).
    """

    measurement: str
    tags: Mapping[str, str]
    fields: Mapping[str, FieldValue]
    time_ns: int

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
_measurement_cache: dict[str, str] = {}
_key_cache: dict[str, str] = {}
_CACHE_LIMIT = 100_000


def _encode_tags(items: Iterable[tuple[str, str]]) -> str:
    parts = []
    for k, v in items:
        ek = escape_key(k)
        ev = escape_tag_value(v)
        if ek and ev:
            parts.append(f",{ek}={ev}")
    return "".join(parts)


def _measurement(name: str) -> str:
    m = _measurement_cache.get(name)
    if m is None:
        m = escape_measurement(name)
        if not m:
            raise ValidationError("a measurement name must not be empty")
        if len(_measurement_cache) >= _CACHE_LIMIT:
            _measurement_cache.clear()
        _measurement_cache[name] = m
    return m


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """The escaped ``measurement,tag=value,...`` part of a line, cached per series."""
    if isinstance(tags, Tags):
        return _measurement(measurement) + tags.encoded
    ck = (measurement, tuple(sorted(tags.items())))
    prefix = _series_cache.get(ck)
    if prefix is None:
        prefix = _measurement(measurement) + _encode_tags(ck[1])
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
    """The line-protocol text of one field value, or None when it is left out (None, NaN, inf).

    Exact types first (the hot path of :func:`encode_points`), then subclasses and numpy scalars.
    """
    t = type(value)
    if t is float:
        if value - value != 0.0:  # type: ignore[operator]  # NaN or infinite, cheaper than math.isfinite here
            return None
        r = repr(value)
        return r[:-2] if r.endswith(".0") else r
    if t is int:
        return f"{value}i"
    if t is bool:
        return "true" if value else "false"
    if t is str:
        return '"' + value.translate(_ESCAPE_STRING) + '"'  # type: ignore[union-attr]
    if value is None:
        return None
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
    """Lines for many points, skipping points with no field left.

    The hot path of the collector: series prefixes come from :class:`Tags` (or the series
    cache), field keys from a cache, and single-field points skip the join.
    """
    out: list[str] = []
    append = out.append
    div = _DIVISOR[precision]
    keys = _key_cache
    fmt = format_value
    for p in points:
        tags = p.tags
        if type(tags) is Tags:
            prefix = tags._prefixes.get(p.measurement) or tags.prefix(p.measurement)
        else:
            prefix = series_prefix(p.measurement, tags)
        fields = p.fields
        if len(fields) == 1:
            for k, v in fields.items():
                s = fmt(v)
                if s is not None:
                    append(f"{prefix} {keys.get(k) or _field_key(k)}={s} {p.time_ns // div}")
            continue
        parts = []
        for k in sorted(fields):
            s = fmt(fields[k])
            if s is not None:
                parts.append(f"{keys.get(k) or _field_key(k)}={s}")
        if parts:
            append(f"{prefix} {','.join(parts)} {p.time_ns // div}")
    return out


#: Texts of float values seen by RowEncoders. Device values repeat (RR intervals come in steps of
#: 1/1024 s), and a dict lookup is several times cheaper than repr(). Zero is never cached, so
#: -0.0 keeps its sign; the cache stops growing at _FLOAT_CACHE_MAX entries. (A bool given for a
#: float field may then be written as 1 or 0 instead of going the general way: same number.)
_FLOAT_CACHE: dict[float, str] = {}
_FLOAT_CACHE_MAX = 1 << 16


def _float_text(v: float) -> str:
    if type(v) is not float:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _SkipRow
        v = float(v)
    if v - v != 0.0:
        raise _SkipRow
    r = repr(v)
    r = r[:-2] if r.endswith(".0") else r
    if v and len(_FLOAT_CACHE) < _FLOAT_CACHE_MAX:
        _FLOAT_CACHE[v] = r
    return r


def _bool_text(v: bool) -> str:
    if type(v) is not bool:
        raise _SkipRow
    return "true" if v else "false"


def _str_text(v: str) -> str:
    if type(v) is not str:
        raise _SkipRow
    return v.translate(_ESCAPE_STRING)


class _SkipRow(Exception):
    """A row holds a value that the fast path cannot write (None, NaN): use the general path."""


class RowEncoder:
    """Encodes rows of one measurement with a fixed field layout, at f-string speed.

    ``RowEncoder("rr", [("rr_ms", "float")]).lines(tags, [(t_ns, 812.5), ...])``. Rows are
    ``(time_ns, value, ...)`` in the declared field order. Output is identical to
    :func:`encode_points` for the same points; a call whose rows hold None, non-finite floats
    or values of the wrong type goes through the general path, row by row.

    Like :mod:`dataclasses`, it generates the per-layout loop once as Python source; field
    keys enter it as variables, never as source text.
    """

    def __init__(self, measurement: str, fields: Iterable[tuple[str, str]]) -> None:
        declared = list(fields)
        if not declared:
            raise ValidationError("a RowEncoder needs at least one field")
        self.measurement = measurement
        self._names = [n for n, _ in declared]
        self._floats = {n for n, t in declared if t == "float"}
        parts: list[str] = []
        ns: dict[str, object] = {"_ft": _float_text, "_fg": _FLOAT_CACHE.get, "_bt": _bool_text, "_st": _str_text}
        for j, i in enumerate(sorted(range(len(declared)), key=lambda i: declared[i][0])):
            name, ftype = declared[i]
            ns[f"_k{j}"] = escape_key(name)  # keys enter as values, never as source text
            col = f"r[{i + 1}]"
            if ftype == "int":
                parts.append(f"{{_k{j}}}={{{col}:d}}i")
            elif ftype == "float":
                parts.append(f"{{_k{j}}}={{_fg({col}) or _ft({col})}}")
            elif ftype == "bool":
                parts.append(f"{{_k{j}}}={{_bt({col})}}")
            elif ftype == "string":
                parts.append(f'{{_k{j}}}=\\"{{_st({col})}}\\"')
            else:
                raise ValidationError(f"field {name!r}: type {ftype!r} is not int, float, bool or string")
        body = ",".join(parts)
        src = f'def _encode(prefix, rows):\n    return [f"{{prefix}} {body} {{r[0]:d}}" for r in rows]\n'
        exec(compile(src, f"<RowEncoder {len(declared)} fields>", "exec"), ns)  # noqa: S102 - fixed code, no user text
        self._encode = ns["_encode"]

    def lines(self, tags: Mapping[str, str], rows: Sequence[tuple[object, ...]]) -> list[str]:
        prefix = tags.prefix(self.measurement) if type(tags) is Tags else series_prefix(self.measurement, tags)
        try:
            return self._encode(prefix, rows)  # type: ignore[operator, no-any-return]
        except (_SkipRow, TypeError, ValueError):
            out: list[str] = []
            for row in rows:
                fields: dict[str, FieldValue] = {}
                for i, n in enumerate(self._names):
                    v = row[1 + i]
                    if v is None:
                        continue
                    if n in self._floats and type(v) is int:
                        v = float(v)
                    fields[n] = v  # type: ignore[assignment]
                line = encode_line(self.measurement, tags, fields, int(row[0]))  # type: ignore[call-overload]
                if line:
                    out.append(line)
            return out
