"""Bare `magsleep plan` shows the plan; it creates one only when asked to (--weeks etc.)."""

from __future__ import annotations

from collector.effects.store import PlanStore
from tests.cli.console import Console, flat


def test_bare_plan_shows_and_never_creates(console: Console) -> None:
    store = PlanStore(console.home / "state" / "plans.sqlite")
    res = console.run("plan")
    assert res.returncode == 0, res.stderr
    assert "alice has no trial plan yet. Create one with: magsleep plan --weeks 8" in flat(res.stdout)
    assert store.active("alice") is None

    res = console.run("plan", "--weeks", "2", "--seed", "5", "--no-write")
    assert res.returncode == 0, res.stderr
    made = store.active("alice")
    assert made is not None

    for argv in (["plan"], ["plan", "-p", "alice"]):
        res = console.run(*argv, COLUMNS="120")
        assert res.returncode == 0, res.stderr
        out = flat(res.stdout)
        assert f"randomised plan {made.plan_id} (2 weeks from {made.spec.start}, seed 5)" in out
        assert "only with --replace" in out
        again = store.active("alice")
        assert again is not None and again.plan_id == made.plan_id
