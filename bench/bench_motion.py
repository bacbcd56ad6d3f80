"""Motion staging on simulated nights: heart alone vs heart + Cole-Kripke on counts (nights.motion_staging).

The simulator's motion is per-30-s "activity counts" that are not calibrated to ActiGraph counts
(docs/simulator.md), so this measures the code path and the fusion rule's direction, not the
accuracy on real trackers (no acceleration recorded with polysomnography is available).

    nice -n 10 .venv/bin/python -m bench.bench_motion [--nights 10]
"""

from __future__ import annotations

import argparse
from zoneinfo import ZoneInfo

import numpy as np

from collector.nights.compute import NightOptions, compute_night
from collector.nights.staging import Subject
from collector.sim.params import Faults, SimConfig
from tests.nights.simdata import inputs, settings_for, study

PERSONS = (("alice", 5, Faults(artefact_rate=0.02, dropouts_per_night=2.0)), ("ana", 0, None), ("ben", 7, None))
METRICS = ("tst_min", "sol_min", "waso_min")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nights", type=int, default=10, help="nights per simulated person")
    args = ap.parse_args()
    err: dict[bool, dict[str, list[float]]] = {m: {k: [] for k in METRICS} for m in (False, True)}
    changed: list[float] = []
    for name, seed, faults in PERSONS:
        cfg = SimConfig(device_stages=False, faults=faults) if faults else SimConfig(device_stages=False)
        person, st = study(args.nights, seed=seed, config=cfg, name=name)
        ps = settings_for(person)
        subject, tz = Subject(ps.age, ps.sex), ZoneInfo(ps.timezone)
        for i in range(args.nights):
            night = st.night(i)
            inp = inputs(night, ps, device_stages=False, tags=True)
            res = {}
            for m in (False, True):
                r = compute_night(inp, subject, tz, NightOptions(motion_staging=m))
                assert r is not None
                res[m] = r
                for k in METRICS:
                    err[m][k].append(float(r.fields[k]) - float(getattr(night.truth, k)))
            a, b = res[False].hypnogram, res[True].hypnogram
            if a is not None and b is not None:
                changed.append(float(np.mean(a.codes != b.codes)) * 100)
    n = len(changed)
    print(f"{n} simulated nights (3 persons x {args.nights}), lights out tagged; error = computed - truth (min)")
    print("| staging | " + " | ".join(f"{k} bias / MAE" for k in METRICS) + " |")
    print("| --- | " + " | ".join("---" for _ in METRICS) + " |")
    for m in (False, True):
        cells = [f"{np.mean(err[m][k]):+.1f} / {np.mean(np.abs(err[m][k])):.1f}" for k in METRICS]
        print(f"| {'heart + Cole-Kripke' if m else 'heart alone'} | " + " | ".join(cells) + " |")
    print(f"epochs changed by the fusion: {np.mean(changed):.1f}% on average (max {np.max(changed):.1f}%)")


if __name__ == "__main__":
    main()
