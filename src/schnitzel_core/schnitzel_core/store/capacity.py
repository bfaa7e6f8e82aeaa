"""Capacity: max_rows / max_bytes with the overflow policy (reject_new or drop_oldest)."""

from __future__ import annotations

import heapq
from typing import Any, Dict, List, Tuple

from .base import _StoreBase
from .keys import key_hashes
from .records import EnqueueResult
from .segments import _Edit, _Seg


class _Capacity(_StoreBase):
    def _make_room(self, dc: Any, ed: "_Edit", sizes: List[int], res: EnqueueResult,
                   deltas: Dict[str, int]) -> List[int]:
        """Capacity: the indexes of the new rows (``sizes``) that fit (after dropping the
        oldest rows with ``drop_oldest``); every refusal and drop is counted."""
        depth = self._counters.get("depth", 0) + deltas.get("depth", 0)
        nbytes = self._counters.get("bytes", 0) + deltas.get("bytes", 0)
        need_rows, need_bytes = len(sizes), sum(sizes)

        def over(d: int, b: int) -> bool:
            return bool((self.max_rows and d > self.max_rows) or (self.max_bytes and b > self.max_bytes))

        def fit(d: int, b: int) -> List[int]:
            keep: List[int] = []
            for j, size in enumerate(sizes):
                if over(d + 1, b + size):
                    res.rejected += 1
                    continue
                keep.append(j)
                d += 1
                b += size
            return keep

        if not over(depth + need_rows, nbytes + need_bytes):
            return list(range(len(sizes)))
        if self.overflow == "reject_new":
            return fit(depth, nbytes)
        # drop_oldest: drop rows that are not leased from the head until the batch fits
        d, b = depth + need_rows, nbytes + need_bytes
        loose_v: List[Tuple[int, int, str]] = []
        seg_v: List[Tuple[int, _Seg, int]] = []
        cur = dc.execute("SELECT id, size, key FROM queue ORDER BY id")
        heads = heapq.merge(((r[0], 0, r) for r in cur),
                            ((rid, 1, (rid, s, i)) for rid, s, i in self._iter_seg_rows(ed)))
        leases = self._leases
        for rid, kind, x in heads:
            if not over(d, b):
                break
            if rid in leases:
                continue
            if kind == 0:
                loose_v.append(x)
                size = x[1]
            else:
                seg_v.append(x)
                size = x[1].sizes[x[2]]
            d -= 1
            b -= size
        cur.close()
        dropped = dropped_bytes = 0
        for rid, s, i in seg_v:
            dropped_bytes += ed.take(s, i)
            ed.gone_ids.append(rid)
            ed.gone_keys.append(s.hashes[i << 4:(i + 1) << 4].hex())
        if loose_v:
            dc.executemany("DELETE FROM queue WHERE id = ?", [(v[0],) for v in loose_v])
            dropped_bytes += sum(v[1] for v in loose_v)
            ed.gone_ids.extend(v[0] for v in loose_v)
            ed.gone_keys.extend(key_hashes([v[2] for v in loose_v]))
        dropped = len(seg_v) + len(loose_v)
        if dropped:
            for k, v in (("depth", -dropped), ("bytes", -dropped_bytes), ("dropped_overflow", dropped)):
                deltas[k] = deltas.get(k, 0) + v
            res.dropped = dropped
        if over(d, b):  # the batch alone exceeds capacity: refuse what does not fit
            return fit(depth - dropped, nbytes - dropped_bytes)
        return list(range(len(sizes)))
