"""Adherence to a trial plan: on how many planned nights what was taken matched the plan.

Pure: the plan's assignment and the nights' dose status (from :mod:`collector.effects.tagging`)
in, a per-night verdict out. A planned magnesium night is followed when magnesium was taken in
the dose window; a planned control night when none was taken that evening (a ``washout`` night
took none either). A dose on a control night, none on a magnesium night, or a dose outside the
window are deviations. Nights whose status cannot be told (no lights-out time: ``unknown``) are
not counted. The effect estimates compare what was taken (the randomisation test uses the plan);
adherence says how far the two differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date

from collector.effects.tagging import DoseStatus

_DOSED: frozenset[DoseStatus] = frozenset({"magnesium", "off_window"})


@dataclass(frozen=True, slots=True)
class NightVerdict:
    night: date
    planned_magnesium: bool
    status: DoseStatus
    followed: bool | None  # None: cannot be told (unknown status)

    @property
    def deviation(self) -> str:
        """What went differently from the plan ("" when followed or unknown)."""
        if self.followed is not False:
            return ""
        if not self.planned_magnesium:
            return "magnesium on a control night"
        if self.status == "off_window":
            return "magnesium outside the dose window"
        return "no magnesium on a magnesium night"


def verdict(night: date, planned_magnesium: bool, status: DoseStatus) -> NightVerdict:
    if status == "unknown":
        return NightVerdict(night, planned_magnesium, status, None)
    followed = status == "magnesium" if planned_magnesium else status not in _DOSED
    return NightVerdict(night, planned_magnesium, status, followed)


@dataclass(frozen=True, slots=True)
class Adherence:
    """Per planned night with data: followed or not; ``share`` of the counted nights followed."""

    plan_id: str
    nights: tuple[NightVerdict, ...]

    @property
    def counted(self) -> int:
        return sum(1 for n in self.nights if n.followed is not None)

    @property
    def followed(self) -> int:
        return sum(1 for n in self.nights if n.followed)

    @property
    def deviations(self) -> list[NightVerdict]:
        return [n for n in self.nights if n.followed is False]

    @property
    def share(self) -> float | None:
        return self.followed / self.counted if self.counted else None

    def summary(self) -> str:
        """One sentence for the effects output."""
        if not self.counted:
            return (f"adherence to plan {self.plan_id}: no planned night with a known dose "
                    "status yet")
        text = (f"adherence to plan {self.plan_id}: followed on {self.followed} of "
                f"{self.counted} planned nights ({100 * (self.share or 0.0):.0f}%)")
        devs = self.deviations
        if devs:
            shown = "; ".join(f"{n.night.isoformat()} {n.deviation}" for n in devs[:5])
            more = f"; and {len(devs) - 5} more" if len(devs) > 5 else ""
            text += f"; deviations: {shown}{more}"
        return text + (". The estimates compare what was taken, not what was planned (the "
                       "randomisation test uses the plan).")


def adherence(plan_id: str, planned: Mapping[date, bool],
              statuses: Iterable[tuple[date, DoseStatus]]) -> Adherence:
    """Adherence over the nights that are both planned and in ``statuses``."""
    out = [verdict(d, planned[d], s) for d, s in sorted(statuses) if d in planned]
    return Adherence(plan_id, tuple(out))
