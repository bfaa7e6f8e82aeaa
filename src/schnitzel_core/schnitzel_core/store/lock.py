"""The one-owner lock of a store file and the check that a file is a SQLite database."""

from __future__ import annotations

import os
from typing import Optional

from .errors import StoreCorruptError, StoreLockedError, StoreWriteError
from .schema import SQLITE_HEADER


class OwnerLock:
    """The one-owner lock of a store file: ``flock`` on the sidecar ``<path>.lock``.

    The kernel releases it when the holder exits, however it exits (SIGKILL included), so a
    crashed run never leaves the file locked. The holder's PID is written into the sidecar
    so that a second opener can say who holds it. The sidecar file itself is left in place
    (deleting it would let two openers lock two different inodes).
    """

    def __init__(self, path: str) -> None:
        import fcntl

        self.path = path + ".lock"
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreWriteError(f"durable store {path}: cannot create its lock file {self.path} "
                                  f"({exc.strerror or exc})", "io_error") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise StoreLockedError(
                f"durable store {path} is in use by {who} (lock {self.path}); a queue file has one "
                "owner: stop that run, or give this queue another path", holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd: Optional[int] = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)   # closing the only descriptor releases the flock


def _read_pid(fd: int) -> Optional[int]:
    try:
        return int(os.pread(fd, 32, 0).split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _check_file(path: str) -> bool:
    """True when ``path`` holds an existing database; raises if it is not SQLite at all."""
    if not os.path.exists(path):
        return False
    if os.path.isdir(path):
        raise StoreCorruptError(f"durable store {path}: is a directory, not a database file")
    size = os.path.getsize(path)
    if size == 0:
        return False
    with open(path, "rb") as f:
        head = f.read(len(SQLITE_HEADER))
    if head != SQLITE_HEADER:
        raise StoreCorruptError(
            f"durable store {path}: not a SQLite database (starts with {head[:16]!r}); refusing to "
            "open it and leaving it unchanged - pass another path or move the file aside")
    return True
