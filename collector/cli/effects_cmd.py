"""``magsleep effects`` (does magnesium change my sleep?) and ``magsleep plan`` (a trial schedule)."""

from __future__ import annotations

import asyncio
import json
import math
from dataclasses import asdict
from datetime import date, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from collector.app.persons import Persons
from collector.cli.common import (
    DAY_FORMS,
    Column,
    console,
    err_console,
    fail,
    fitted_table,
    get_settings,
    parse_day,
    today_for,
)
from collector.effects.metrics import METRICS, metric
from collector.effects.planner import PlanSpec
from collector.effects.store import PlanStore, StoredPlan, new_plan, tonight
from collector.errors import MagsleepError, StorageError
from collector.settings import Settings

if TYPE_CHECKING:  # the statistics stack (scipy/statsmodels) loads only for `magsleep effects`
    from collector.effects.analysis import EffectResult
    from collector.effects.io import EffectsRun, Source


class Format(StrEnum):
    table = "table"
    json = "json"


class DesignOpt(StrEnum):
    randomised = "randomised"
    blocks = "blocks"


class SourceOpt(StrEnum):
    real = "real"
    sim = "sim"
    all = "all"


_COMPARISON_TITLES = {
    "mg_vs_control": "Magnesium vs control nights",
    "before_after": "Before/after (baseline vs supplementation, segmented regression)",
}


def _num(x: float | None, digits: int = 1) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:.{digits}f}"


def _p(x: float | None) -> str:
    if x is None:
        return "—"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _comparison_title(c: str) -> str:
    if c in _COMPARISON_TITLES:
        return _COMPARISON_TITLES[c]
    if c.startswith("band_"):
        _, lo, hi = c.split("_")
        return f"Dose band {lo}-{hi} mg elemental vs control" if hi != "inf" else f"Dose band {lo}+ mg vs control"
    return f"Form {c.removeprefix('form_')} vs control"


#: One comparison's table; on a narrow terminal the columns with the highest ``drop`` are left out.
EFFECT_TABLE = (Column("metric"), Column("effect", "right"), Column("95% CI", "right"), Column("p", "right"),
                Column("p adj", "right", drop=2), Column("p perm", "right", drop=3),
                Column("P(benefit)", "right", drop=1), Column("n mg/ctl", "right"),
                Column("nights needed", "right", drop=4))


