"""Importers of history from other apps: one module per kind, one small interface
(:class:`collector.importers.base.Importer`); :mod:`collector.importers.run` drives them."""

from __future__ import annotations

import importlib

from collector.errors import ValidationError
from collector.importers.base import Importer

#: kind -> (module, class). Modules load only when their kind is used.
KINDS: dict[str, tuple[str, str]] = {
    "rr": ("collector.importers.rr", "RRImporter"),
    "apple-health": ("collector.importers.apple_health", "AppleHealthImporter"),
    "gadgetbridge": ("collector.importers.gadgetbridge", "GadgetbridgeImporter"),
    "garmin-grafana": ("collector.importers.garmin_grafana", "GarminGrafanaImporter"),
}


def get_importer(kind: str) -> Importer:
    try:
        module, cls = KINDS[kind]
    except KeyError:
        raise ValidationError(f"unknown import kind {kind!r}; known: {', '.join(KINDS)}") from None
    imp: Importer = getattr(importlib.import_module(module), cls)()
    return imp
