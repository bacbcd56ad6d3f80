"""Trial plans: balance, re-drawing, validation."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import numpy as np
import pytest

from collector.effects.planner import PlanSpec, assignments_for, draw, draw_many, within_week_assignments
from collector.errors import ValidationError

START = date(2026, 11, 24)


@pytest.mark.parametrize("weeks", [1, 2, 7, 8])
def test_randomised_is_balanced_within_weeks(weeks: int) -> None:
    plans = draw_many(PlanSpec(START, weeks, "randomised"), np.random.default_rng(1), 200)
    per_week = plans.reshape(200, weeks, 7).sum(axis=2)
    assert set(np.unique(per_week)) <= {3, 4}
    totals = per_week.sum(axis=1)
    assert (totals == 7 * weeks // 2).all()  # 28 of 56; odd weeks give the extra night to control
    # every night of the week is a magnesium night about half the time
    assert plans.mean(axis=0) == pytest.approx(np.full(7 * weeks, 0.5), abs=0.15)


def test_blocks_alternate_within_pairs() -> None:
    spec = PlanSpec(START, 8, "blocks", block_weeks=2)
    plans = draw_many(spec, np.random.default_rng(2), 64)
    blocks = plans.reshape(64, 4, 14)
    assert (blocks.all(axis=2) | (~blocks).all(axis=2)).all()  # whole blocks
    assert (blocks[:, 0, 0] != blocks[:, 1, 0]).all()
    assert (blocks[:, 2, 0] != blocks[:, 3, 0]).all()
    assert len({tuple(p) for p in plans}) == 4  # 2 pairs -> 4 possible plans


def test_same_seed_same_plan() -> None:
    spec = PlanSpec(START, 4, "randomised")
    a = draw(spec, np.random.default_rng(5))
    b = draw(spec, np.random.default_rng(5))
    assert (a == b).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"weeks": 0, "design": "randomised"}, "weeks"),
        ({"weeks": 6, "design": "blocks", "block_weeks": 2}, "multiple of 4"),
        ({"weeks": 8, "design": "blocks", "block_weeks": 5}, "1 to 4"),
        ({"weeks": 8, "design": "crossover"}, "design must be"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PlanSpec(START, **kwargs)


def test_assignments_for_maps_nights_into_the_plan() -> None:
    spec = PlanSpec(START, 2, "randomised")
    nights = [START - timedelta(days=1), START, START + timedelta(days=3), START + timedelta(days=30)]
    redrawn, inside = assignments_for(spec, nights, np.random.default_rng(0), 10)
    assert inside.tolist() == [False, True, True, False]
    assert redrawn.shape == (10, 2)


def test_within_week_permutations_keep_weekly_counts() -> None:
    nights = [date(2026, 11, 23) + timedelta(days=i) for i in range(21)]
    treat = np.array([i % 3 == 0 for i in range(21)])
    perms = within_week_assignments(nights, treat, np.random.default_rng(0), 50)
    for w in range(3):
        assert (perms[:, 7 * w : 7 * w + 7].sum(axis=1) == treat[7 * w : 7 * w + 7].sum()).all()
    assert not (perms == treat).all()
