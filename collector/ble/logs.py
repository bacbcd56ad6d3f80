"""Structured (logfmt) log lines for the daemon: ``ts level logger msg key=value ...``.

Session log calls pass ``extra={"device": ..., "person": ..., "address": ..., "event": ...}``;
those keys become fields, so a log shipper can filter by device or event without parsing text.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

#: LogRecord attributes that become logfmt fields when a call passes them in ``extra``.
FIELDS = ("event", "device", "person", "address", "streak", "kind", "backoff_s")


def _quote(value: object) -> str:
    s = str(value)
    if not s or any(c in s for c in ' "=\n\t'):
        return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return s


class LogfmtFormatter(logging.Formatter):
    """One line per record: ``ts=... level=... logger=... msg="..." device=... event=...``."""

    def format(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}",
                 f"msg={_quote(record.getMessage())}"]
        for key in FIELDS:
            if key in record.__dict__:
                parts.append(f"{key}={_quote(record.__dict__[key])}")
        if record.exc_info:
            parts.append(f"exc={_quote(self.formatException(record.exc_info))}")
        return " ".join(parts)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record, not at set-up."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        return None


def configure(level: str) -> None:
    """Send the root logger's records to stderr as logfmt lines."""
    handler = _StderrHandler()
    handler.setFormatter(LogfmtFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
