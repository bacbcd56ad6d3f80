"""Sleep architecture in 30-s epochs: lights out, latency, NREM/REM cycles, awakenings, final wake.

Stage codes follow the schema's ``sleep_stage.stage_code``: 0 wake, 1 light, 2 deep, 3 REM.
The hypnogram is built so that its stage minutes equal the requested targets exactly (to the
epoch): deep sleep is weighted towards the first cycles, REM towards the last, and wake bouts
fall mostly at cycle ends and in the second half of the night.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from collector.errors import ValidationError

EPOCH_S = 30
WAKE, LIGHT, DEEP, REM = 0, 1, 2, 3
STAGE_NAMES: dict[int, str] = {WAKE: "wake", LIGHT: "light", DEEP: "deep", REM: "rem"}

# Share of a cycle's deep sleep by cycle number: about half of all deep sleep in the first cycle.
_DEEP_DECAY = 0.5
# REM weights grow through the night; the first REM period is short (5-15 min).
_REM_FIRST = 0.35
_REM_GROWTH = 0.45
# Every cycle keeps at least this share of light sleep (N1/N2 descent and transitions).
_MIN_LIGHT_SHARE = 0.2


def _allocate(total: int, weights: NDArray[np.float64], caps: NDArray[np.int64]) -> NDArray[np.int64]:
    """Split ``total`` integer epochs in proportion to ``weights`` without exceeding ``caps``."""
    caps = np.maximum(caps, 0)
    if total > int(caps.sum()):
        raise ValidationError(f"cannot fit {total} epochs into cycles with room for {int(caps.sum())}")
    out = np.zeros(len(weights), dtype=np.int64)
    remaining = total
    free = caps > 0
    w = weights.astype(np.float64).copy()
    while remaining > 0:
        ws = w * free
        if ws.sum() <= 0:
            ws = free.astype(np.float64)
        share = remaining * ws / ws.sum()
        room = caps - out
        add = np.minimum(np.floor(share).astype(np.int64), room)
        if add.sum() == 0:
            # hand out the remainder one epoch at a time, largest fractional share first
            order = np.argsort(-(share - np.floor(share)) - 1e-9 * np.arange(len(share)))
            for j in order:
                if remaining == 0:
                    break
                if room[j] > 0 and free[j]:
                    out[j] += 1
                    remaining -= 1
                    room[j] -= 1
            free = (caps - out) > 0
            continue
        out += add
        remaining -= int(add.sum())
        free = (caps - out) > 0
    return out


def _split_runs(rng: np.random.Generator, n: int, max_pieces: int) -> list[int]:
    """Split ``n`` epochs into 1..max_pieces positive runs."""
    if n <= 0:
        return []
    k = int(min(max_pieces, max(1, n // 12), 1 + rng.poisson(0.8)))
    if k <= 1:
        return [n]
    cuts = np.sort(rng.choice(np.arange(1, n), size=k - 1, replace=False))
    return [int(x) for x in np.diff(np.concatenate(([0], cuts, [n])))]


def build_hypnogram(
    rng: np.random.Generator,
    *,
    sol_min: float,
    tst_min: float,
    waso_min: float,
    deep_min: float,
    rem_min: float,
    final_wake_min: float,
    cycle_min: float = 90.0,
) -> NDArray[np.int8]:
    """Stages per 30-s epoch from lights out to lights on, hitting the targets to the epoch."""
    sol_e = max(0, round(sol_min * 2))
    tst_e = max(1, round(tst_min * 2))
    waso_e = max(0, round(waso_min * 2))
    final_e = max(1, round(final_wake_min * 2))
    deep_e = max(0, round(deep_min * 2))
    rem_e = max(0, round(rem_min * 2))
    if deep_e + rem_e > tst_e * (1 - _MIN_LIGHT_SHARE):
        raise ValidationError(
            f"deep ({deep_min:.0f} min) + REM ({rem_min:.0f} min) leave too little light sleep "
            f"in {tst_min:.0f} min of sleep; lower deep_frac/rem_frac"
        )

    # cycles: lengths around cycle_min, scaled to fill the sleep exactly
    n_cyc = max(1, round(tst_e / (cycle_min * 2)))
    w = np.clip(rng.normal(1.0, 0.12, n_cyc), 0.6, 1.4)
    cyc = _allocate(tst_e, w, np.full(n_cyc, tst_e, dtype=np.int64))
    idx = np.arange(n_cyc, dtype=np.float64)
    room = np.floor(cyc * (1 - _MIN_LIGHT_SHARE)).astype(np.int64)
    deep_c = _allocate(deep_e, _DEEP_DECAY**idx * rng.uniform(0.8, 1.2, n_cyc), room)
    rem_w = (_REM_FIRST + _REM_GROWTH * idx) * rng.uniform(0.8, 1.2, n_cyc)
    rem_c = _allocate(rem_e, rem_w, room - deep_c)
    light_c = cyc - deep_c - rem_c

    # wake bouts after sleep onset: count, lengths, cycle and place within the cycle
    bouts: list[list[tuple[str, int]]] = [[] for _ in range(n_cyc)]
    if waso_e > 0:
        k = int(min(waso_e, 1 + rng.poisson(max(waso_min / 3.0, 0.1))))
        extra = rng.multinomial(waso_e - k, rng.dirichlet(np.full(k, 0.6)))
        lengths = 1 + extra
        where = rng.choice(n_cyc, size=k, p=(idx + 1.0) / (idx + 1.0).sum())
        places = rng.choice(["end", "mid", "early"], size=k, p=[0.6, 0.25, 0.15])
        for length, c, place in zip(lengths, where, places, strict=True):
            p = str(place)
            if p == "end" and c == n_cyc - 1:
                p = "mid"  # a bout after the last REM would merge with the final awakening
            bouts[int(c)].append((p, int(length)))

    parts: list[NDArray[np.int8]] = [np.full(sol_e, WAKE, dtype=np.int8)]

    def run(stage: int, n: int) -> None:
        if n > 0:
            parts.append(np.full(n, stage, dtype=np.int8))

    def wake_bouts(c: int, place: str) -> None:
        for p, n in bouts[c]:
            if p == place:
                run(WAKE, n)

    for c in range(n_cyc):
        lc, dc, rc = int(light_c[c]), int(deep_c[c]), int(rem_c[c])
        # descent through light, deep in 1-3 runs split by light, light, REM in 1-2 runs
        deep_runs = _split_runs(rng, dc, 3)
        rem_runs = _split_runs(rng, rc, 2)
        need = 2 * max(0, len(deep_runs) - 1) + max(0, len(rem_runs) - 1)
        if need > lc - 2:
            deep_runs, rem_runs, need = ([dc] if dc else []), ([rc] if rc else []), 0
        rest = lc - need
        l_before = min(rest, max(1, round(rest * rng.uniform(0.45, 0.7)))) if rest > 0 else 0
        l_after = rest - l_before
        first = max(1, l_before // 2) if l_before > 0 else 0  # never a wake bout right at onset
        run(LIGHT, first)
        wake_bouts(c, "early")
        run(LIGHT, l_before - first)
        for j, dn in enumerate(deep_runs):
            if j:
                run(LIGHT, 2)
            run(DEEP, dn)
        half = l_after // 2
        run(LIGHT, half)
        wake_bouts(c, "mid")
        run(LIGHT, l_after - half)
        for j, rn in enumerate(rem_runs):
            if j:
                run(LIGHT, 1)
            run(REM, rn)
        wake_bouts(c, "end")
    run(WAKE, final_e)
    return np.concatenate(parts)


def stage_minutes(hyp: NDArray[np.int8]) -> dict[str, float]:
    """Minutes per stage name."""
    counts = np.bincount(hyp.astype(np.int64), minlength=4)
    return {STAGE_NAMES[s]: counts[s] * EPOCH_S / 60.0 for s in STAGE_NAMES}
