"""A simulated sleeper: the stable traits behind every night (chronotype, sleep need, heart, HRV).

Defaults and ranges come from the project notes (shared/notes/science.md) and docs/simulator.md lists the
sources. :meth:`PersonProfile.sample` draws a plausible healthy adult from a seed, so ``demo`` and
``alice`` with the same seed are different people, and the same name and seed the same person.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from collector.errors import ValidationError

if TYPE_CHECKING:
    from collector.settings import Settings

Sex = Literal["female", "male"]


def name_key(name: str) -> int:
    """A stable 32-bit number for a person name (seeds must not depend on Python's hash salt)."""
    return zlib.crc32(name.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class PersonProfile:
    """Stable traits of one simulated person. Times are local wall-clock, durations minutes."""

    name: str
    age: int = 40
    sex: Sex = "female"
    timezone: str = "UTC"
    # chronotype: usual lights out in hours after the evening's midnight (23.25 = 23:15, 24.5 = 00:30)
    bedtime_h: float = 23.25
    bedtime_sd_min: float = 30.0
    weekend_shift_min: float = 45.0  # later lights out on Friday and Saturday evenings
    # sleep need
    tst_mean_min: float = 425.0
    weekend_tst_min: float = 25.0  # extra sleep on Friday and Saturday nights
    sol_mean_min: float = 25.0
    waso_mean_min: float = 30.0
    deep_frac: float = 0.17  # share of TST
    rem_frac: float = 0.22
    # heart
    rhr_bpm: float = 64.0  # mean heart rate while asleep
    rmssd_ms: float = 42.0  # nightly median of 5-min RMSSD while asleep
    resp_rate_bpm: float = 14.5  # breaths per minute (drives respiratory sinus arrhythmia)

    def __post_init__(self) -> None:
        checks: list[tuple[bool, str]] = [
            (1 <= self.age <= 120, "age must be 1-120 years"),
            (self.sex in ("female", "male"), "sex must be 'female' or 'male'"),
            (18.0 <= self.bedtime_h <= 30.0, "bedtime_h must be 18-30 (hours after the evening's midnight)"),
            (120 <= self.tst_mean_min <= 720, "tst_mean_min must be 120-720"),
            (0 < self.sol_mean_min <= 180, "sol_mean_min must be in (0, 180]"),
            (0 < self.waso_mean_min <= 240, "waso_mean_min must be in (0, 240]"),
            (self.deep_frac > 0.0 and self.rem_frac > 0.0 and self.deep_frac + self.rem_frac <= 0.6,
             "deep_frac and rem_frac must be > 0 with deep_frac + rem_frac <= 0.6"),
            (30 <= self.rhr_bpm <= 120, "rhr_bpm must be 30-120"),
            (5 <= self.rmssd_ms <= 250, "rmssd_ms must be 5-250"),
            (6 <= self.resp_rate_bpm <= 30, "resp_rate_bpm must be 6-30"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValidationError(f"person {self.name!r}: {msg}")

    @classmethod
    def sample(
        cls,
        name: str,
        seed: int = 0,
        *,
        age: int | None = None,
        sex: Sex | None = None,
        timezone: str = "UTC",
    ) -> PersonProfile:
        """A plausible healthy adult drawn from ``seed`` and ``name`` (age/sex drawn when not given).

        Age trends (Ohayon 2004 meta-analysis): deep sleep share falls about 2 points per decade,
        WASO rises about 10 min per decade; nightly ln RMSSD falls about 0.02 per year.
        """
        rng = np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(name_key(name), 0)))
        a = int(age if age is not None else rng.integers(25, 66))
        s: Sex = sex if sex is not None else ("female" if rng.random() < 0.5 else "male")
        female = s == "female"
        decades = (a - 25) / 10.0
        return cls(
            name=name,
            age=a,
            sex=s,
            timezone=timezone,
            bedtime_h=float(np.clip(rng.normal(23.25, 0.6), 21.5, 25.5)),
            bedtime_sd_min=float(rng.uniform(20, 40)),
            weekend_shift_min=float(rng.uniform(20, 75)),
            tst_mean_min=float(np.clip(rng.normal(435 - 4 * decades + (8 if female else 0), 20), 370, 500)),
            weekend_tst_min=float(rng.uniform(10, 45)),
            sol_mean_min=float(rng.uniform(20, 32)),
            waso_mean_min=float(np.clip(15 + 8 * decades + rng.normal(0, 5), 10, 70)),
            deep_frac=float(np.clip(0.20 - 0.02 * decades + (0.01 if female else 0) + rng.normal(0, 0.015),
                                    0.08, 0.26)),
            rem_frac=float(np.clip(0.23 - 0.005 * decades + rng.normal(0, 0.015), 0.16, 0.28)),
            rhr_bpm=float(np.clip(rng.normal(63 + (2.5 if female else 0), 8.0), 45, 90)),
            rmssd_ms=float(np.clip(math.exp(rng.normal(3.72 - 0.2 * decades, 0.2)), 15, 110)),
            resp_rate_bpm=float(np.clip(rng.normal(14.5, 1.2), 11, 18)),
        )

    @classmethod
    def from_settings(cls, settings: Settings, name: str, seed: int = 0) -> tuple[PersonProfile, bool]:
        """The simulated ``name``: age, sex and time zone from ``[[persons]]`` when configured.

        Returns ``(profile, configured)``; an unconfigured name gets sampled age and sex in UTC.
        """
        for p in settings.persons:
            if p.name == name:
                return cls.sample(name, seed, age=p.age, sex=p.sex, timezone=p.timezone), True
        return cls.sample(name, seed), False

    def with_(self, **changes: Any) -> PersonProfile:
        """A copy with some traits changed (validated again)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
