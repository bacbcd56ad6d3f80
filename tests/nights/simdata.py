"""Simulated nights (collector.sim) turned into the arrays the nights code reads from InfluxDB."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from collector.nights.compute import NightInputs
from collector.nights.segment import night_window
from collector.settings import PersonSettings
from collector.sim.backfill import SLEEPLOG_TO_STAGE
from collector.sim.hrm import notification_arrays
from collector.sim.hypnogram import EPOCH_S
from collector.sim.nights import NS, Night, plan_study
from collector.sim.params import Faults, SimConfig
from collector.sim.person import PersonProfile

END = date(2026, 11, 20)


def study(n: int = 6, *, seed: int = 1, config: SimConfig | None = None, name: str = "alice"):
    person = PersonProfile.sample(name, seed=seed)
    return person, plan_study(person, n, end=END, seed=seed, config=config)


def settings_for(person: PersonProfile) -> PersonSettings:
    return PersonSettings(name=person.name, age=person.age, sex=person.sex, timezone=person.timezone)


def inputs(night: Night, ps: PersonSettings, *, device_stages: bool = True, motion: bool = True,
           tags: bool = False) -> NightInputs:
    a = notification_arrays(night)
    win = night_window(night.plan.night, ps)
    kw: dict[str, Any] = {}
    if motion and night.motion is not None:
        t = night.lights_out_ns + np.arange(night.motion.size, dtype=np.int64) * EPOCH_S * NS
        kw.update(motion_time_ns=t, motion_activity=night.motion.astype(float),
                  motion_epoch_s=np.full(t.size, EPOCH_S, np.int64))
    if device_stages and night.device_stages is not None:
        starts, status = night.device_stages
        kw.update(stage_time_ns=starts.astype(np.int64),
                  stage_code=np.array([SLEEPLOG_TO_STAGE[int(s)][1] for s in status], np.int64),
                  stage_epoch_s=np.full(starts.size, 600, np.int64), stage_device="sim-band")
    if tags:
        kw.update(lights_out_tag_ns=night.lights_out_ns, lights_on_tag_ns=night.lights_on_ns)
    m = a.bpm > 0
    return NightInputs(window=win, rr_time_ns=np.asarray(a.rr_time_ns, np.int64), rr_ms=np.asarray(a.rr_ms, float),
                       hr_time_ns=np.asarray(a.time_ns, np.int64)[m], hr_bpm=np.asarray(a.bpm, float)[m],
                       sim=True, **kw)


def no_faults(**kw) -> SimConfig:
    return SimConfig(faults=Faults.none(), **kw)
