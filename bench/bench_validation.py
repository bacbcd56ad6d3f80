"""Staging accuracy on real records: ``magsleep validate`` on the shared slpdb records; results to
bench/results/validation.md.

The defaults next to the combination used before (a separate wake model, ``wake_classifier =
"ws-gru-mesa"``), the defaults with transition smoothing (at the threshold best for it) and with
the classifier's own P(wake) instead of the night-relative wake model, the choice between them scored
by leave one subject out. The night-relative model's coefficients are fitted on these same records,
so its rows here are in-sample: bench/bench_wake.py gives the honest leave-one-subject-out numbers
(refitting per fold). Also the time per record and variant.

Run: ``.venv/bin/python bench/bench_validation.py [DIR]`` (default ../shared/data/slpdb beside the repo)
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collector.validation.compare import DEFAULT, METRICS, parse_variant, validate  # noqa: E402
from collector.validation.sources import find_sources  # noqa: E402


def _f(x: float | None, n: int = 2, sign: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:+.{n}f}" if sign else f"{x:.{n}f}"


def main() -> None:
    directory = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "data" / "slpdb"
    sources = find_sources(directory)
    variants = [DEFAULT, *(parse_variant(v) for v in ("old=wake_classifier=ws-gru-mesa",
                                                     "hmm=smoothing=hmm,wake_threshold=0.3",
                                                     "classifier=wake_model=classifier"))]
    t0 = time.perf_counter()
    report = validate(sources, variants)
    wall = time.perf_counter() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                            check=False).stdout.strip()
    names = ", ".join(n.record for n in report.nights["default"])
    subjects = sorted({n.subject for n in report.nights["default"]})
    lines = [
        "## Staging accuracy on real records (bench/bench_validation.py)",
        "",
        f"`magsleep validate` on {len(report.nights['default'])} slpdb records ({names}; {len(subjects)} "
        f"subjects), commit {commit}, {datetime.now(UTC):%Y-%m-%d}. slpdb is men with obstructive sleep apnoea, "
        "partial nights in a laboratory (1.3-6.3 h, most starting after midnight): expect heart-based staging "
        "to do worse here than on healthy people's whole nights. Format, method and per-night numbers: "
        "[docs/validation.md](docs/validation.md). The default's night-relative wake model was fitted on these "
        "same records, so its rows (and the leave-one-subject-out row, which only chooses among these fixed "
        "variants) are in-sample; the honest leave-one-subject-out numbers, refitting per fold, are in the next "
        "section (bench/bench_wake.py).",
        "",
        "| variant | nights | epochs | acc2 | kappa2 | acc3 | kappa3 | wake recall before onset / WASO | REM recall |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for v in variants:
        a = report.agreement(v.name)
        label = "default" if v is DEFAULT else f"{v.name} (`{', '.join(f'{k}={x}' for k, x in v.describe().items())}`)"
        lines.append(f"| {label} | {len(report.nights[v.name])} | {a.epochs} | {_f(a.acc2)} | {_f(a.kappa2)} | "
                     f"{_f(a.acc3)} | {_f(a.kappa3)} | {_f(a.wake_recall_before_onset)} / "
                     f"{_f(a.wake_recall_waso)} | {_f(a.recall_rem)} |")
    loso = report.loso()
    if loso is not None:
        a2 = loso["agreement"]
        picked = sorted(set(loso["picks"].values()))
        lines.append(f"| leave one subject out (picks: {', '.join(picked)}) | {len(report.nights['default'])} | "
                     f"{a2['epochs']} | {_f(a2['acc2'])} | {_f(a2['kappa2'])} | {_f(a2['acc3'])} | "
                     f"{_f(a2['kappa3'])} | {_f(a2['wake_recall_before_onset'])} / {_f(a2['wake_recall_waso'])} | "
                     f"{_f(a2['recall_rem'])} |")
    lines += ["| published: sleepecg on 1,000 SHHS nights | | | 0.83 | 0.60 | 0.75 | 0.54 | | |", "",
              "Nightly metrics, computed minus expert (slope: OLS of computed on expert over nights):", "",
              "| metric | " + " | ".join(f"{v.name}: n | bias | MAE | 95% limits | slope" for v in variants) + " |",
              "| --- | " + " | ".join("---: | ---: | ---: | --- | ---:" for _ in variants) + " |"]
    for key, label, unit in METRICS:
        cells = []
        for v in variants:
            s = report.metric(v.name, key)
            limits = "–" if s.loa_low is None or s.loa_high is None else f"{s.loa_low:.0f} .. {s.loa_high:.0f}"
            cells.append(f"{s.n} | {_f(s.bias, 1, sign=True)} | {_f(s.mae, 1)} | {limits} | {_f(s.slope)}")
        lines.append(f"| {label} ({unit}) | " + " | ".join(cells) + " |")
    per = wall / max(1, len(sources) * len(variants))
    lines += ["", f"Time: {wall:.1f} s for {len(sources)} records x {len(variants)} variants in one process "
                  f"({per:.2f} s per record and variant, reading and model loading included).", ""]
    out = ROOT / "bench" / "results" / "validation.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