def _render_table(run: EffectsRun) -> None:
    d = run.data
    counts: dict[str, int] = {}
    for n in d.nights:
        counts[n.status] = counts.get(n.status, 0) + 1
    bits = [f"{v} {k}" for k, v in sorted(counts.items())]
    if d.flagged:
        bits.append(f"{d.flagged} flagged (too little signal, left out)")
    if d.provisional:
        bits.append(f"{d.provisional} provisional (window still open, included; may still change)")
    console.print(f"\n[bold]{run.person}[/bold]: {len(d.nights)} nights ({', '.join(bits) or 'none'}); "
                  f"arms from {d.dose_source}"
                  + (f"; trial plan {run.plan_id}" if run.plan_id else "; no trial plan"))
    if run.adherence is not None:
        console.print(f"  {run.adherence.summary()}", highlight=False)
    from collector.effects.verdict import PLAIN, rank

    if run.verdict is not None:  # one answer first
        console.print(f"[bold]{escape(run.verdict.headline)}[/bold]", highlight=False)
        if run.verdict.next_step:
            console.print(escape(run.verdict.next_step), highlight=False)
    if run.source.describe():
        console.print(f"[dim]{escape(run.source.describe())}[/dim]", highlight=False)
    by_comp: dict[str, list[EffectResult]] = {}
    def order(r: EffectResult) -> tuple[bool, int]:  # measurable first, then by what matters; not alphabetical
        a = run.assessments.get(r.metric)
        return (a is not None and not a.measurable, rank(r.metric))

    for r in sorted(run.results, key=order):
        by_comp.setdefault(r.comparison, []).append(r)
    for comp, rows in by_comp.items():
        if comp != "mg_vs_control" and not any(r.reported for r in rows):
            r0 = max(rows, key=lambda r: r.n_mg + r.n_control)
            arms = (f"{r0.n_control} baseline vs {r0.n_mg} supplement nights"
                    if comp == "before_after" else f"{r0.n_mg} vs {r0.n_control} nights")
            console.print(f"[dim]{_comparison_title(comp)}: not reported ({arms}; at least "
                          f"{get_settings().analysis.min_nights_per_arm} per arm needed)[/dim]")
            continue
        def measurable(m: str) -> bool:
            a = run.assessments.get(m)
            return a is None or a.measurable

        empty = [PLAIN.get(r.metric, r.metric) for r in rows if r.n_mg + r.n_control == 0 and measurable(r.metric)]
        rows = [r for r in rows if r.n_mg + r.n_control > 0 or not measurable(r.metric)]
        if empty:
            console.print(f"[dim]no nights with: {', '.join(empty)}[/dim]")
        if not rows:
            continue
        cells = []
        for r in rows:
            needed = f"{r.nights_needed} ({r.half_width})" if r.nights_needed else "—"
            name = PLAIN.get(r.metric, r.metric)
            if r.reported:
                cells.append([name, f"{_num(r.estimate)} {r.unit}",
                              f"{_num(r.ci_low)} to {_num(r.ci_high)}", _p(r.p), _p(r.p_adj),
                              _p(r.p_perm), _num(r.prob_benefit, 2), f"{r.n_mg}/{r.n_control}", needed])
            elif not measurable(r.metric):
                cells.append([f"[dim]{name}[/dim]", "[dim]cannot be measured[/dim]", "", "", "",
                              "", "", f"{r.n_mg}/{r.n_control}", "—"])
            else:
                cells.append([f"[dim]{name}[/dim]", "[dim]not enough nights[/dim]", "", "", "",
                              "", "", f"{r.n_mg}/{r.n_control}", needed])
        console.print(fitted_table(EFFECT_TABLE, cells, title=_comparison_title(comp)))
        for r in rows:
            console.print(f"  {r.summary}", highlight=False)
    console.print("[dim]effect = magnesium minus control, corrected for how well the night's staging measures "
                  "each metric (validity table; metrics it cannot measure are not reported); "
                  "sol/waso/awakenings modelled as ratios "
                  "(shown at the control nights' typical value); p from regression with weekend "
                  "term and AR(1) errors; p adj = Benjamini-Hochberg; nights needed = per arm for "
                  "the stated 95% CI half-width; CI = valid however often you look (SOL and TST "
                  "share the 5%), or with --fixed for one look planned in advance only. "
                  "See docs/effects.md.[/dim]")


def _json(runs: list[EffectsRun]) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        return v

    out = []
    for run in runs:
        counts: dict[str, int] = {}
        for n in run.data.nights:
            counts[n.status] = counts.get(n.status, 0) + 1
        out.append({
            "person": run.person,
            "nights": counts,
            "flagged_nights": run.data.flagged,
            "provisional_nights_included": run.data.provisional,
            "arms_from": run.data.dose_source,
            "plan_id": run.plan_id,
            "adherence": None if run.adherence is None else {
                "followed": run.adherence.followed, "counted": run.adherence.counted,
                "share": run.adherence.share, "summary": run.adherence.summary(),
                "deviations": [{"night": n.night.isoformat(), "deviation": n.deviation}
                               for n in run.adherence.deviations]},
            "results": [{k: clean(v) for k, v in asdict(r).items()} for r in run.results],
            "verdict": None if run.verdict is None else {
                "headline": run.verdict.headline, "next_step": run.verdict.next_step,
                "comparison": run.verdict.comparison,
                "items": [{"metric": i.metric, "name": i.name, "state": i.state, "text": i.text}
                          for i in run.verdict.items]},
            "staging_source": run.source.source,
            "nights_left_out_by_source": dict(run.source.left_out),
            "validity": {m: {"status": a.status, "slope": clean(a.slope), "reason": a.reason,
                             "measured_by": a.measured_by} for m, a in run.assessments.items()},
            "uncorrected": [{"metric": r.metric, "comparison": r.comparison, "estimate": clean(r.estimate),
                             "ci_low": clean(r.ci_low), "ci_high": clean(r.ci_high)}
                            for r in run.uncorrected if r.reported],
        })
    return json.dumps(out, indent=2, default=str)


PersonsOpt = Annotated[
    list[str] | None, typer.Option("--person", "-p", help="Person (repeatable; default: all).")]
MetricsOpt = Annotated[
    list[str] | None,
    typer.Option("--metric", "-m", help=f"Metric (repeatable): {', '.join(METRICS)}.")]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="table or json.")]
WriteOpt = Annotated[
    bool, typer.Option("--write/--no-write", help="Write effect points to InfluxDB.")]
