"""Trial plans: which evenings are magnesium nights, and re-drawing them for randomisation tests.

``randomised``: within every week of 7 evenings, 3 or 4 magnesium nights chosen at random, with
the 4s and 3s spread evenly over the weeks (8 weeks -> 28 vs 28). ``blocks``: blocks of
``block_weeks`` weeks, taken in pairs; within each pair a coin decides which block is magnesium.
The randomisation test re-draws plans with the same mechanism, so the p value is exact for the
nights the plan covers (block designs have few possible plans: 2 per pair of blocks, which bounds
how small that p value can get).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from collector.errors import ValidationError

Design = Literal["randomised", "blocks"]
DESIGNS: tuple[Design, ...] = ("randomised", "blocks")


@dataclass(frozen=True, slots=True)
class PlanSpec:
    """Everything needed to re-draw a plan with the same mechanism."""

    start: date
    weeks: int
    design: Design
    block_weeks: int = 2

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise ValidationError(f"design must be one of {', '.join(DESIGNS)}, not {self.design!r}")
        if not 1 <= self.weeks <= 104:
            raise ValidationError("weeks must be between 1 and 104")
        if self.design == "blocks":
            if not 1 <= self.block_weeks <= 4:
                raise ValidationError("block_weeks must be 1 to 4 weeks")
            if self.weeks % (2 * self.block_weeks) != 0:
                raise ValidationError(
                    f"a blocks plan needs whole pairs of blocks: weeks must be a multiple of "
                    f"{2 * self.block_weeks} with {self.block_weeks}-week blocks"
                )

    @property
    def n_nights(self) -> int:
        return 7 * self.weeks

    def dates(self) -> list[date]:
        return [self.start + timedelta(days=i) for i in range(self.n_nights)]


@dataclass(frozen=True, slots=True)
class PlanInfo:
    """A trial plan: the mechanism (to re-draw it) and the planned assignment."""

    spec: PlanSpec
    planned: Mapping[date, bool]
    plan_id: str = ""


def draw(spec: PlanSpec, rng: np.random.Generator) -> NDArray[np.bool_]:
    """One plan: True for magnesium nights, one entry per evening from ``spec.start``."""
    out: NDArray[np.bool_] = draw_many(spec, rng, 1)[0]
    return out


def draw_many(spec: PlanSpec, rng: np.random.Generator, count: int) -> NDArray[np.bool_]:
    """``count`` independent plans (count x nights)."""
    if spec.design == "randomised":
        w = spec.weeks
        per_week = np.empty((count, w), dtype=np.int64)
        base = np.array([4, 3] * (w // 2) + ([3] if w % 2 else []), dtype=np.int64)
        for c in range(count):
            per_week[c] = rng.permutation(base)
        # random ranks within each week; the k smallest ranks get magnesium
        ranks = rng.random((count, w, 7)).argsort(axis=2).argsort(axis=2)
        out = ranks < per_week[:, :, None]
        return out.reshape(count, 7 * w)
    blocks = spec.weeks // spec.block_weeks
    first = rng.random((count, blocks // 2)) < 0.5
    pattern = np.stack([first, ~first], axis=2).reshape(count, blocks)
    return np.repeat(pattern, 7 * spec.block_weeks, axis=1)


def assignments_for(
    spec: PlanSpec, nights: list[date], rng: np.random.Generator, count: int
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Re-drawn plans restricted to ``nights`` (count x len(nights)) and which nights were in."""
    idx = np.array([(d - spec.start).days for d in nights], dtype=np.int64)
    inside = (idx >= 0) & (idx < spec.n_nights)
    plans = draw_many(spec, rng, count)
    return plans[:, idx[inside]], inside


def within_week_assignments(
    nights: list[date], treat: NDArray[np.bool_], rng: np.random.Generator, count: int
) -> NDArray[np.bool_]:
    """Permutations of ``treat`` that only swap nights within the same ISO week."""
    weeks = np.array([d.isocalendar()[:2] for d in nights])
    keys = weeks[:, 0] * 100 + weeks[:, 1] if len(nights) else np.zeros(0, dtype=np.int64)
    out = np.broadcast_to(treat, (count, treat.shape[0])).copy()
    for k in np.unique(keys):
        pos = np.flatnonzero(keys == k)
        if pos.size < 2:
            continue
        order = rng.random((count, pos.size)).argsort(axis=1)
        out[:, pos] = treat[pos][order]
    return out
