"""The store's errors: every SQLite failure reaches callers as one of these."""

from __future__ import annotations

from typing import Optional


class StoreError(Exception):
    """Base of every error the store raises."""


class StoreCorruptError(StoreError):
    """The file is not a schnitzel store (corrupt or foreign); it was left untouched."""


class StoreVersionError(StoreError):
    """The file was written by a newer schnitzel (schema version above ours)."""


class StoreFullError(StoreError):
    """Capacity reached with policy ``reject_new``."""


class StoreLockedError(StoreError):
    """Another process owns the file (a running queue): one consumer per store file."""

    def __init__(self, message: str, holder_pid: Optional[int]) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid


class StoreWriteError(StoreError):
    """A write failed: disk full, read-only file or I/O error. Accepted rows are kept."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _classify(exc: BaseException, path: str, what: str) -> StoreError:
    orig = getattr(exc, "orig", exc)
    msg = str(orig)
    low = msg.lower()
    if "readonly" in low or "read-only" in low or "read only" in low:
        return StoreWriteError(f"durable store {path}: cannot {what}: the database is read-only ({msg})",
                               "read_only")
    if "disk is full" in low or "database or disk is full" in low or "no space" in low:
        return StoreWriteError(f"durable store {path}: cannot {what}: the disk is full ({msg})", "disk_full")
    if "not a database" in low or "malformed" in low or "corrupt" in low:
        return StoreCorruptError(f"durable store {path}: the database file is corrupt ({msg}); "
                                 "it was left unchanged, move it aside to start a new store")
    if "disk i/o" in low or "i/o error" in low:
        return StoreWriteError(f"durable store {path}: cannot {what}: I/O error ({msg}); "
                               "check free space and the file's permissions", "io_error")
    return StoreWriteError(f"durable store {path}: cannot {what}: {msg}", "error")
