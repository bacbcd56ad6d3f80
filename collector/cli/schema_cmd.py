"""``magsleep schema``: print the InfluxDB schema as Markdown."""

from __future__ import annotations

import sys

from collector.storage.schema import render_markdown


def schema() -> None:
    """Print the InfluxDB schema (measurements, tags, fields, types, units) as Markdown."""
    sys.stdout.write(render_markdown())
