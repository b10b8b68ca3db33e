"""Who may write into a directory: the one rule for every run directory, and its lock.

    claim_directory(out, RESULTS_FILE, "plan run directory")   # refuse a stranger's directory
    with DirectoryLock(out):                                    # one process at a time
        ...

A command writes only into a directory that is new, empty, or already holds its ``marker``
file (it made the directory earlier); anything else is refused before a byte is written, so a
user's files are never overwritten or deleted. While it works, the command holds an exclusive
``flock`` on ``<dir>/run.lock`` (released by the kernel when the process dies, so a crash never
leaves the directory stuck); a second process is refused with the holder's pid.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

LOCK_FILE = "run.lock"


class DirectoryBusy(RuntimeError):
    """Another live process holds the directory's lock."""


def claim_directory(directory: Path, marker: str, what: str) -> bool:
    """Check that this program may write into ``directory``; True when it is new or empty (the
    caller then writes ``marker``), False when it already holds ``marker``. Writes nothing.

    Refused (``NotADirectoryError`` / ``FileExistsError``): a path that is a file, and a
    non-empty directory without ``marker`` (its files are someone else's)."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(f"{directory} is a file, not a directory: a {what} must be a new or empty "
                                 "directory")
    if (directory / marker).is_file():
        return False
    strangers = sorted(p.name for p in directory.iterdir() if p.name != LOCK_FILE) if directory.is_dir() else []
    if strangers:
        shown = ", ".join(strangers[:3]) + (f" and {len(strangers) - 3} more" if len(strangers) > 3 else "")
        raise FileExistsError(f"{directory} is not empty ({shown}) and holds no {marker}: it is not a {what} of this "
                              "program, and nothing there was touched; choose an empty or new directory")
    return True


class DirectoryLock:
    """An exclusive, non-blocking ``flock`` on ``directory/run.lock``, held while entered. The
    file keeps the holder's pid (it is never deleted: deleting a lock file races its next user)."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / LOCK_FILE
        self._fd: int | None = None

    def __enter__(self) -> DirectoryLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if error.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise DirectoryBusy(f"{self.path.parent} is in use by another run (pid {holder}, lock {self.path}): wait "
                                "for it to finish, or choose another directory") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


__all__ = ["LOCK_FILE", "DirectoryBusy", "DirectoryLock", "claim_directory"]
