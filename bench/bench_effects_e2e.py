"""End-to-end validation of effects: planted effects on true sleep -> simulator -> real staging -> effects.

Each simulated person (collector.sim: ``PersonProfile.sample``, ``plan_study`` with randomised
dosing, or with ``--design blocks`` alternating one-week control and magnesium blocks) gets every
night generated beat by beat and staged by production's ``compute_night`` with the default settings
(lights out / on tagged, heartbeats only: no device stages, no motion), then magsleep's own effects
code (``analyse_person``, then the validity correction of collector/effects/validity.py) estimates
magnesium minus control per metric. Two scenarios per person on the same nights: ``effect`` (the
simulator's default plant: TST +16.1 min, SOL -17.4 min, REM and deep +4 min, ln RMSSD +0.05) and
``null`` (nothing planted). Control nights are the same in both (the plant touches dose nights
only), so they are staged once.

The estimand of a metric is its planted effect on the model scale: the simulator's additive plant
where there is one (TST +16.1 min, ln RMSSD +0.05, REM +4 min, WASO and heart rate 0), else (SOL,
whose plant is a per-person factor; SE and awakenings, which follow from the others) the mean over
people of (mean on magnesium nights - mean on control nights) of the *true* nightly values
(randomised nights: unbiased for the planted effect); 0 under null.

Staging costs about 0.3 s of CPU per night on a quiet machine (200 people x 42 staged nights: about
45 CPU minutes per design), more under load: ``--budget`` stops starting new people
after that many seconds; staged nights are cached (``--cache``) so the analysis can be redone
(e.g. after regenerating the validity table) without staging again (``--analyse-only``).

    nice -n 10 .venv/bin/python -m bench.bench_effects_e2e --design randomised --people 200 --budget 7200
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
END = date(2026, 11, 1)
NIGHTS = 28  # default: 4 weeks, about 14 vs 14 nights
METRICS = ("sol_min", "tst_min", "waso_min", "se_pct", "awakenings", "rem_min", "hr_mean_bpm", "hr_min5_bpm",
           "ln_rmssd")
LOG1P = {"sol_min", "waso_min", "awakenings"}
#: The simulator's additive plants (collector.sim.params.Effects defaults) on the model scale.
NOMINAL = {"tst_min": 16.1, "ln_rmssd": 0.05, "rem_min": 4.0, "waso_min": 0.0, "hr_mean_bpm": 0.0,
           "hr_min5_bpm": 0.0}
DESIGNS = ("randomised", "blocks")
BLOCK_NIGHTS = 7  # blocks design: alternating one-week control / magnesium blocks (C M C M over 28 nights)


def markers(design: str) -> tuple[str, str]:
    """The start and end markers of one design's section in bench/results/effects.md."""
    return f"<!-- e2e:{design}:start (bench/bench_effects_e2e.py) -->", f"<!-- e2e:{design}:end -->"


def design_text(design: str, nights: int) -> str:
    if design == "blocks":
        return (f"block dosing: alternating {BLOCK_NIGHTS}-night control and magnesium blocks starting with "
                f"control, {nights // 2} vs {nights // 2}")
    return f"randomised dosing, about {nights // 2} vs {nights // 2}"


