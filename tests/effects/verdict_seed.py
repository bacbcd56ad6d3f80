"""Eight weeks of one person's computed-staged nights in InfluxDB, with magnesium on half of them (night dose tags)."""

from __future__ import annotations

import asyncio
import math
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from collector.effects.tagging import night_time_ns
from collector.settings import InfluxSettings, PersonSettings, Settings, StorageSettings
from collector.storage.lineprotocol import Point
from collector.storage.pipeline import Pipeline

H = 3_600_000_000_000
START = date(2026, 9, 7)
WEEKS = 8


def settings_for(url: str, db: str, state: Path) -> Settings:
    return Settings(influx=InfluxSettings(embedded=False, url=url, database=db),
                    storage=StorageSettings(state_dir=state), persons=[PersonSettings(name="alice")])


def config_text(url: str, db: str, state: Path) -> str:
    return (f'[influx]\nembedded = false\nurl = "{url}"\ndatabase = "{db}"\n'
            f'[storage]\nstate_dir = "{state}"\n[[persons]]\nname = "alice"\n')


def night_points(seed: int = 3) -> list[Point]:
    """Nights with a large planted effect on SOL and TST (magnesium every other night, shuffled per week)."""
    rng = np.random.default_rng(seed)
    pts: list[Point] = []
    for w in range(WEEKS):
        mg_days = set(rng.permutation(7)[:4 if w % 2 else 3].tolist())
        for k in range(7):
            d = START + timedelta(days=7 * w + k)
            mg = k in mg_days
            sol = math.exp(math.log(20) + rng.normal(0, 0.4) - (0.7 if mg else 0.0))
            tst = 420 + rng.normal(0, 40) + (35 if mg else 0)
            waso = math.exp(math.log(30) + rng.normal(0, 0.4))
            values: dict[str, float | int | str | bool] = {
                "night": d.isoformat(), "lights_out": night_time_ns(d) + 11 * H,
                "lights_on": night_time_ns(d) + 19 * H, "sol_min": sol, "tst_min": tst, "waso_min": waso,
                "se_pct": 100 * tst / (tst + sol + waso), "awakenings": int(rng.poisson(5)),
                "rem_min": 90 + rng.normal(0, 20), "hr_mean_bpm": 58 + rng.normal(0, 2),
                "hr_min5_bpm": 52 + rng.normal(0, 2), "ln_rmssd": math.log(40) + rng.normal(0, 0.12),
            }
            pts.append(Point("night", {"person": "alice", "dose": "magnesium" if mg else "control",
                                       "staging": "computed", "source": "computed"}, values, night_time_ns(d)))
    return pts


def seed(settings: Settings) -> None:
    async def go() -> None:
        async with Pipeline.from_settings(settings, name="test") as pipe:
            await pipe.put(night_points())
            await pipe.flush(timeout=30)

    asyncio.run(go())
