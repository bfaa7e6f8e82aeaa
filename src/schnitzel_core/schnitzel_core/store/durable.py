"""DurableStore: the parts (queue semantics, capacity, ledger, reads) over the shared core."""

from __future__ import annotations

from .base import _StoreBase
from .capacity import _Capacity
from .ledger import _Ledger
from .queue import _Queue
from .reads import _Reads


class DurableStore(_Queue, _Capacity, _Ledger, _Reads, _StoreBase):
    """A durable, bounded, at-least-once queue in one SQLite file. Thread-safe.

    One consumer per file (the queue node): leases live in memory. The consumer opens it
    with ``owner=True``, which takes :class:`OwnerLock`; a second owner gets
    :class:`StoreLockedError` naming the holder's PID. Other processes (the ``schnitzel
    queue`` CLI) open the same file without ownership; a change they commit is noticed
    (``PRAGMA data_version``) and the in-memory view is read again.
    """
