"""Nights computed while the daemon runs: ``magsleep nights compute`` every ``[nights] compute_every_min``.

``magsleep run`` starts :func:`compute_periodically`, so a night appears (in ``magsleep nights``,
the dashboards and the effects) soon after its window ends without anyone running a command. Each
run is a child process: the staging stack (SciPy, sleepecg, ~150 MB) never enters the collector,
a failure there can't stop collection, and the run is incremental (a night or none: ~1-2 s of CPU).
A run still going when the daemon stops is terminated; the next start picks it up (idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)

#: How long a run may take before it is stopped (a first run over years of data takes minutes).
RUN_TIMEOUT_S = 3600.0
#: After asking a run to stop, how long to wait before killing it.
TERMINATE_GRACE_S = 5.0


def compute_command(config: Path | None) -> list[str]:
    """The child process: this interpreter running ``magsleep [--config F] nights compute``."""
    cmd = [sys.executable, "-m", "collector"]
    if config is not None:
        cmd += ["--config", str(config)]
    return [*cmd, "nights", "compute"]


async def run_once(config: Path | None, stop: asyncio.Event, *, timeout_s: float = RUN_TIMEOUT_S) -> int | None:
    """One ``nights compute`` child; its exit code, or None when it was stopped (daemon stopping)."""
    proc = await asyncio.create_subprocess_exec(*compute_command(config), stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    done = asyncio.ensure_future(proc.communicate())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({done, stopper}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()  # no orphan computing on after the daemon
        raise
    finally:
        stopper.cancel()
    if not done.done():
        what = "the daemon is stopping" if stop.is_set() else f"it took over {timeout_s:.0f} s"
        log.warning("stopping 'magsleep nights compute' (%s); the next run continues where it stopped", what)
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(asyncio.shield(done), TERMINATE_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await done
        return None
    out, err = done.result()
    code = proc.returncode if proc.returncode is not None else -1
    summary = " ".join(out.decode(errors="replace").split())
    if code == 0:
        log.info("nights computed: %s", summary or "nothing to do")
    else:
        tail = " ".join(err.decode(errors="replace").split())[-400:]
        log.warning("'magsleep nights compute' failed (exit %d): %s", code, tail or summary)
    return code


async def compute_periodically(config: Path | None, every_s: float, stop: asyncio.Event) -> None:
    """Run :func:`run_once` now and then every ``every_s`` seconds until ``stop`` is set."""
    while not stop.is_set():
        try:
            await run_once(config, stop)
        except OSError as exc:  # the interpreter vanished (an upgrade in progress): try again later
            log.warning("cannot start 'magsleep nights compute': %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
