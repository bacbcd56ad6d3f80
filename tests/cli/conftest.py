"""Fixtures for the console-script tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.console import Console


@pytest.fixture
def console(tmp_path: Path) -> Console:
    """``magsleep`` in a temporary home; one configured person, alice (Europe/Berlin)."""
    home = tmp_path / "home"
    home.mkdir()
    return Console(home, {"persons": [{"name": "alice", "timezone": "Europe/Berlin"}]})
