"""``magsleep demo``: the whole system on virtual wearables (see collector/app/demo.py and docs/demo.md)."""

from __future__ import annotations

import logging
import math
import shlex
import shutil
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from collector.cli.common import console, fail
from collector.errors import MagsleepError

#: effect metrics shown in the closing summary (all of them are in the report and `magsleep effects`)
SUMMARY_METRICS = ("sol_min", "tst_min", "waso_min", "rem_min", "ln_rmssd", "hr_mean_bpm")


class RichProgress:
    """The demo's progress as rich progress bars."""

    def __init__(self, out: Console) -> None:
        self.out = out
        self.bar = Progress(
            TextColumn("{task.description:<44}"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%  {task.fields[extra]}"),
            TimeElapsedColumn(),
            console=out,
        )
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def step(self, key: str, description: str, total: float) -> None:
        self.tasks[key] = self.bar.add_task(description, total=total, extra="")

    def update(self, key: str, completed: float, **fields: Any) -> None:
        extra = f"{fields['points']:,} points" if "points" in fields else ""
        self.bar.update(self.tasks[key], completed=completed, extra=extra)

    def note(self, text: str) -> None:
        self.bar.console.print(f"  {text}", highlight=False)


def _num(v: Any, fmt: str = "{:.0f}") -> str:
    return fmt.format(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else "-"


def _print_summary(out: Console, res: Any, opts: Any) -> None:
    from collector.app.demo import dashboards_dir

    cfg = shlex.quote(_shown(res.config))
    prog = _program()
    out.rule("[bold]magsleep demo: done")
    live = sum(len(p.straps) for p in res.live)
    got = sum(s.received for p in res.live for s in p.straps)
    watch = sum(len(p.watches) for p in res.live)
    pulls = sum(w.pulls for p in res.live for w in p.watches)
    out.print(
        f"Collected {len(res.live)} live night(s) through the real daemon ({live} strap-nights, "
        f"{got:,} notifications; {watch} watch-night(s), {pulls} sleeplog pulls), "
        f"backfilled {res.backfilled_nights} simulated nights ({res.backfilled_points:,} points), "
        f"logged {res.doses_logged} magnesium doses through the dose journal, "
        f"computed {res.nights_computed} nights.", highlight=False)

    for person in res.persons:
        rows = [r for r in res.night_rows if r.get("person") == person]
        t = Table(title=f"{person}: the last nights ({len(rows)} in all)", title_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("night", "dose", "SOL", "TST", "WASO", "SE %", "REM", "RMSSD", "from", "staging"):
            t.add_column(col, justify="left" if col in ("night", "dose", "from", "staging") else "right")
        for r in rows[-7:]:
            t.add_row(str(r.get("night")), "Mg" if r.get("dose") == "magnesium" else str(r.get("dose")),
                      _num(r.get("sol_min")), _num(r.get("tst_min")), _num(r.get("waso_min")),
                      _num(r.get("se_pct")), _num(r.get("rem_min")), _num(r.get("rmssd_ms")),
                      "live" if r.get("source") != "sim" else "sim", str(r.get("staging") or "-"))
        out.print(t)
    out.print("Minutes: SOL to fall asleep, TST total sleep, WASO awake after sleep onset, REM; SE sleep "
              "efficiency; RMSSD (ms) heart rate variability. from: live = collected by the daemon from the "
              "virtual strap, sim = backfilled. staging: device = the watch's own sleep stages (ana's Bangle.js "
              "sleeplog: 10-minute slots, no REM), computed = staged from the strap's RR intervals.", highlight=False)

    out.print(f"\n[bold]Effects of magnesium[/bold] (planted in the simulation: sleep onset "
              f"{res.planted.get('sol_min', 0):+.1f} min, total sleep {res.planted.get('tst_min', 0):+.1f} min)")
    if res.effects_error:
        out.print(f"  {res.effects_error}", highlight=False)
    for person, results in res.effects.items():
        _print_person_effects(out, res, person, results)

    out.print("\n[bold]Where everything is[/bold]")
    state = "running" if res.influx_running else "stopped"
    lines = [
        f"  InfluxDB:    {res.influx_url}, database {res.database!r} ({state}; InfluxQL; data in "
        f"{_shown(res.directory / 'influxdb')})",
        f"  state dir:   {_shown(res.directory)} (settings: {_shown(res.config)})",
        *(f"  report:      {_shown(path)}" for path in res.reports.values()),
    ]
    dash = dashboards_dir()
    if dash is not None:
        lines.append(f"  dashboards:  {_shown(dash)}/*.json (Grafana; docs/dashboards.md)")
    out.print("\n".join(lines), highlight=False, soft_wrap=True)
    out.print("\n[bold]Look at it[/bold]")
    first_report = next(iter(res.reports.values()), None)
    look = []
    if not res.influx_running:
        look.append(f"  {prog} --config {cfg} influx start    # the demo's InfluxDB again (stopped; the "
                    "commands below need it)")
    look += [
        f"  {prog} --config {cfg} nights --format table",
        f"  {prog} --config {cfg} effects --source all    # all: backfilled nights are tagged source=sim",
        f"  {prog} --config {cfg} report --person {res.persons[-1]} --out report.html",
    ]
    if first_report is not None:
        look.append(f"  open {shlex.quote(_shown(first_report))} in a browser")
    if res.influx_running:
        look.append(f"  {prog} --config {cfg} influx stop     # stop the demo's InfluxDB")
    look.append(f"  {prog} demo --clean{_dir_arg(opts)}    # remove everything the demo made")
    out.print("\n".join(look), highlight=False, soft_wrap=True)


def _print_person_effects(out: Console, res: Any, person: str, results: list[Any]) -> None:
    """The verdict first, then each summary metric: the generator's truth beside what magsleep says."""
    from collector.effects.validity import assess, dominant_source, load_table
    from collector.effects.verdict import PLAIN, build_verdict, change_phrase, rank

    main = [r for r in results if r.comparison == "mg_vs_control"]
    stagings = [str(r.get("staging") or "computed") for r in res.night_rows if r.get("person") == person
                and r.get("flagged") is not True and r.get("dose") in ("magnesium", "control")]
    source = dominant_source(stagings) or "computed"
    table = load_table()
    assessments = {r.metric: assess(table, source, r.metric) for r in main}
    verdict = build_verdict(person, main, assessments, source=source)
    out.print(f"[bold]{person}[/bold] (nights staged by: {source})")
    out.print(f"  [bold]{verdict.headline}[/bold]", highlight=False)
    if verdict.next_step:
        out.print(f"  {verdict.next_step}", highlight=False)
    shown = sorted((r for r in main if r.metric in SUMMARY_METRICS),
                   key=lambda r: (not assessments[r.metric].measurable, rank(r.metric)))
    if not shown:
        out.print("  no effects computed", highlight=False)
    for r in shown:
        truth = res.truth_difference(person, r.metric)
        if truth is not None and not math.isfinite(truth):
            truth = None  # a simulated night without a finite value: no truth to compare with
        t = "—" if truth is None else change_phrase(r.metric, truth)
        a = assessments[r.metric]
        if not a.measurable:
            says = f"cannot be measured with this staging (to measure it: {a.measured_by})"
        elif not r.reported or r.ci_low is None or r.ci_high is None or r.estimate is None:
            says = "not enough nights yet"
        else:
            inside = ""
            if truth is not None:
                inside = "; truth inside the interval" if r.ci_low <= truth <= r.ci_high else "; truth OUTSIDE"
            d = 2 if r.metric == "ln_rmssd" else 1
            says = (f"{change_phrase(r.metric, r.estimate)} (95% CI {r.ci_low:+.{d}f} to {r.ci_high:+.{d}f} "
                    f"{r.unit}{inside})")
        out.print(f"  {PLAIN.get(r.metric, r.metric)}: truth {t}; magsleep: {says}", highlight=False)


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _program() -> str:
    """How to call magsleep from here (``magsleep`` when on PATH, else the script's path)."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "magsleep" and shutil.which("magsleep") != str(argv0.resolve()):
        return shlex.quote(_shown(argv0))
    return "magsleep"


def _dir_arg(opts: Any) -> str:
    from collector.app.demo import DEFAULT_DIR

    return "" if Path(opts.directory) == DEFAULT_DIR else f" --dir {shlex.quote(str(opts.directory))}"


def _now_ns(text: str) -> int:
    from datetime import datetime

    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--now {text!r} is not an ISO 8601 time; use e.g. 2026-03-29T08:00+02:00")
    if t.tzinfo is None:
        fail(f"--now {text!r} needs a UTC offset, e.g. 2026-03-29T08:00+02:00")
    return int(t.timestamp()) * 1_000_000_000


def demo(
    directory: Annotated[Path, typer.Option(
        "--dir", help="The demo's own directory (settings, data, reports).")] = Path(".state/demo"),
    nights: Annotated[int, typer.Option(min=0, max=298, help="Simulated nights backfilled per person.")] = 60,
    live_nights: Annotated[int, typer.Option(
        min=0, max=14, help="Last nights per person played live through the daemon.")] = 2,
    speed: Annotated[float | None, typer.Option(
        help="Live playback speed (simulated s per real s); default: a night in about 20 s.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same nights.")] = 0,
    keep_running: Annotated[bool, typer.Option(
        "--keep-running", help="Leave the demo's InfluxDB running at the end.")] = False,
    live_hours: Annotated[float | None, typer.Option(
        help="Play only the first hours of each live night (quick runs).", hidden=True)] = None,
    clean_: Annotated[bool, typer.Option(
        "--clean", help="Remove everything the demo created (its directory and its InfluxDB), then exit.")] = False,
    now: Annotated[str | None, typer.Option(
        help="Run as if it were this time (ISO 8601 with offset, e.g. 2026-03-29T08:00+02:00): tests.",
        hidden=True)] = None,
) -> None:
    """The demo: virtual wearables, the real daemon, a local InfluxDB, nights, effects and a report."""
    from collector.app import demo as d

    try:
        if clean_:
            removed = d.clean(directory)
            console.print(f"removed the demo in {directory.resolve()}" if removed else
                          f"no demo in {directory.resolve()}; nothing to remove", highlight=False)
            return
        opts = d.DemoOptions(directory=directory, nights=nights, live_nights=live_nights, speed=speed,
                             seed=seed, keep_running=keep_running, live_hours=live_hours,
                             now_ns=None if now is None else _now_ns(now))
    except MagsleepError as exc:
        fail(str(exc))
    # quiet while the demo runs ("bluetoothctl not available" is expected here); restored afterwards,
    # so a caller in the same process (tests, collector.cli.main) keeps its logging
    quiet = [logging.getLogger(name) for name in ("bleak", "collector")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)
    console.print(f"[bold]magsleep demo[/bold] in {directory.resolve()}: two persons (ana, ben), "
                  f"{live_nights} live + {nights} backfilled nights each", highlight=False)
    try:
        with RichProgress(console) as progress:
            res = d.run_demo(opts, progress)
    except MagsleepError as exc:
        fail(f"{exc}\n(the demo's files are in {directory.resolve()}; 'magsleep demo --clean' removes them)")
    finally:
        for lg, level in zip(quiet, levels, strict=True):
            lg.setLevel(level)
    _print_summary(console, res, opts)
