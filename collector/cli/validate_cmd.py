"""``magsleep validate``: stage PSG-labelled recordings with the production path and compare with the experts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from collector.cli.common import console, err_console, fail
from collector.errors import MagsleepError

if TYPE_CHECKING:
    from collector.validation.compare import Report


def _f(x: float | None, digits: int = 2) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def validate(
    directory: Annotated[Path, typer.Argument(help="Folder of recordings: night folders (meta.json, stages.csv, "
                                                   "rr.csv) and/or slpdb records (.hea/.rr/.an, gzip or not).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON (per-epoch stages too).")]
    = False,
    variant: Annotated[list[str] | None, typer.Option(
        "--variant", help="Extra configuration NAME=key=value[,key=value] next to the defaults; keys of the "
                          "[nights] settings (smoothing=none, wake_model=classifier, wake_threshold=0.4, "
                          "wake_classifier=ws-gru-mesa, ...), lights=estimate, or the "
                          "experiments start=HH:MM (replay at another clock time), age=N, sex=female|male. "
                          "Repeatable.")]
    = None,
    records: Annotated[str | None, typer.Option("--records", help="Only these records, comma-separated.")] = None,
) -> None:
    """Stage every recording in DIRECTORY exactly as `magsleep nights` would and compare with the expert stages."""
    from collector.validation.compare import DEFAULT, parse_variant, validate
    from collector.validation.sources import find_sources

    try:
        extra = [parse_variant(v) for v in variant or []]
        sources = find_sources(directory)
    except MagsleepError as exc:
        fail(str(exc))
    variants = [DEFAULT, *extra]
    names = [v.name for v in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        fail(f"variant names must be unique (default is taken): {', '.join(dupes)}")
    if records:
        wanted = [r.strip() for r in records.split(",") if r.strip()]
        known = {s.name for s in sources}
        missing = [r for r in wanted if r not in known]
        if missing:
            fail(f"no record {', '.join(missing)} in {directory}; there are: {', '.join(sorted(known)) or 'none'}")
        sources = [s for s in sources if s.name in wanted]
    if not sources:
        fail(f"no recordings in {directory}: expected night folders with meta.json or slpdb .hea files "
             "(docs/validation.md)")

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=True) as prog:
        task = prog.add_task("staging", total=len(sources) * len(variants))
        report = validate(sources, variants, progress=lambda name: prog.update(task, advance=1, description=name))

    for skip in report.skipped:
        err_console.print(f"[yellow]skipped[/yellow] {escape(skip.record)}: {escape(skip.reason)}",
                          highlight=False, markup=True, soft_wrap=True)
    if not any(report.nights.values()):
        fail("no recording could be read and staged (see the skipped ones above)", 1)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=1))
    else:
        _print(report)


def _print(report: Report) -> None:
    from collector.validation import stats
    from collector.validation.compare import METRICS

    t = Table(title="Epoch agreement (30-s epochs pooled over nights; rec = recall of the expert's W / N / R)")
    for col in ("variant", "nights", "epochs", "acc2", "kappa2", "acc3", "kappa3", "W rec pre/WASO",
                "N rec", "R rec"):
        if col == "variant":
            t.add_column(col, min_width=max(len(v.name) for v in report.variants), no_wrap=True)
        else:
            t.add_column(col, justify="right")
    for v in report.variants:
        a = report.agreement(v.name)
        t.add_row(v.name, str(len(report.nights[v.name])), str(a.epochs), _f(a.acc2), _f(a.kappa2), _f(a.acc3),
                  _f(a.kappa3), f"{_f(a.wake_recall_before_onset)} / {_f(a.wake_recall_waso)}", _f(a.recall_nrem),
                  _f(a.recall_rem))
    console.print(t)

    for v in report.variants:
        cm = report.agreement(v.name).confusion
        c = Table(title=f"Confusion, {v.name} (rows expert, columns computed)")
        c.add_column("expert")
        for name in stats.LABEL_NAMES:
            c.add_column(name, justify="right")
        for name, row in zip(stats.LABEL_NAMES, cm, strict=True):
            c.add_row(name, *(str(x) for x in row))
        console.print(c)

    p = Table(title="Per night: kappa wake/sleep and wake/NREM/REM")
    p.add_column("record")
    p.add_column("subject")
    p.add_column("epochs", justify="right")
    for v in report.variants:
        p.add_column(f"{v.name} k2", justify="right")
        p.add_column(f"{v.name} k3", justify="right")
    first = report.nights[report.variants[0].name]
    for i, n in enumerate(first):
        cells = [n.record, n.subject, str(int(n.confusion.sum()))]
        for v in report.variants:
            night_cm = report.nights[v.name][i].confusion
            cells += [_f(stats.kappa(stats.wake_sleep(night_cm))), _f(stats.kappa(night_cm))]
        p.add_row(*cells)
    console.print(p)

    for v in report.variants:
        m = Table(title=f"Nightly metrics, {v.name}: computed minus expert")
        for col in ("metric", "unit", "n", "bias", "MAE", "95% limits", "slope", "r"):
            m.add_column(col, justify="left" if col in ("metric", "unit") else "right")
        for key, label, unit in METRICS:
            s = report.metric(v.name, key)
            limits = "–" if s.loa_low is None or s.loa_high is None else f"{s.loa_low:.1f} .. {s.loa_high:.1f}"
            m.add_row(label, unit, str(s.n), _f(s.bias, 1), _f(s.mae, 1), limits, _f(s.slope), _f(s.r))
        console.print(m)

    loso = report.loso()
    if loso is not None:
        a = loso["agreement"]
        picks = ", ".join(f"{k}: {v}" for k, v in loso["picks"].items())
        console.print(f"Leave one subject out (variant chosen by {loso['by']} on the other subjects): "
                      f"kappa2 {_f(a['kappa2'])}, kappa3 {_f(a['kappa3'])}; picks {picks}", highlight=False)
