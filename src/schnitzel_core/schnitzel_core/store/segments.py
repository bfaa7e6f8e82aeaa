"""Segments: one SQLite row per commit holding its batch of rows. :class:`_Seg` is a
segment's bookkeeping in memory, :class:`_Edit` what one write transaction does to them."""

from __future__ import annotations

import array
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from .keys import _hash_array


class _Seg:
    """Bookkeeping of one segment in memory (its packets stay in the file)."""

    __slots__ = ("id", "enq_ns", "n", "sinks", "sizes", "hashes", "gone", "live", "bytes", "marked")

    def __init__(self, sid: int, enq_ns: int, n: int, sinks: Optional[str], sizes: Any, hashes: bytes,
                 gone: Optional[bytes]) -> None:
        self.id, self.enq_ns, self.n, self.sinks, self.hashes = sid, enq_ns, n, sinks, hashes
        if isinstance(sizes, array.array):
            a = sizes
        else:  # as stored: uint32 little-endian
            a = array.array("I")
            a.frombytes(sizes)
            if sys.byteorder == "big":
                a.byteswap()
        self.sizes = a
        self.marked = gone is not None        # a segments_gone row exists in the file
        self.gone = bytearray(gone) if gone is not None else bytearray((n + 7) // 8)
        if gone is None:
            self.live, self.bytes = n, sum(a)
        else:
            alive = [i for i in range(n) if self.has(i)]
            self.live, self.bytes = len(alive), sum(a[i] for i in alive)

    def sizes_blob(self) -> bytes:
        if sys.byteorder == "big":
            a = array.array("I", self.sizes)
            a.byteswap()
            return a.tobytes()
        return self.sizes.tobytes()

    def has(self, i: int) -> bool:
        return not self.gone[i >> 3] >> (i & 7) & 1

    def live_hashes(self) -> Any:
        arr = _hash_array(self.hashes)
        if self.live == self.n:
            return arr
        mask = np.unpackbits(np.frombuffer(bytes(self.gone), np.uint8), bitorder="little")[:self.n] == 0
        return arr[mask]


class _Edit:
    """What one write transaction does to the segments, written with it and applied to the
    in-memory view only after it commits (a failed commit leaves the view as it was)."""

    __slots__ = ("segs", "new", "gone_ids", "moved_ids", "gone_keys", "added_keys", "ledger_n", "ledger_blob",
                 "loose")

    def __init__(self) -> None:
        self.segs: Dict[int, List[Any]] = {}  # id -> [gone bitmap copy, live, bytes]
        self.new: List[Tuple[Any, ...]] = []  # appended: (segment, packets, per-row sinks, key hashes)
        self.gone_ids: List[int] = []         # rows that left the queue (delivered, dropped, dead)
        self.moved_ids: List[int] = []        # segment rows now loose rows
        self.gone_keys: List[str] = []        # key hashes no longer known (dropped, dead, ...)
        self.added_keys: List[str] = []       # key hashes known from now on (a dead row delivered)
        self.ledger_n = 0                     # keys delivered by this commit ...
        self.ledger_blob: List[bytes] = []    # ... packed, for its ledger block
        self.loose = False                    # loose rows changed

    def has(self, s: _Seg, i: int) -> bool:
        e = self.segs.get(s.id)
        g = s.gone if e is None else e[0]
        return not g[i >> 3] >> (i & 7) & 1

    def take(self, s: _Seg, i: int) -> int:
        """Row ``i`` leaves segment ``s``; returns its size."""
        e = self.segs.get(s.id)
        if e is None:
            e = self.segs[s.id] = [bytearray(s.gone), s.live, s.bytes]
        e[0][i >> 3] |= 1 << (i & 7)
        e[1] -= 1
        size = s.sizes[i]
        e[2] -= size
        return size

    def write(self, dc: Any, segs: Dict[int, _Seg]) -> None:
        for sid, (g, live, _b) in self.segs.items():
            if live <= 0:
                dc.execute("DELETE FROM segments WHERE id = ?", (sid,))
                if segs[sid].marked:
                    dc.execute("DELETE FROM segments_gone WHERE id = ?", (sid,))
            else:
                dc.execute("INSERT OR REPLACE INTO segments_gone(id, gone) VALUES (?, ?)", (sid, bytes(g)))
