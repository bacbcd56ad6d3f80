"""Looking every morning (issue 21): anytime-valid intervals on simulated people -> bench/results/effects.md.

Run: nice -n 10 .venv/bin/python bench/bench_sequential.py [--people 300] [--planted 150] [--workers 2]

Every simulated person (tests/effects/simpeople.py: AR(1) 0.3 night-to-night correlation, weekend
effect, TST and SOL simulated directly) follows a trial plan of 8 or 12 weeks, randomised or in
2-week blocks, and looks at `effects.analysis.compare` (the call `magsleep effects` makes) every
morning from the first result it shows to the plan's end. Each look records whether the answer
is "clear": per metric at alpha 0.05 (a one-metric analysis), for the verdict's two primary
metrics with the Bonferroni split (0.025 each, as `analyse_person` does), and for the
fixed-sample interval looked at the same way (what magsleep did before). The section it writes
replaces the one between its markers in bench/results/effects.md.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import special

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from collector.effects.analysis import AnalysisOptions, EffectResult, compare  # noqa: E402
from collector.effects.metrics import METRICS  # noqa: E402
from collector.effects.sequential import critical, z_boundary  # noqa: E402
from tests.effects.simpeople import simulate  # noqa: E402

BEGIN, END = "<!-- bench_sequential: begin -->", "<!-- bench_sequential: end -->"
METRIC_NAMES = ("tst_min", "sol_min")
PLANTED = {"tst_min": 30.0, "sol_min": math.log(0.75)}  # +30 min; onset 25% faster (ratio of x + 1)
CELLS = [(w, d) for w in (8, 12) for d in ("randomised", "blocks")]
OPTS = AnalysisOptions(permutations=1)


@dataclass
class PersonOut:
    """What one person's daily looks gave, per metric."""

    shown_from: dict[str, int] = field(default_factory=dict)  # night of the first result
    any_05: dict[str, bool] = field(default_factory=dict)  # clear at some look, alpha 0.05
    any_025: dict[str, bool] = field(default_factory=dict)  # clear at some look, alpha 0.025
    first_025: dict[str, int | None] = field(default_factory=dict)  # night of the first clear (0.025)
    first_05: dict[str, int | None] = field(default_factory=dict)
    any_fixed: dict[str, bool] = field(default_factory=dict)  # fixed-sample CI, looked at daily
    end_fixed: dict[str, bool] = field(default_factory=dict)  # fixed-sample, one look at the end
    cover_05: dict[str, bool] = field(default_factory=dict)  # anytime interval at the end covers the truth
    cover_025: dict[str, bool] = field(default_factory=dict)
    cover_fixed: dict[str, bool] = field(default_factory=dict)


def _model_interval(r: EffectResult, alpha: float) -> tuple[float, float]:
    assert r.model_estimate is not None and r.model_se is not None and r.df is not None
    assert r.horizon is not None
    q = critical(r.n_mg + r.n_control, r.horizon, r.df, alpha)
    return r.model_estimate - q * r.model_se, r.model_estimate + q * r.model_se


def _fixed_model(r: EffectResult) -> tuple[float, float]:
    """The fixed-sample 95% interval on the model scale (Student t with the fit's df)."""
    assert r.model_estimate is not None and r.model_se is not None and r.df is not None
    q = float(special.stdtrit(r.df, 0.975))
    return r.model_estimate - q * r.model_se, r.model_estimate + q * r.model_se


def _excludes_zero(lo: float, hi: float) -> bool:
    return lo > 0 or hi < 0


def one_person(args: tuple[int, int, str, bool]) -> PersonOut:
    """Daily looks of one simulated person from the first shown result to the plan's end."""
    seed, weeks, design, planted = args
    rng = np.random.default_rng(seed)
    effects = PLANTED if planted else {}
    p = simulate(rng, design, weeks, dict(effects), metrics=METRIC_NAMES)
    arm = {x.night: x.status == "magnesium" for x in p.nights}
    n_all = len(p.nights)
    out = PersonOut()
    for m in METRIC_NAMES:
        spec, truth = METRICS[m], effects.get(m, 0.0)
        out.any_05[m] = out.any_025[m] = out.any_fixed[m] = False
        out.first_05[m] = out.first_025[m] = None
        for k in range(1, n_all + 1):
            last = k == n_all
            if out.any_025[m] and out.any_fixed[m] and not last:
                continue  # already stopped: only the end look is still needed (power, coverage)
            r = compare("sim", spec, p.nights[:k], arm, "mg_vs_control", OPTS, plan=p.plan,
                        randomise=False, alpha=0.05)
            if not r.reported:
                continue
            out.shown_from.setdefault(m, k)
            c05 = _excludes_zero(*_model_interval(r, 0.05))
            c025 = _excludes_zero(*_model_interval(r, 0.025))
            fixed = _fixed_model(r)
            if c05 and not out.any_05[m]:
                out.any_05[m], out.first_05[m] = True, k
            if c025 and not out.any_025[m]:
                out.any_025[m], out.first_025[m] = True, k
            out.any_fixed[m] |= _excludes_zero(*fixed)
            if last:
                out.end_fixed[m] = _excludes_zero(*fixed)
                lo, hi = _model_interval(r, 0.05)
                out.cover_05[m] = lo <= truth <= hi
                lo, hi = _model_interval(r, 0.025)
                out.cover_025[m] = lo <= truth <= hi
                out.cover_fixed[m] = fixed[0] <= truth <= fixed[1]
    return out


