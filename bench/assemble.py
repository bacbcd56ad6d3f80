"""Assemble BENCHMARKS.md from the per-area results in bench/results/*.md.

Each benchmark script writes its own results file (ratios against a baseline measured in the
same run); this script only puts them together in a fixed order.
Run: .venv/bin/python -m bench.assemble
"""

from __future__ import annotations

from pathlib import Path

ORDER = ["storage", "ble", "sim", "sim_realism", "demo", "doses", "nights", "effects", "dashboards"]
HEADER = """# Benchmarks

Every figure here was measured on this project's machines (2 cores, shared by the benchmark, the
private InfluxDB 1.6.7 and whatever else ran), so absolute rates vary from run to run: each
section therefore states its goal as a ratio against a baseline measured in the same run. Timing
goals live here, never in tests. Re-run one area with `.venv/bin/python -m bench.bench_<area>`
and re-assemble this file with `.venv/bin/python -m bench.assemble`.

"""


def main() -> None:
    root = Path(__file__).resolve().parent
    results = root / "results"
    files = {p.stem: p for p in results.glob("*.md")}
    names = [n for n in ORDER if n in files] + sorted(n for n in files if n not in ORDER)
    parts = [HEADER]
    for n in names:
        text = files[n].read_text().strip()
        if not text.startswith("#"):
            text = f"## {n}\n\n{text}"
        if text.startswith("# "):  # a file with its own top heading: one level down, all of it
            text = "\n".join("#" + ln if ln.startswith("#") else ln for ln in text.split("\n"))
        parts.append(text + "\n\n")
    (root.parent / "BENCHMARKS.md").write_text("".join(parts).rstrip() + "\n")


if __name__ == "__main__":
    main()
