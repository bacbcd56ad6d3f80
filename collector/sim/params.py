"""Parameters of a simulation: night-to-night variability, planted magnesium effects, faults, dosing.

Every default has its source in docs/simulator.md (mostly the project notes on sleep science, shared/notes/science.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from collector.errors import ValidationError

Design = Literal["randomised", "blocks", "none"]
Scenario = Literal["effect", "null"]
DESIGNS: tuple[str, ...] = ("randomised", "blocks", "none")
SCENARIOS: tuple[str, ...] = ("effect", "null")


def _check(ok: bool, msg: str) -> None:
    if not ok:
        raise ValidationError(msg)


@dataclass(frozen=True, slots=True)
class Variability:
    """Night-to-night variation of one person around their traits.

    Each nightly quantity follows its own AR(1) series with coefficient ``ar1``.
    """

    ar1: float = 0.3  # night-to-night autocorrelation (science.md: 0.3)
    tst_sd_min: float = 50.0  # science.md: 45-77 min (Messman 2022)
    sol_sd_min: float = 20.0  # science.md gives ~31 for trial populations; 20 for a healthy adult
    waso_cv: float = 0.5  # WASO is log-normal with this coefficient of variation
    deep_frac_sd: float = 0.025
    rem_frac_sd: float = 0.025
    ln_rmssd_sd: float = 0.12  # science.md: nightly ln RMSSD varies 10-20%
    rhr_sd_bpm: float = 2.0
    final_wake_mean_min: float = 6.0  # final awakening to lights on

    def __post_init__(self) -> None:
        _check(0.0 <= self.ar1 < 1.0, "variability.ar1 must be in [0, 1)")
        for name in ("tst_sd_min", "sol_sd_min", "waso_cv", "deep_frac_sd", "rem_frac_sd",
                     "ln_rmssd_sd", "rhr_sd_bpm"):
            _check(getattr(self, name) >= 0, f"variability.{name} must be >= 0")
        _check(self.final_wake_mean_min > 0, "variability.final_wake_mean_min must be > 0")


@dataclass(frozen=True, slots=True)
class Effects:
    """Planted per-dose-night effects (magnesium minus control).

    Defaults: Mah & Pitre 2021 (SOL -17.4 min, TST +16.1 min); small deep/REM gains in the
    direction of Hausenblas 2024; ln RMSSD +0.05 (about +5%, the effect size of science.md's power
    line). ``Effects.null()`` plants nothing.
    """

    sol_min: float = -17.4
    tst_min: float = 16.1
    deep_min: float = 4.0
    rem_min: float = 4.0
    ln_rmssd: float = 0.05
    rhr_bpm: float = 0.0
    waso_min: float = 0.0

    @classmethod
    def null(cls) -> Effects:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)

    @classmethod
    def for_scenario(cls, scenario: str) -> Effects:
        _check(scenario in SCENARIOS, f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
        return cls() if scenario == "effect" else cls.null()

    def is_null(self) -> bool:
        return all(v == 0.0 for v in asdict(self).values())


@dataclass(frozen=True, slots=True)
class Faults:
    """What goes wrong between the heart and the database."""

    artefact_rate: float = 0.01  # share of beats that are ectopic or missed (science.md: 0.5-5%)
    ectopic_share: float = 0.5  # the rest are missed beats
    dropouts_per_night: float = 4.0  # BLE link gaps per 8 h
    dropout_s: tuple[float, float] = (2.0, 180.0)  # log-uniform length range
    contact_losses_per_night: float = 0.5  # strap loses skin contact (mostly on awakenings)
    contact_loss_s: tuple[float, float] = (30.0, 900.0)

    def __post_init__(self) -> None:
        _check(0.0 <= self.artefact_rate <= 0.2, "faults.artefact_rate must be 0-0.2 (0.005-0.05 is realistic)")
        _check(0.0 <= self.ectopic_share <= 1.0, "faults.ectopic_share must be 0-1")
        _check(self.dropouts_per_night >= 0, "faults.dropouts_per_night must be >= 0")
        _check(self.contact_losses_per_night >= 0, "faults.contact_losses_per_night must be >= 0")
        for name in ("dropout_s", "contact_loss_s"):
            lo, hi = getattr(self, name)
            _check(0 < lo <= hi, f"faults.{name} must be (low, high) with 0 < low <= high")

    @classmethod
    def none(cls) -> Faults:
        return cls(artefact_rate=0.0, dropouts_per_night=0.0, contact_losses_per_night=0.0)


@dataclass(frozen=True, slots=True)
class Dosing:
    """Which nights get magnesium and what the dose is.

    ``randomised``: a balanced random half of the nights (as a trial plan would assign them).
    ``blocks``: alternating control/magnesium blocks of ``block_nights`` starting with control;
    ``block_nights=None`` means one before/after split at half time. ``none``: no doses.
    """

    design: Design = "randomised"
    block_nights: int | None = None
    supplement: str = "magnesium"
    form: str = "glycinate"
    amount_mg: float = 1500.0
    elemental_mg: float = 210.0  # magnesium glycinate is about 14% elemental
    minutes_before_lights_out: float = 60.0

    def __post_init__(self) -> None:
        _check(self.design in DESIGNS, f"unknown design {self.design!r}; use one of {', '.join(DESIGNS)}")
        _check(self.block_nights is None or self.block_nights >= 1, "dosing.block_nights must be >= 1")
        _check(self.amount_mg > 0 and 0 < self.elemental_mg <= self.amount_mg,
               "dosing needs amount_mg > 0 and 0 < elemental_mg <= amount_mg")
        _check(0 <= self.minutes_before_lights_out <= 24 * 60, "dosing.minutes_before_lights_out must be 0-1440")


@dataclass(frozen=True, slots=True)
class SimConfig:
    """Everything about a simulation except the person and the seed."""

    variability: Variability = field(default_factory=Variability)
    effects: Effects = field(default_factory=Effects)
    faults: Faults = field(default_factory=Faults)
    dosing: Dosing = field(default_factory=Dosing)
    motion: bool = True  # activity counts per 30-s epoch
    device_stages: bool = True  # Bangle.js sleeplog-style stages per 10 min
    cycle_min: float = 90.0  # mean NREM/REM cycle length

    def __post_init__(self) -> None:
        _check(60 <= self.cycle_min <= 120, "cycle_min must be 60-120")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_choices(
        cls,
        *,
        scenario: str = "effect",
        design: str = "randomised",
        block_nights: int | None = None,
        artefact_rate: float = 0.01,
        dropouts: float = 4.0,
        contact_losses: float = 0.5,
        motion: bool = True,
        device_stages: bool = True,
    ) -> SimConfig:
        """A config from the few choices the CLI and the demo offer (raises ValidationError with advice)."""
        _check(design in DESIGNS, f"unknown design {design!r}; use one of {', '.join(DESIGNS)}")
        return cls(
            effects=Effects.for_scenario(scenario),
            faults=Faults(artefact_rate=artefact_rate, dropouts_per_night=dropouts,
                          contact_losses_per_night=contact_losses),
            dosing=Dosing(design=design, block_nights=block_nights),  # type: ignore[arg-type]
            motion=motion,
            device_stages=device_stages,
        )