def run_cell(pool: ProcessPoolExecutor, weeks: int, design: str, planted: bool, people: int,
             seed: int) -> list[PersonOut]:
    seeds = np.random.SeedSequence(seed).generate_state(people)
    tasks = [(int(s), weeks, design, planted) for s in seeds]
    return list(pool.map(one_person, tasks, chunksize=8))


def rate(xs: Iterator[bool] | list[bool]) -> float:
    v = list(xs)
    return sum(v) / len(v) if v else math.nan


def se(p: float, n: int) -> float:
    return math.sqrt(max(p * (1 - p), 1e-12) / n)


NULL_HEAD = ["| plan | first shown (night, median) | TST anytime | SOL anytime | either, Bonferroni | "
             "either, anytime 0.05 each | TST fixed daily | SOL fixed daily | either fixed daily | "
             "TST fixed once | ± SE at 0.05 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]


def null_row(w: int, d: str, people: list[PersonOut]) -> str:
    first = statistics.median(p.shown_from.get("tst_min", 0) for p in people)
    return (f"| {w} wk {d} | {first:.0f} | {rate(p.any_05['tst_min'] for p in people):.3f} | "
            f"{rate(p.any_05['sol_min'] for p in people):.3f} | "
            f"{rate(p.any_025['tst_min'] or p.any_025['sol_min'] for p in people):.3f} | "
            f"{rate(p.any_05['tst_min'] or p.any_05['sol_min'] for p in people):.3f} | "
            f"{rate(p.any_fixed['tst_min'] for p in people):.3f} | "
            f"{rate(p.any_fixed['sol_min'] for p in people):.3f} | "
            f"{rate(p.any_fixed['tst_min'] or p.any_fixed['sol_min'] for p in people):.3f} | "
            f"{rate(p.end_fixed['tst_min'] for p in people):.3f} | {se(0.05, len(people)):.3f} |")


def write_section(path: Path, begin: str, end: str, section: str) -> None:
    """Replace the section between ``begin`` and ``end`` in ``path`` (or append it)."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def precision(cell: str, people: int, workers: int, out: Path) -> None:
    """One null cell with many people: the any-look rates with a small SE (its own section)."""
    w_s, d = cell.split(":")
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        res = run_cell(pool, int(w_s), d, False, people, 2300)
    begin, end = "<!-- bench_sequential_precision: begin -->", "<!-- bench_sequential_precision: end -->"
    lines = [begin, f"### One null cell with {people} people", "",
             f"`bench/bench_sequential.py --precision {cell} --people {people}` (other seeds than the table "
             "above; same columns).", "", *NULL_HEAD, null_row(int(w_s), d, res), "",
             f"Time: {time.perf_counter() - t0:.0f} s with {workers} worker processes.", end]
    write_section(out, begin, end, "\n".join(lines))
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--people", type=int, default=300, help="simulated people per null cell")
    ap.add_argument("--planted", type=int, default=150, help="simulated people per planted-effect cell")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "effects.md")
    ap.add_argument("--precision", metavar="WEEKS:DESIGN",
                    help="only this null cell (e.g. 8:randomised), with --people people, in its own section")
    args = ap.parse_args()
    if args.precision:
        precision(args.precision, args.people, args.workers, args.out)
        return
    t0 = time.perf_counter()
    null: dict[tuple[int, str], list[PersonOut]] = {}
    eff: dict[tuple[int, str], list[PersonOut]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for i, (w, d) in enumerate(CELLS):
            null[w, d] = run_cell(pool, w, d, False, args.people, 2100 + i)
            print(f"null {w} wk {d}: {time.perf_counter() - t0:.0f} s", flush=True)
        for i, (w, d) in enumerate(CELLS):
            eff[w, d] = run_cell(pool, w, d, True, args.planted, 2200 + i)
            print(f"planted {w} wk {d}: {time.perf_counter() - t0:.0f} s", flush=True)
    elapsed = time.perf_counter() - t0
    z05, z025 = float(z_boundary(1.0, 0.05)), float(z_boundary(1.0, 0.025))
    out = [BEGIN, "## Looking every morning: anytime-valid intervals (issue 21)", "",
           f"Generated by `bench/bench_sequential.py` ({args.people} simulated people per null cell, "
           f"{args.planted} per planted-effect cell; {elapsed / 60:.0f} minutes with {args.workers} worker "
           f"processes on a shared 2-core machine). Each person follows a trial plan and looks at "
           "`effects.analysis.compare` every morning from the first result shown (a quarter of the plan's "
           "nights, at least 3 per arm) to the plan's end; blocks are 2-week blocks. Metrics simulated "
           "directly (AR(1) 0.3, weekend effect; TST SD 45 min, ln SOL SD 0.6). **anytime** is magsleep's "
           "interval now (docs/effects.md), at alpha 0.05 for a one-metric analysis and 0.025 per metric "
           "when TST and SOL share 0.05 (Bonferroni, as `magsleep effects` does); **fixed daily** is the "
           "fixed-sample 95% interval looked at every morning (magsleep before issue 21); **fixed once** "
           "is one look at the plan's end. "
           f"Boundary at the plan's end: {z05:.2f} SE (alpha 0.05), {z025:.2f} (0.025), vs 1.96.", "",
           "### Under the null: share of people who ever saw \"clear\"", "",
           "Goal: per metric <= 0.06 (anytime, alpha 0.05); any primary metric <= 0.05 (Bonferroni).", "",
           *NULL_HEAD]
    worst = 0.0
    worst_fam = 0.0
    for (w, d), people in null.items():
        worst = max(worst, rate(p.any_05["tst_min"] for p in people), rate(p.any_05["sol_min"] for p in people))
        worst_fam = max(worst_fam, rate(p.any_025["tst_min"] or p.any_025["sol_min"] for p in people))
        out.append(null_row(w, d, people))
    pooled = [p.any_05[m] for people in null.values() for p in people for m in METRIC_NAMES]
    pr = rate(pooled)
    out += ["", f"Highest per-metric any-look rate: {worst:.3f} (goal <= 0.06); pooled over all "
            f"{len(pooled)} person-metrics: {pr:.3f} (± {se(pr, len(pooled)):.3f}); highest rate of any "
            f"primary metric clear with the Bonferroni split: {worst_fam:.3f} (goal <= 0.05).", "",
            "### Planted effects: TST +30 min and SOL 25% faster (both at once)", "",
            "Power = share of people for whom the answer became clear by the plan's end. \"fixed once\" is "
            "today's single look at the end (alpha 0.05 per metric, no multiplicity); the cost of honesty "
            "is the gap to the anytime columns. Night = calendar night of the plan on which the answer "
            "first became clear (median among those for whom it did). Coverage: the interval at the "
            "plan's end contains the planted effect (goal >= 0.93).", "",
            "| plan | metric | fixed once power | anytime power (0.05) | median night clear | "
            "anytime power (Bonferroni 0.025) | median night clear | coverage anytime 0.05 | "
            "coverage Bonferroni | coverage fixed | ± SE |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    low_cov = 1.0
    for (w, d), people in eff.items():
        n = len(people)
        for m in METRIC_NAMES:
            n05 = [k for p in people if (k := p.first_05[m]) is not None]
            n025 = [k for p in people if (k := p.first_025[m]) is not None]
            c05, c025 = rate(p.cover_05[m] for p in people), rate(p.cover_025[m] for p in people)
            low_cov = min(low_cov, c05)
            pw = rate(p.end_fixed[m] for p in people)
            out.append(
                f"| {w} wk {d} | {m} | {pw:.3f} | {rate(p.any_05[m] for p in people):.3f} | "
                f"{statistics.median(n05) if n05 else math.nan:.0f} | {rate(p.any_025[m] for p in people):.3f} | "
                f"{statistics.median(n025) if n025 else math.nan:.0f} | {c05:.3f} | {c025:.3f} | "
                f"{rate(p.cover_fixed[m] for p in people):.3f} | {se(pw, n):.3f} |")
    out += ["", f"Lowest end-of-plan coverage of the anytime interval: {low_cov:.3f} (goal >= 0.93).", "",
            f"Total bench time: {elapsed:.0f} s with {args.workers} worker processes.", END]
    section = "\n".join(out)
    write_section(args.out, BEGIN, END, section)
    print(section)


if __name__ == "__main__":
    main()
