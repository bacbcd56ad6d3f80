"""Helpers for storage tests."""

from __future__ import annotations

from pathlib import Path

from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings


def make_settings(url: str, db: str, state_dir: Path, **storage: object) -> Settings:
    return Settings(
        influx=InfluxSettings(embedded=False, url=url, database=db),
        storage=StorageSettings(state_dir=state_dir, **storage),
        persons=[PersonSettings(name="alice"), PersonSettings(name="bob")],
    )
