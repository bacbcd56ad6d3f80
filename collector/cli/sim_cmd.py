"""``magsleep sim``: simulated nights with a known truth (bulk backfill, inspection)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from collector.cli.common import console, err_console, fail, get_settings
from collector.errors import MagsleepError
from collector.settings import Settings
from collector.sim.params import DESIGNS, SCENARIOS, SimConfig

if TYPE_CHECKING:  # the generator (numpy/scipy, ~1.5 s) loads only when a command runs, not for --help
    from collector.sim.backfill import BackfillResult
    from collector.sim.nights import Study

app = typer.Typer(help="Simulated nights with a known truth (clearly tagged source=sim).", no_args_is_help=True)


def run_backfill(
    settings: Settings, study: Study, *, truth_path: Path, allow_mixed: bool, hr_every_s: float = 1.0
) -> BackfillResult:
    """Backfill with a rich progress bar."""
    from collector.sim.backfill import backfill

    with Progress(
        TextColumn("[bold]backfill[/bold] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("nights  {task.fields[lines]:,} points"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(study.person.name, total=len(study), lines=0)

        def progress(done: int, total: int, lines: int) -> None:
            bar.update(task, completed=done, lines=lines)

        return asyncio.run(backfill(settings, study, truth_path=truth_path, progress=progress,
                                    allow_mixed=allow_mixed, hr_every_s=hr_every_s))


@app.command("backfill")
def backfill_cmd(
    nights: Annotated[int, typer.Option(min=1, max=20000, help="How many nights to generate.")] = 90,
    person: Annotated[
        str, typer.Option("--person", "-p",
                          help="Person name (age, sex, time zone from the persons settings when configured).")
    ] = "demo",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same nights.")] = 0,
    scenario: Annotated[str, typer.Option(help=f"Planted magnesium effect: {' | '.join(SCENARIOS)}.")] = "effect",
    design: Annotated[str, typer.Option(help=f"Dose schedule: {' | '.join(DESIGNS)}.")] = "randomised",
    block_nights: Annotated[
        int | None, typer.Option(help="With --design blocks: alternate blocks of this many nights "
                                      "(default: one before/after split).")
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Evening date of the last night, YYYY-MM-DD (default: yesterday, UTC).")
    ] = None,
    artefact_rate: Annotated[float, typer.Option(help="Share of ectopic + missed beats (0.005-0.05).")] = 0.01,
    dropouts: Annotated[float, typer.Option(help="BLE dropouts per 8 h night.")] = 4.0,
    contact_losses: Annotated[float, typer.Option(help="Strap contact losses per 8 h night.")] = 0.5,
    motion: Annotated[bool, typer.Option("--motion/--no-motion", help="Write activity counts.")] = True,
    device_stages: Annotated[
        bool, typer.Option("--device-stages/--no-device-stages", help="Write 10-min device sleep stages.")
    ] = True,
    hr_every: Annotated[
        float, typer.Option(min=1.0, help="Seconds between heart_rate points (a strap sends 1/s; RR stay complete).")
    ] = 1.0,
    truth: Annotated[
        Path | None, typer.Option(help="Ground-truth JSON (default: <state_dir>/sim/truth-<person>.json).")
    ] = None,
    allow_mixed: Annotated[
        bool, typer.Option(help="Write even if the person has real data in the same nights (still source=sim).")
    ] = False,
) -> None:
    """Generate nights with a known truth and write them to InfluxDB, tagged source=sim."""
    from collector.sim.backfill import default_truth_path
    from collector.sim.nights import plan_study
    from collector.sim.person import PersonProfile

    s = get_settings()
    try:
        last = date.fromisoformat(end) if end else datetime.now(UTC).date() - timedelta(days=1)
    except ValueError:
        fail(f"--end {end!r} is not a date; use YYYY-MM-DD")
    try:
        cfg = SimConfig.from_choices(scenario=scenario, design=design, block_nights=block_nights,
                                     artefact_rate=artefact_rate, dropouts=dropouts,
                                     contact_losses=contact_losses, motion=motion, device_stages=device_stages)
        profile, configured = PersonProfile.from_settings(s, person, seed)
        if not configured:
            err_console.print(
                f"note: person {person!r} is not in [[persons]]; simulating a {profile.age}-year-old "
                f"{profile.sex} in UTC. Add a [[persons]] entry to analyse these nights.",
                highlight=False,
                markup=False,
            )
        study = plan_study(profile, nights, seed=seed, end=last, config=cfg)
        truth_path = truth or default_truth_path(s, person)
        result = run_backfill(s, study, truth_path=truth_path, allow_mixed=allow_mixed, hr_every_s=hr_every)
    except MagsleepError as exc:
        fail(str(exc))
    console.print(
        f"wrote {result.nights} simulated nights for [bold]{person}[/bold] "
        f"({result.first_night} .. {result.last_night}, {result.dose_nights} magnesium nights, "
        f"{result.lines:,} points, tag source=sim)\nground truth: {truth_path}",
        highlight=False,
    )


@app.command("clear")
def clear_cmd(
    person: Annotated[str | None, typer.Option("--person", "-p",
                                               help="Only this person's simulated data (default: everyone's).")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete every simulated (source=sim) point from InfluxDB; real data is never touched."""
    from collector.sim.backfill import clear_sim

    s = get_settings()
    who = f"person {person!r}" if person else "all persons"
    if not yes and not typer.confirm(f"delete all source=sim points of {who}?"):
        raise typer.Exit(1)
    try:
        asyncio.run(clear_sim(s, person))
    except MagsleepError as exc:
        fail(str(exc))
    console.print(f"deleted the simulated data of {who}", highlight=False)


@app.command("truth")
def truth_cmd(
    path: Annotated[Path, typer.Argument(help="A truth JSON written by 'magsleep sim backfill'.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the per-night truth as JSON lines.")] = False,
) -> None:
    """Summarise a ground-truth file: nights, doses and the planted effect seen in the truth."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        rows = doc["nights"]
    except (OSError, ValueError, KeyError) as exc:
        fail(f"cannot read truth file {path}: {exc}")
    if as_json:
        for r in rows:
            r = {k: v for k, v in r.items() if k != "hypnogram"}
            console.print_json(json.dumps(r))
        return
    mg = [r for r in rows if r["dose"] == "magnesium"]
    ctl = [r for r in rows if r["dose"] == "control"]
    console.print(f"{len(rows)} nights ({len(mg)} magnesium, {len(ctl)} control), person "
                  f"{doc['person']['name']}, seed {doc['seed']}", highlight=False)
    for key in ("sol_min", "tst_min", "waso_min", "deep_min", "rem_min", "rmssd_ms", "hr_mean_bpm"):
        def mean(rs: list[dict[str, float]], k: str = key) -> float:
            vals = [r[k] for r in rs if r.get(k) is not None]
            return sum(vals) / len(vals) if vals else float("nan")
        console.print(f"  {key:12s} magnesium {mean(mg):8.1f}  control {mean(ctl):8.1f}  "
                      f"difference {mean(mg) - mean(ctl):+7.1f}", highlight=False)