def _values(src: dict[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in METRICS:
        v = src.get(m)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[m] = float(v)
    return out


def stage_person(i: int, nights: int = NIGHTS, design: str = "randomised") -> dict[str, Any]:
    """Generate and stage one person's nights in both scenarios (runs in a worker process)."""
    from zoneinfo import ZoneInfo

    from collector.nights.compute import compute_night
    from collector.nights.run import night_options
    from collector.nights.staging import Subject
    from collector.settings import NightsSettings
    from collector.sim.nights import plan_study
    from collector.sim.params import Dosing, Effects, SimConfig
    from collector.sim.person import PersonProfile
    from tests.nights.simdata import inputs, settings_for

    opts = night_options(NightsSettings())
    person = PersonProfile.sample(f"e2e{i}", seed=1000 + i)
    ps = settings_for(person)
    tz = ZoneInfo(ps.timezone)
    subject = Subject(person.age, person.sex)
    cpu0 = time.process_time()
    out: dict[str, Any] = {"person": i, "n_nights": nights, "design": design, "stamp": stamp(), "nights": {}}
    dosing = Dosing(design="blocks", block_nights=BLOCK_NIGHTS) if design == "blocks" else Dosing(design="randomised")
    staged: dict[Any, dict[str, Any]] = {}
    for scenario, eff in (("effect", Effects()), ("null", Effects.null())):
        cfg = SimConfig(effects=eff, dosing=dosing, motion=False, device_stages=False)
        st = plan_study(person, nights, seed=1000 + i, end=END, config=cfg)
        rows = []
        for k, plan in enumerate(st.plans):
            key = plan  # equal plans (control nights of both scenarios) give equal nights
            if key not in staged:
                night = st.night(k)
                res = compute_night(inputs(night, ps, device_stages=False, motion=False, tags=True), subject, tz,
                                    opts)
                staged[key] = {
                    "truth": _values(night.truth.as_dict(hypnogram=False)),
                    "computed": _values(dict(res.fields)) if res is not None and not res.flagged else {},
                    "staging": res.staging if res is not None else "none",
                }
            rows.append({"night": plan.night.isoformat(), "dose": plan.dose, **staged[key]})
        out["nights"][scenario] = rows
    out["staged"] = len(staged)
    out["cpu_s"] = time.process_time() - cpu0
    return out


def stamp() -> dict[str, Any]:
    """What the staged nights depend on: a cache line with another stamp is staged again."""
    from dataclasses import asdict

    from collector.nights.run import ALGO_VERSION, night_options
    from collector.settings import NightsSettings

    raw = {"algo_version": ALGO_VERSION, "options": asdict(night_options(NightsSettings())),
           "staging_commit": _git("log", "-1", "--format=%h", "--", "collector/nights"),
           "sim_commit": _git("log", "-1", "--format=%h", "--", "collector/sim")}
    out: dict[str, Any] = json.loads(json.dumps(raw))
    return out


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        return ""


def provenance() -> dict[str, Any]:
    from collector.effects.validity import load_table

    sim_dirty = _git("status", "--porcelain", "--", "collector/sim", "collector/nights", "collector/effects")
    return {"commit": _git("rev-parse", "--short", "HEAD"),
            "sim_commit": _git("log", "-1", "--format=%h", "--", "collector/sim"),
            "uncommitted": sorted({line.split(maxsplit=1)[-1] for line in sim_dirty.splitlines()}),
            "validity": {k: load_table().provenance[k] for k in ("date", "algo_version", "options")}}


def _model(m: str, v: float) -> float:
    return math.log1p(v) if m in LOG1P else v


def analyse(people: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario and metric: coverage / rejection of the corrected and the uncorrected intervals."""
    from collector.effects.analysis import AnalysisOptions, NightData, analyse_person
    from collector.effects.io import apply_validity

    n_nights = people[0]["n_nights"] if people else NIGHTS
    opts = AnalysisOptions(permutations=1, horizon_nights=n_nights)
    out: dict[str, Any] = {}
    for scenario in ("effect", "null"):
        # the estimand: pooled mean difference of the true values on the model scale
        est: dict[str, float] = {}
        for m in METRICS:
            diffs = []
            for p in people:
                rows = p["nights"][scenario]
                mg = [_model(m, r["truth"][m]) for r in rows if r["dose"] and m in r["truth"]]
                ct = [_model(m, r["truth"][m]) for r in rows if not r["dose"] and m in r["truth"]]
                if mg and ct:
                    diffs.append(float(np.mean(mg) - np.mean(ct)))
            empirical = float(np.mean(diffs)) if diffs else math.nan
            est[m] = 0.0 if scenario == "null" else NOMINAL.get(m, empirical)
            est[f"{m}:empirical"] = empirical
        stats: dict[str, dict[str, Any]] = {m: {"n": 0, "reported": 0, "cover": 0, "excl0": 0, "raw_n": 0,
                                                "raw_cover": 0, "raw_excl0": 0, "status": ""} for m in METRICS}
        for p in people:
            nights = [NightData(date.fromisoformat(r["night"]), "magnesium" if r["dose"] else "control",
                                r["computed"]) for r in p["nights"][scenario] if r["computed"]]
            raw = [r for r in analyse_person(f"e2e{p['person']}", nights, opts, metrics=list(METRICS))
                   if r.comparison == "mg_vs_control"]
            done, assessments = apply_validity(raw, "computed")
            for r0, r in zip(raw, done, strict=True):
                s = stats[r.metric]
                s["status"] = assessments[r.metric].status
                s["n"] += 1
                target = est[r.metric]

                def lo_hi(x: Any) -> tuple[float, float] | None:
                    if not x.reported or x.ci_low is None or x.ci_high is None:
                        return None
                    if x.metric in LOG1P:
                        if x.ratio_low is None or x.ratio_high is None:
                            return None
                        return math.log(x.ratio_low), math.log(x.ratio_high)
                    return x.ci_low, x.ci_high

                ci0 = lo_hi(r0)
                if ci0 is not None:
                    s["raw_n"] += 1
                    s["raw_cover"] += ci0[0] <= target <= ci0[1]
                    s["raw_excl0"] += ci0[0] > 0 or ci0[1] < 0
                ci = lo_hi(r)
                if ci is not None:
                    s["reported"] += 1
                    s["cover"] += ci[0] <= target <= ci[1]
                    s["excl0"] += ci[0] > 0 or ci[1] < 0
        out[scenario] = {"estimand": est, "stats": stats}
    # the simulator's own within-person slope of computed on true (what the staging does here)
    slopes: dict[str, float | None] = {}
    for m in METRICS:
        xs: list[float] = []
        ys: list[float] = []
        for p in people:
            rows = [r for r in p["nights"]["effect"] if m in r["truth"] and m in r["computed"]]
            if len(rows) < 3:
                continue
            x = np.array([_model(m, r["truth"][m]) for r in rows])
            y = np.array([_model(m, r["computed"][m]) for r in rows])
            xs += list(x - x.mean())
            ys += list(y - y.mean())
        xa, ya = np.array(xs), np.array(ys)
        slopes[m] = float(xa @ ya / (xa @ xa)) if xa.size > 2 and xa @ xa > 0 else None
    out["sim_slope"] = slopes
    return out


def _binom_se(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else math.nan


def rate(k: int, n: int) -> str:
    """k/n with its Wilson 95% interval."""
    if n == 0:
        return "—"
    z = 1.959964
    p = k / n
    mid = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return f"{p:.2f} ({max(0.0, mid - half):.2f}-{min(1.0, mid + half):.2f})"


def render(people: list[dict[str, Any]], res: dict[str, Any], prov: dict[str, Any], seconds: float,
           workers: int, design: str = "randomised") -> list[str]:
    from collector.effects.verdict import PLAIN

    n = len(people)
    nights = people[0]["n_nights"] if people else NIGHTS
    staged = sum(p["staged"] for p in people)
    eff, null = res["effect"], res["null"]
    unc = ", ".join(prov["uncommitted"]) or "none"
    start, end = markers(design)
    timed = [p for p in people if "cpu_s" in p]
    cpu_per_night = sum(p["cpu_s"] for p in timed) / max(1, sum(p["staged"] for p in timed)) if timed else math.nan
    lines = [
        start,
        f"## End to end ({design} design): planted effects through the simulator, the real staging and the "
        "effects code", "",
        f"`bench/bench_effects_e2e.py --design {design}`: {n} simulated people x {nights} nights "
        f"({design_text(design, nights)}), every night generated beat by beat by collector/sim and staged by "
        "`compute_night` with the default settings (heartbeats only, lights out/on tagged), then "
        "`analyse_person` and the validity correction (collector/effects/validity.py). Scenario "
        "**effect**: the simulator's default plant (TST +16.1 min, SOL -17.4 min, deep/REM +4 min, ln RMSSD "
        "+0.05); **null**: nothing planted, same control nights. "
        f"{staged} nights staged, {cpu_per_night:.2f} s of CPU per night ({len(timed)} people timed); the last "
        f"run took {seconds / 60:.0f} min on {workers} worker(s) (niced).", "",
        f"Run on commit {prov['commit']} (simulator last committed in {prov['sim_commit']}; uncommitted "
        f"changes in the working tree at run time in: {unc}); validity table of {prov['validity']['date']} "
        f"(ALGO_VERSION {prov['validity']['algo_version']}).", "",
    ]
    if n < 200:
        lines += [
            f"**Too few people for the goal.** The issue asks for >= 200 people per design; staging took "
            f"{cpu_per_night:.2f} s of CPU per night here: run `nice -n 10 .venv/bin/python -m "
            f"bench.bench_effects_e2e --design {design} --people 200 --budget 36000`. With {n} people a "
            f"rate's binomial SE is up to {_binom_se(0.5, n):.2f}: read the rows below as indications, "
            "not as a pass.", ""]
    lines += [
        "| metric | magsleep does | estimand (model scale; pooled truth) | reported | coverage (corrected) | "
        "false positives (null) | uncorrected coverage | uncorrected false positives | simulator slope |",
        "| --- | --- | ---: | ---: | --- | --- | --- | --- | ---: |",
    ]
    for m in METRICS:
        se, sn = eff["stats"][m], null["stats"][m]
        status = {"calibrated": "corrected by the slope", "not_measurable": "withholds it",
                  "unchecked": "reports as measured"}.get(se["status"], se["status"])
        rep = se["reported"]
        cov, fp = rate(se["cover"], rep), rate(sn["excl0"], sn["reported"])
        rc, rf = rate(se["raw_cover"], se["raw_n"]), rate(sn["raw_excl0"], sn["raw_n"])
        sl = res["sim_slope"].get(m)
        lines.append(f"| {PLAIN.get(m, m)} (`{m}`) | {status} | {eff['estimand'][m]:+.3f}; "
                     f"{eff['estimand'][m + ':empirical']:+.3f} | {rep}/{se['n']} | "
                     f"{cov} | {fp} | {rc} | {rf} | {'—' if sl is None else f'{sl:.2f}'} |")
    lines += [
        "",
        "Rates with their Wilson 95% interval. coverage: share of 95% intervals (anytime-valid, as "
        "`magsleep effects` shows them) containing the "
        "estimand, effect scenario; false positives: share excluding 0 under null; uncorrected: the same "
        "intervals before the validity correction, for every metric with an estimate (what the output "
        "said before this issue); simulator slope: pooled within-person OLS slope of computed on true over "
        "the staged nights (1: the staging follows this simulator's night-to-night changes). Goal: every "
        "reported metric coverage >= 0.90 and false positives <= 0.06.",
        end,
    ]
    return lines


def write_section(path: Path, lines: list[str]) -> None:
    """Replace the section between the first and last line's markers (or append it)."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Effects: validation on simulated people\n"
    block = "\n".join(lines)
    start, end = lines[0], lines[-1]
    if start in text and end in text:
        a = text.index(start)
        b = text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def run(people: int, workers: int, budget: float, cache: Path, nights: int,
        design: str = "randomised") -> tuple[list[dict[str, Any]], float]:
    done: list[dict[str, Any]] = []
    if cache.exists():
        now = stamp()
        done = [p for x in cache.read_text().splitlines() if x.strip() and (p := json.loads(x)).get("stamp") == now
                and p.get("n_nights") == nights and p.get("design", "randomised") == design]
        cache.write_text("".join(json.dumps(p) + "\n" for p in done))  # staged by other code: dropped
    have = {p["person"] for p in done}
    todo: Iterable[int] = (i for i in range(people) if i not in have)
    t0 = time.monotonic()
    with ProcessPoolExecutor(max_workers=workers) as ex, cache.open("a") as fh:
        running: set[Future[dict[str, Any]]] = set()
        for i in todo:
            if time.monotonic() - t0 > budget:
                break
            while len(running) >= workers:
                fin, running_left = wait(running, return_when=FIRST_COMPLETED)
                running = set(running_left)
                for f in fin:
                    p = f.result()
                    done.append(p)
                    fh.write(json.dumps(p) + "\n")
                    fh.flush()
                    print(f"person {p['person']}: {p['staged']} nights staged ({time.monotonic() - t0:.0f} s)",
                          file=sys.stderr)
            if time.monotonic() - t0 > budget:
                break
            running.add(ex.submit(stage_person, i, nights, design))
        for f in running:
            p = f.result()
            done.append(p)
            fh.write(json.dumps(p) + "\n")
    return sorted(done, key=lambda p: p["person"]), time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--nights", type=int, default=NIGHTS, help="nights per person (a new cache for another value)")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--budget", type=float, default=600.0, help="seconds after which no new person is started")
    ap.add_argument("--design", choices=DESIGNS, default="randomised", help="how dose nights are chosen")
    ap.add_argument("--cache", type=Path, default=None,
                    help="staged nights (default .state/bench_effects_e2e_<design>.jsonl)")
    ap.add_argument("--analyse-only", action="store_true", help="only re-analyse the cached nights")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "effects.md")
    a = ap.parse_args()
    if a.cache is None:
        a.cache = ROOT / ".state" / f"bench_effects_e2e_{a.design}.jsonl"
    a.cache.parent.mkdir(parents=True, exist_ok=True)
    if a.analyse_only:
        people = [json.loads(x) for x in a.cache.read_text().splitlines() if x.strip()]
        seconds = float("nan")
        meta = a.cache.with_suffix(".meta.json")
        if meta.exists():
            seconds = json.loads(meta.read_text())["seconds"]
    else:
        people, seconds = run(a.people, a.workers, a.budget, a.cache, a.nights, a.design)
        a.cache.with_suffix(".meta.json").write_text(json.dumps({"seconds": seconds, "workers": a.workers}))
    res = analyse(people)
    lines = render(people, res, provenance(), seconds, a.workers, a.design)
    write_section(a.out, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
