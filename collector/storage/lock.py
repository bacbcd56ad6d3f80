"""One process per role on a state dir: ``<state_dir>/<role>.lock``, flocked, holding the pid.

Two ``magsleep run`` on the same state dir would collect into the same outbox and send each
other's rows; the second one stops at once instead, naming the first one's pid. The kernel
drops the lock when the process ends however it ends (SIGKILL, power cut), so a stale file never
blocks a start; the pid in it is only for the message.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from collector.errors import AlreadyRunningError, StorageError
from collector.storage.files import FILE_MODE, private_dir


@dataclass
class InstanceLock:
    """A held lock; :meth:`release` (or leaving :func:`instance_lock`) lets the next one in."""

    path: Path
    role: str
    _fd: int

    def release(self) -> None:
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no stale pid for the next reader
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def lock_path(state_dir: Path, role: str) -> Path:
    return state_dir.expanduser() / f"{role}.lock"


def acquire(state_dir: Path, role: str, *, what: str | None = None) -> InstanceLock:
    """Take the ``role`` lock of ``state_dir`` or raise :class:`AlreadyRunningError`.

    ``what``: the command for messages (default ``magsleep <role>``)."""
    path = lock_path(state_dir, role)
    what = what or f"magsleep {role}"
    try:
        private_dir(path.parent)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        raise StorageError(f"cannot create the lock file {path}: {exc.strerror or exc}; check that "
                           "storage.state_dir is writable for this user") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_pid(fd)
        os.close(fd)
        who = f"pid {holder}" if holder else "its pid not written yet"
        stop = f"`kill {holder}`" if holder else "stop it"
        raise AlreadyRunningError(
            f"another {what} ({who}) is already running on {path.parent}; two would send each "
            f"other's data twice. Stop it first ({stop}, or `systemctl --user stop magsleep` "
            "when it runs as a service), or give this one its own storage.state_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return InstanceLock(path, role, fd)


@contextlib.contextmanager
def instance_lock(state_dir: Path, role: str, *, what: str | None = None) -> Iterator[InstanceLock]:
    """``with instance_lock(state_dir, "run"):`` hold the role's lock for the block."""
    lock = acquire(state_dir, role, what=what)
    try:
        yield lock
    finally:
        lock.release()


def holder_pid(state_dir: Path, role: str) -> int | None:
    """The pid written by the current holder (None: no lock file, or none written)."""
    try:
        fd = os.open(lock_path(state_dir, role), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


__all__ = ["InstanceLock", "acquire", "holder_pid", "instance_lock", "lock_path"]