SourceOptT = Annotated[
    SourceOpt, typer.Option(help="real (default; simulated nights left out), sim or all.")]
StartOpt = Annotated[str | None, typer.Option(
    help="Before/after: first supplementation night (default: the first dose).")]
BaselineEndOpt = Annotated[str | None, typer.Option(
    help="Before/after: baseline nights end before this date (default: --start).")]


def effects(
    person: PersonsOpt = None,
    metric_: MetricsOpt = None,
    since: Annotated[str | None, typer.Option(help=f"Only nights from this evening on: {DAY_FORMS}.")] = None,
    fmt: FormatOpt = Format.table,
    write: WriteOpt = True,
    source: SourceOptT = SourceOpt.real,
    start: StartOpt = None,
    baseline_end: BaselineEndOpt = None,
    fixed: Annotated[bool, typer.Option(
        "--fixed", help="Fixed-sample intervals, valid for ONE look planned in advance (e.g. the plan's "
        "end); the default intervals stay valid however often you look.")] = False,
) -> None:
    """Estimate the effect of evening magnesium on each sleep metric, with honest intervals."""
    from collector.effects.io import run_effects

    settings = get_settings()
    try:
        persons = Persons(settings).configured_names(person)
        metrics = [metric(m).name for m in metric_] if metric_ else None
        today = today_for(settings, persons[0] if len(persons) == 1 else None)
        since_d = parse_day(since, today, "--since") if since else None
        start_d = parse_day(start, today, "--start") if start else None
        end_d = parse_day(baseline_end, today, "--baseline-end") if baseline_end else None
        src: Source = "sim" if source is SourceOpt.sim else "all" if source is SourceOpt.all else "real"
        runs = asyncio.run(run_effects(settings, persons, metrics=metrics, since=since_d,
                                       source=src, write=write, supplement_start=start_d,
                                       baseline_end=end_d, fixed=fixed))
    except MagsleepError as exc:
        fail(str(exc))
    if fmt is Format.json:
        typer.echo(_json(runs))
    else:
        for run in runs:
            _render_table(run)


# -- plan -------------------------------------------------------------------------------------------

plan_app = typer.Typer(help="A trial schedule of magnesium and control nights.")


def _one_person(settings: Settings, person: str | None) -> str:
    try:
        return Persons(settings).one_configured(person)
    except MagsleepError as exc:
        fail(str(exc))


def _today(settings: Settings, person: str) -> date:
    return tonight(datetime.now(settings.person(person).tz))


def render_calendar(plan: StoredPlan, today: date | None, washout: int) -> Table:
    """The plan as a week-per-row calendar."""
    t = Table(title=f"{plan.person}: {plan.spec.design} plan {plan.plan_id} "
                    f"({plan.spec.weeks} weeks from {plan.spec.start}, seed {plan.seed})",
              title_justify="left")
    t.add_column("week of")
    for day in ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"):
        t.add_column(day, justify="center")
    first = plan.spec.start - timedelta(days=plan.spec.start.weekday())
    last = max(plan.nights)
    mg_days = [d for d, m in plan.nights.items() if m]
    week = first
    while week <= last:
        cells = []
        for i in range(7):
            d = week + timedelta(days=i)
            if d not in plan.nights:
                cells.append("")
                continue
            if plan.nights[d]:
                cell = f"[bold green]{d.day:>2} Mg[/bold green]"
            elif washout and any(0 < (d - m).days <= washout for m in mg_days):
                cell = f"[yellow]{d.day:>2} wash[/yellow]"
            else:
                cell = f"[dim]{d.day:>2} —[/dim]"
            if d == today:
                cell = f"[reverse]{cell}[/reverse]"
            cells.append(cell)
        t.add_row(week.isoformat(), *cells)
        week += timedelta(days=7)
    return t


