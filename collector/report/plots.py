"""The report's plots as inline SVG (matplotlib, no pyplot state, no display needed)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from datetime import datetime, tzinfo

from matplotlib import dates as mdates
from matplotlib.figure import Figure

MAGNESIUM = "#8f3bb8"
CONTROL = "#8e8e8e"
ROLLING = "#444444"
# stage_code -> (label, height in the hypnogram, colour); wake on top, deep at the bottom. NREM (light
# and deep not told apart, as computed staging gives it) and plain "sleep" sit at light sleep's height:
# a row is labelled with the stages it holds, so computed NREM is never shown as "deep".
STAGE_LEVELS: dict[int, tuple[str, int, str]] = {
    0: ("wake", 4, "#f2495c"),
    3: ("REM", 3, "#a352cc"),
    1: ("light", 2, "#8ab8ff"),
    5: ("sleep", 2, "#3274d9"),
    4: ("NREM", 2, "#5794f2"),
    2: ("deep", 1, "#1f60c4"),
}


def stage_ticks(codes: Sequence[int]) -> list[tuple[int, str]]:
    """(height, label) of the hypnogram's y ticks: only the stages present, by their own names."""
    present = set(codes)
    out: list[tuple[int, str]] = []
    for level in sorted({lv for c, (_, lv, _) in STAGE_LEVELS.items() if c in present}):
        names = [name for c, (name, lv, _) in STAGE_LEVELS.items() if lv == level and c in present]
        out.append((level, "/".join(names)))
    return out


def resolution(codes: Sequence[int]) -> str:
    """What a stage source can tell apart, named for the plot's title."""
    present = set(codes)
    if present & {1, 2}:
        return "wake/light/deep/REM"
    if present & {3, 4}:
        return "wake/NREM/REM"
    return "wake/sleep"


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    svg = buf.getvalue()
    return svg[svg.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline in HTML


def _dt(ns: int, tz: tzinfo) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz)


def rolling_mean(values: Sequence[float | None], window: int = 7) -> list[float | None]:
    """Mean of the last ``window`` values that exist; None until ``window`` values were seen."""
    out: list[float | None] = []
    seen: list[float] = []
    for v in values:
        if v is not None and math.isfinite(v):
            seen.append(v)
        out.append(sum(seen[-window:]) / window if len(seen) >= window and v is not None else None)
    return out


