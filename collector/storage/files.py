"""magsleep's own files: read with one clear error, created private.

Reading: :func:`read_text` turns every way a file can fail (unreadable, a directory, not UTF-8)
into one error naming the file and what to do; it never changes the file.

Creating: state is private to the user who runs magsleep, whatever their umask: the state
directory (and any parent magsleep has to create) 0700 (:func:`private_dir`), files 0600
(:func:`private_file` before SQLite opens a database: SQLite gives its -wal/-shm/-journal files
the database's mode). Existing files and directories keep the mode they have: an
administrator's choice (systemd ``StateDirectoryMode``) is not overridden.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from collector.errors import MagsleepError, StorageError

DIR_MODE = 0o700
FILE_MODE = 0o600


def read_text(path: Path, *, what: str, advice: str, error: type[MagsleepError] = StorageError) -> str:
    """The UTF-8 text of ``path``; any failure but a missing file raises ``error`` in one line.

    ``what`` names the file for people ("device registry"), ``advice`` says what to do about
    its content.
    :class:`FileNotFoundError` passes through: a missing file often just means "empty".
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory, not a file; move it away or fix the path") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}; make it readable for the user "
                    f"running magsleep (uid {os.getuid()})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # the position only, never the bytes: the file may hold a secret
        raise error(f"{what} {path} is not UTF-8 text (at byte {exc.start}); {advice}") from None


def private_dir(path: Path) -> Path:
    """``path`` as a directory; each directory created on the way (it and missing parents) is 0700."""
    missing = []
    p = path
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another process may have made it meanwhile
            d.mkdir(mode=DIR_MODE)  # the umask can only narrow it
    return path


def private_file(path: Path) -> Path:
    """``path``, created empty with mode 0600 if missing (in a private directory if that is missing)."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, FILE_MODE)  # no O_TRUNC: an existing file stays as it is
    os.close(fd)
    return path