@plan_app.callback(invoke_without_command=True)
def plan(
    ctx: typer.Context,
    weeks: Annotated[int, typer.Option(help="Length of the trial in weeks.")] = 8,
    design: Annotated[
        DesignOpt, typer.Option(help="randomised (nights within weeks) or blocks.")
    ] = DesignOpt.randomised,
    block_weeks: Annotated[int, typer.Option(help="Blocks design: weeks per block (1-4).")] = 2,
    seed: Annotated[int | None, typer.Option(help="Random seed (recorded with the plan).")] = None,
    person: Annotated[str | None, typer.Option("--person", "-p", help="Person (default: the only one).")] = None,
    start: Annotated[str | None, typer.Option(help="First evening YYYY-MM-DD (default: tonight).")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the person's active plan.")] = False,
    write: Annotated[bool, typer.Option("--write/--no-write", help="Mirror the plan to InfluxDB (trial_plan).")] = True,
) -> None:
    """Show the active trial plan; with --weeks (or any plan option) create one: magsleep plan --weeks 8."""
    if ctx.invoked_subcommand is not None:
        return
    settings = get_settings()
    name = _one_person(settings, person)
    if not any(_given(ctx, o) for o in _CREATE_OPTIONS):
        _show_or_explain(settings, name)
        return
    try:
        first = parse_day(start, today_for(settings, name), "--start") if start else _today(settings, name)
        spec = PlanSpec(first, weeks, "blocks" if design is DesignOpt.blocks else "randomised",
                        block_weeks)
        store = PlanStore.from_settings(settings)
        new = new_plan(name, spec, seed)
        old = store.save(new, replace=replace)
    except MagsleepError as exc:
        fail(str(exc))
    console.print(render_calendar(new, _today(settings, name), settings.analysis.washout_nights))
    n_mg = sum(new.nights.values())
    console.print(f"{n_mg} magnesium and {len(new.nights) - n_mg} control nights. "
                  "Take magnesium only on Mg evenings, within "
                  f"{settings.analysis.dose_window_h[1]:g} h before lights out; log every dose.")
    if write:
        from collector.effects.io import write_plan_points

        try:
            asyncio.run(write_plan_points(settings, new.points(), old.points() if old else ()))
        except StorageError as exc:
            err_console.print(f"[yellow]plan saved locally; InfluxDB copy not yet written: {escape(str(exc))}[/yellow]")


#: Options of `magsleep plan` that describe a new plan: given any of them, it creates one.
_CREATE_OPTIONS = ("weeks", "design", "block_weeks", "seed", "start", "replace", "write")


def _given(ctx: typer.Context, param: str) -> bool:
    source = ctx.get_parameter_source(param)
    return source is not None and source.name != "DEFAULT"


def _show_or_explain(settings: Settings, name: str) -> None:
    """Bare `magsleep plan`: the active plan and tonight, or how to make one (nothing is created)."""
    p = PlanStore.from_settings(settings).active(name)
    if p is None:
        console.print(f"{name} has no trial plan yet. Create one with: magsleep plan --weeks 8 "
                      "[--design randomised|blocks] (see `magsleep plan --help`)", highlight=False, markup=False)
        return
    today = _today(settings, name)
    console.print(render_calendar(p, today, settings.analysis.washout_nights))
    if today in p.nights:
        console.print(f"tonight ({today}): {'magnesium' if p.nights[today] else 'control (no magnesium)'}")
    console.print("A new plan replaces this one only with --replace: magsleep plan --weeks 8 --replace",
                  highlight=False)


def _active_plan(settings: Settings, person: str | None) -> tuple[str, StoredPlan]:
    """The person (default: the only one) and their active plan; exits with advice when there is none."""
    name = _one_person(settings, person)
    p = PlanStore.from_settings(settings).active(name)
    if p is None:
        fail(f"{name} has no trial plan; create one with: magsleep plan --weeks 8", code=1)
    return name, p


@plan_app.command("today")
def plan_today(
    person: Annotated[str | None, typer.Option("--person", "-p", help="Person (default: the only one).")] = None,
) -> None:
    """Is tonight a magnesium night?"""
    settings = get_settings()
    name, p = _active_plan(settings, person)
    d = _today(settings, name)
    if d not in p.nights:
        where = "has not started yet" if d < p.spec.start else "has ended"
        console.print(f"{d}: no planned night (the plan from {p.spec.start} {where}).")
        return
    if p.nights[d]:
        console.print(f"{d}: [bold green]magnesium night[/bold green] for {name}: take your dose "
                      f"within {settings.analysis.dose_window_h[1]:g} h before lights out and log it.")
    else:
        console.print(f"{d}: [bold]control night[/bold] for {name}: no magnesium tonight "
                      "(tag it with --no-dose to confirm).")


@plan_app.command("show")
def plan_show(
    person: Annotated[str | None, typer.Option("--person", "-p", help="Person (default: the only one).")] = None,
) -> None:
    """Show the active plan as a calendar."""
    settings = get_settings()
    name, p = _active_plan(settings, person)
    console.print(render_calendar(p, _today(settings, name), settings.analysis.washout_nights))
