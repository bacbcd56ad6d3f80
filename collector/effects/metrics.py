"""The nightly metrics that effects are estimated for, with direction of benefit and scale.

Field names are those of the ``night`` measurement (collector/storage/schema.py). ``scale`` is
``linear`` (differences in the metric's unit) or ``log1p`` (the model is fitted to
``ln(x + 1)``: skewed latencies/wake minutes and the awakening count; the effect is a ratio,
also shown as a difference at the control nights' typical value). ``threshold``, ``prior_sd``
and ``half_width`` are on the model scale (log ratio for ``log1p``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from collector.errors import ValidationError

Scale = Literal["linear", "log1p"]
Better = Literal["lower", "higher"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str
    label: str
    unit: str
    better: Better
    scale: Scale
    threshold: float  # smallest effect that matters (model scale)
    prior_sd: float  # SD of the sceptical normal prior centred on no effect (model scale)
    half_width: float  # target 95% CI half-width for "nights needed" (model scale)
    more: str  # word for a higher value ("longer", "higher", "more", "slower")
    less: str  # word for a lower value

    def beneficial(self, model_effect: float) -> bool:
        return model_effect < 0 if self.better == "lower" else model_effect > 0

    def describe_half_width(self) -> str:
        if self.scale == "log1p":
            return f"±{100 * (math.exp(self.half_width) - 1):.0f}%"
        return f"±{self.half_width:g} {self.unit}".rstrip()


_TEN_PCT = math.log(1.10)  # a 10% change on the ratio scale
_TWENTY_PCT = math.log(1.20)

METRICS: dict[str, MetricSpec] = {
    m.name: m
    for m in (
        MetricSpec("sol_min", "Sleep onset", "min", "lower", "log1p", _TEN_PCT, 0.30, _TWENTY_PCT,
                   "slower", "faster"),
        MetricSpec("tst_min", "Total sleep", "min", "higher", "linear", 15.0, 30.0, 15.0,
                   "longer", "shorter"),
        MetricSpec("waso_min", "Wake after sleep onset", "min", "lower", "log1p", _TEN_PCT, 0.30,
                   _TWENTY_PCT, "longer", "shorter"),
        MetricSpec("se_pct", "Sleep efficiency", "points", "higher", "linear", 2.0, 5.0, 2.0,
                   "higher", "lower"),
        MetricSpec("awakenings", "Awakenings", "per night", "lower", "log1p", _TEN_PCT, 0.30,
                   _TWENTY_PCT, "more", "fewer"),
        MetricSpec("deep_min", "Deep sleep", "min", "higher", "linear", 10.0, 20.0, 10.0,
                   "longer", "shorter"),
        MetricSpec("rem_min", "REM sleep", "min", "higher", "linear", 10.0, 20.0, 10.0,
                   "longer", "shorter"),
        MetricSpec("hr_mean_bpm", "Sleeping heart rate", "bpm", "lower", "linear", 1.0, 3.0, 1.0,
                   "higher", "lower"),
        MetricSpec("hr_min5_bpm", "Resting heart rate (lowest 5 min)", "bpm", "lower", "linear",
                   1.0, 3.0, 1.0, "higher", "lower"),
        MetricSpec("ln_rmssd", "HRV (ln RMSSD)", "ln ms", "higher", "linear", 0.05, 0.15, 0.05,
                   "higher", "lower"),
    )
}


def metric(name: str) -> MetricSpec:
    try:
        return METRICS[name]
    except KeyError:
        raise ValidationError(
            f"unknown metric {name!r}; choose from {', '.join(METRICS)}"
        ) from None
