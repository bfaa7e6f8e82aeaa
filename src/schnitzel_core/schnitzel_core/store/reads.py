"""Reads that change nothing: peek, the dead letters, stats."""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Dict, List, Optional, Tuple

from .base import _StoreBase
from .records import Row, Stats, _row
from .schema import _COPY_COLS


class _Reads(_StoreBase):
    def peek(self, n: int = 10, offset: int = 0) -> List[Row]:
        """Queued rows (leased or not), oldest first."""
        need = max(0, n) + max(0, offset)
        with self._lock:
            self._refresh()
            loose = self._read(lambda c: c.connection.driver_connection.execute(
                f"SELECT {_COPY_COLS} FROM queue ORDER BY id LIMIT ?", (need,)).fetchall())
            seg = list(itertools.islice(self._iter_seg_rows(), need))
            both = heapq.merge(((r[0], 0, r) for r in loose), ((x[0], 1, x) for x in seg))
            return [_row(x) if kind == 0 else self._seg_row(*x)
                    for _, kind, x in itertools.islice(both, max(0, offset), need)]

    def dlq(self, n: int = 10, offset: int = 0) -> List[Row]:
        def fn(c: Any) -> List[Row]:
            out = []
            for r in c.exec_driver_sql(f"SELECT {_COPY_COLS}, reason, dead_ns FROM dead ORDER BY id LIMIT ? OFFSET ?",
                                       (n, offset)):
                row = _row(r)
                row.reason, row.dead_ns = r[19], r[20]
                out.append(row)
            return out

        return self._read(fn)

    def stats(self, wait: bool = True) -> Optional[Stats]:
        """Depth, bytes, oldest age, dead letters, counters. ``wait=False`` returns None at
        once while a commit holds the store (see :meth:`lease`)."""
        now = self.clock_ns()

        def fn(c: Any) -> Tuple[Dict[str, int], Any, int]:
            counters = {n: int(v) for n, v in c.exec_driver_sql("SELECT name, value FROM counters")}
            head = c.exec_driver_sql("SELECT id, enq_ns FROM queue ORDER BY id LIMIT 1").first()
            ledger = c.exec_driver_sql("SELECT coalesce(sum(n), 0) FROM ledger_blocks").scalar() or 0
            return counters, head, int(ledger)

        if not self._lock.acquire(blocking=wait):
            return None
        try:
            self._refresh()
            counters, head, ledger = self._read(fn)
            first = next(self._iter_seg_rows(), None)
            if first is not None and (head is None or first[0] < head[0]):
                head = (first[0], first[1].enq_ns)
            leased = self.leased
        finally:
            self._lock.release()
        return Stats(depth=counters.get("depth", 0), bytes=counters.get("bytes", 0), leased=int(leased),
                     dead=counters.get("dead", 0),
                     oldest_age_s=max(0.0, (now - head[1]) / 1e9) if head else 0.0,
                     oldest_id=head[0] if head else None, ledger=ledger, counters=counters,
                     path=self.path, schema_version=self.schema_version, synchronous=self.synchronous)

    @property
    def depth(self) -> int:
        return self._counters.get("depth", 0)

    @property
    def counters(self) -> Dict[str, int]:
        return dict(self._counters)