def nights_over_time(
    times_ns: Sequence[int],
    doses: Sequence[str],
    series: Sequence[tuple[str, str, Sequence[float | None]]],
    tz: tzinfo,
) -> str:
    """Small multiples: one panel per metric, nights coloured by dose, 7-night rolling mean."""
    n = len(series)
    cols = 2
    rows = max(1, math.ceil(n / cols))
    fig = Figure(figsize=(11, 2.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    x = [_dt(t, tz) for t in times_ns]
    for i, (title, unit, values) in enumerate(series):
        ax = axes[i // cols][i % cols]
        for dose, color in (("magnesium", MAGNESIUM), ("control", CONTROL)):
            pts = [(xi, v) for xi, v, d in zip(x, values, doses, strict=True) if d == dose and v is not None]
            if pts:
                ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=color, label=dose, zorder=3)
        other = [(xi, v) for xi, v, d in zip(x, values, doses, strict=True)
                 if d not in ("magnesium", "control") and v is not None]
        if other:
            ax.scatter([p[0] for p in other], [p[1] for p in other], s=12, facecolors="none",
                       edgecolors=CONTROL, label="other", zorder=2)
        roll = rolling_mean(values)
        ax.plot(x, [math.nan if r is None else r for r in roll], color=ROLLING, lw=1.5, label="7-night mean")
        ax.set_title(f"{title} ({unit})" if unit else title, fontsize=10, loc="left")
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d %b", tz=tz))  # type: ignore[no-untyped-call]
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    axes[0][0].legend(fontsize=8, loc="best")
    return to_svg(fig)


def shared_spans(effects: Sequence[tuple[str, str, float, float, float, bool]]) -> dict[str, float]:
    """Half-width of the x axis per unit: the widest interval of that unit, plus a margin."""
    out: dict[str, float] = {}
    for _label, unit, _est, lo, hi, _lower in effects:
        out[unit] = max(out.get(unit, 1e-9), abs(lo) * 1.3, abs(hi) * 1.3)
    return out


def effects_forest(effects: Sequence[tuple[str, str, float, float, float, bool]]) -> str:
    """One row per metric: estimate (magnesium − control) with its 95% CI; green when it helps.

    ``effects`` items: (label, unit, estimate, ci_low, ci_high, beneficial direction is lower), in the
    order shown. Rows of the same unit share one x scale (:func:`shared_spans`).
    """
    n = max(1, len(effects))
    fig = Figure(figsize=(11, 0.75 * n + 0.6), layout="constrained")
    axes = fig.subplots(n, 1, squeeze=False)
    spans = shared_spans(effects)
    for i, (label, unit, est, lo, hi, lower_better) in enumerate(effects):
        ax = axes[i][0]
        helps = (hi < 0) if lower_better else (lo > 0)
        harms = (lo > 0) if lower_better else (hi < 0)
        color = "#37872d" if helps else "#c4162a" if harms else "#5a5a5a"
        ax.axvline(0, color="#999999", lw=1)
        ax.errorbar([est], [0], xerr=[[est - lo], [hi - est]], fmt="o", color=color, capsize=4, lw=2)
        ax.set_xlim(-spans[unit], spans[unit])  # one scale per unit: rows of the same unit compare by eye
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(f"{est:+.3g} {unit}  [{lo:+.3g}, {hi:+.3g}]", fontsize=8, loc="right", pad=2)
        for side in ("top", "right", "left"):
            ax.spines[side].set_visible(False)
    return to_svg(fig)


def latest_night(
    stages: Mapping[str, Sequence[tuple[int, int]]],
    hr: Sequence[tuple[int, float]],
    tz: tzinfo,
) -> str:
    """Hypnogram rows (one per stage source, e.g. ``computed · magsleep-wrn-gru-mesa``) above the heart
    rate of the same night; each row's axis names only the stages its source gives."""
    rows = max(1, len(stages))
    fig = Figure(figsize=(11, 1.8 * rows + 2.6), layout="constrained")
    axes = fig.subplots(rows + 1, 1, squeeze=False, sharex=True,
                        gridspec_kw={"height_ratios": [1.0] * rows + [1.4]})
    for i, (source, epochs) in enumerate(sorted(stages.items())):
        ax = axes[i][0]
        x = [_dt(t, tz) for t, _ in epochs]
        y = [STAGE_LEVELS.get(code, ("?", 0, ""))[1] for _, code in epochs]
        ax.step(x, y, where="post", color="#1f60c4", lw=1.2)
        for code, (_label, level, color) in STAGE_LEVELS.items():
            sel = [xi for xi, (_, c) in zip(x, epochs, strict=True) if c == code]
            if sel:
                ax.scatter(sel, [level] * len(sel), s=4, color=color, zorder=3)
        ticks = stage_ticks([code for _, code in epochs])
        ax.set_yticks([lv for lv, _ in ticks], [name for _, name in ticks], fontsize=8)
        ax.set_ylim(0.5, 4.5)
        kind, _, device = source.partition(" · ")
        title = f"Sleep stages ({kind})" + (f" · {device}" if device else "")
        ax.set_title(f"{title} · {resolution([code for _, code in epochs])}", fontsize=10, loc="left")
        ax.grid(alpha=0.3)
    ax = axes[rows][0]
    if hr:
        ax.plot([_dt(t, tz) for t, _ in hr], [v for _, v in hr], color="#c4162a", lw=1)
    ax.set_title("Heart rate (1-min mean, bpm)", fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M", tz=tz))  # type: ignore[no-untyped-call]
    return to_svg(fig)
