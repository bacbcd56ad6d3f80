"""Epoch length and the stage codes of the ``sleep_stage`` measurement (collector/storage/schema.py).

Plain constants, so that what only needs them (night windows for lights out/on in the dose API,
segmentation) does not import the staging stack (SciPy, h5py, the classifiers).
"""

from __future__ import annotations

EPOCH_S = 30

WAKE, LIGHT, DEEP, REM, NREM, SLEEP, UNKNOWN, NOT_WORN = 0, 1, 2, 3, 4, 5, -1, -2
STAGE_NAMES = {WAKE: "wake", LIGHT: "light", DEEP: "deep", REM: "rem", NREM: "nrem", SLEEP: "sleep",
               UNKNOWN: "unknown", NOT_WORN: "not_worn"}
STAGE_CODES = {v: k for k, v in STAGE_NAMES.items()}
SLEEP_CODES = (LIGHT, DEEP, REM, NREM, SLEEP)
