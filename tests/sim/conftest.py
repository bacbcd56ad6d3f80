"""Shared studies for the simulator tests (generated once per module where they are used)."""

from __future__ import annotations

from datetime import date

import pytest

from collector.sim.nights import NightTruth, Study, plan_study
from collector.sim.params import Dosing, Effects, SimConfig
from collector.sim.person import PersonProfile

END = date(2026, 11, 20)


def make_study(nights: int, *, seed: int = 7, name: str = "alice", **cfg: object) -> Study:
    person = PersonProfile.sample(name, seed, age=35, sex="female")
    return plan_study(person, nights, seed=seed, end=END, config=SimConfig(**cfg))  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def null_truths() -> list[NightTruth]:
    """200 nights without any planted effect (randomised doses)."""
    study = make_study(200, effects=Effects.null())
    return [study.night(i).truth for i in range(len(study))]


@pytest.fixture(scope="session")
def paired_studies() -> tuple[Study, Study]:
    """The same 240 nights under the effect and the null scenario (same seed, same schedule)."""
    return (make_study(240, seed=11, effects=Effects(), dosing=Dosing()),
            make_study(240, seed=11, effects=Effects.null(), dosing=Dosing()))
