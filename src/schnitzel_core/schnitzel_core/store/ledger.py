"""The delivered-key ledger (keys delivered within the retention window) and key lookups."""

from __future__ import annotations

from typing import Any, Dict

from .base import _StoreBase
from .keys import key_hash
from .segments import _Edit


class _Ledger(_StoreBase):
    def prune_ledger(self) -> int:
        """Forget delivered keys older than the retention window (and beyond ledger_max_rows).

        The ledger is append-only, so both cuts delete a prefix by rowid. The in-memory set
        is rebuilt when the cut is large (> 5 %); until then a few expired keys may still
        count as delivered (the window is a minimum, never shorter)."""
        cutoff = self.clock_ns() - int(self.ledger_retention_s * 1e9)

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            # blocks are in delivery order and stamped with their newest key: cut a prefix
            first_kept = dc.execute("SELECT id FROM ledger_blocks WHERE delivered_ns >= ? ORDER BY id LIMIT 1",
                                    (cutoff,)).fetchone()
            where, args = ("", ()) if first_kept is None else (" WHERE id < ?", (first_kept[0],))
            n = int(dc.execute(f"SELECT coalesce(sum(n), 0) FROM ledger_blocks{where}", args).fetchone()[0])
            if n:
                dc.execute(f"DELETE FROM ledger_blocks{where}", args)
            if self.ledger_max_rows:
                blocks = dc.execute("SELECT id, n FROM ledger_blocks ORDER BY id").fetchall()
                total = sum(b[1] for b in blocks)
                cut = None
                for bid, bn in blocks:  # whole blocks, keeping at least ledger_max_rows keys
                    if total - bn < self.ledger_max_rows:
                        break
                    total -= bn
                    n += bn
                    cut = bid
                if cut is not None:
                    dc.execute("DELETE FROM ledger_blocks WHERE id <= ?", (cut,))
            return n

        n = self._change("prune ledger", fn)
        with self._lock:
            if n and (n > 0.05 * max(1, len(self._known)) or len(self._known) <= n):
                self._known = self._read(lambda c: self._build_known(c.connection.driver_connection))
        return n

    def in_ledger(self, key: str) -> bool:
        """Was ``key`` delivered within the retention window (re-enqueueing it is a no-op)?"""
        h = key_hash(key)
        with self._lock:
            self._refresh()
            if not self.ledger_on or not self._known.contains([h])[0]:
                return False
            # known: delivered, unless it is still queued
            h16 = bytes.fromhex(h)
            for sg in self._segs.values():
                j = sg.hashes.find(h16)
                while j != -1:
                    if j % 16 == 0 and sg.has(j >> 4):
                        return False
                    j = sg.hashes.find(h16, j + 1)
            return self._read(lambda c: c.connection.driver_connection.execute(
                "SELECT 1 FROM queue WHERE key = ?", (key,)).fetchone()) is None

    def has_key(self, key: str) -> bool:
        """Is a row with ``key`` still queued or dead-lettered (its packet may still be sent)?
        The durable queue keeps a by-reference payload's blob exactly that long."""
        with self._lock:
            self._refresh()
            if self._known.contains([key_hash(key)])[0] and (not self.ledger_on or not self.in_ledger(key)):
                return True   # queued (known and not delivered)
            return self._read(lambda c: c.connection.driver_connection.execute(
                "SELECT 1 FROM dead WHERE key = ?", (key,)).fetchone()) is not None
