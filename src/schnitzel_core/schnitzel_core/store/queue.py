"""Queue semantics: enqueue and ack (one group commit), lease, release, nack, extend,
dead-letter, redrive, purge."""

from __future__ import annotations

import array
import bisect
import heapq
import itertools
import operator
import sys
import time
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import msgpack

from ..packet import Packet
from .base import _StoreBase
from .errors import StoreError
from .keys import _split_hashes, hash_batch, key_hash, key_hashes
from .records import (AckResult, EnqueueResult, Row, _PACKET_FIELDS, _decode, _encode_extra, _fields_of, _mp_default,
                      _row)
from .schema import (_COPY_COLS, _LOOSE_INSERT_SQL, _LOOSE_LEASE_SQL, _SEG_MASK, _SEGMENT_INSERT_SQL, ANY_SINK,
                     SEG_BITS)
from .segments import _Edit, _Seg


class _Queue(_StoreBase):
    # ------------------------------------------------------------ enqueue
    def enqueue(self, packets: Iterable[Packet], sinks: Any = None) -> EnqueueResult:
        """Persist packets in one transaction, committed before returning.

        ``sinks``: the sinks that must confirm each row: None/[] = any one sink, a list
        of sink ids, or a callable ``packet -> list`` (fan-out routing).
        """
        return self.write(packets, sinks)[0]

    def ack(self, row_ids: Iterable[int], sink: str = ANY_SINK) -> AckResult:
        """``sink`` confirmed delivery of these rows. A row is removed (and its key put in
        the ledger) once every sink it was routed to has confirmed."""
        return self.write((), None, [(row_ids, sink)])[1]

    def write(self, packets: Iterable[Packet] = (), sinks: Any = None,
              acks: Sequence[Tuple[Iterable[int], str]] = ()) -> Tuple[EnqueueResult, AckResult]:
        """Enqueue ``packets`` and apply ``acks`` ([(row_ids, sink), ...]) in ONE commit.

        This is the group commit the queue node uses: new rows and confirmations that
        arrived within the same few milliseconds share one fsync. The new rows are one
        segment (one SQLite row holding the batch), so a batch costs one insert however
        many packets it holds.
        """
        now = self.clock_ns()
        pk: List[Packet] = packets if isinstance(packets, list) else list(packets)
        s_list: Optional[List[str]] = None       # per packet, when routed per packet
        uniform = ANY_SINK
        if callable(sinks):
            memo: Dict[Any, str] = {}
            s_list = []
            for p in pk:
                t = sinks(p)
                t = tuple(t) if t else ()
                s_txt = memo.get(t)
                if s_txt is None:
                    s_txt = memo[t] = ",".join(sorted(set(t))) if t else ANY_SINK
                s_list.append(s_txt)
            if len(memo) <= 1:
                uniform, s_list = (s_list[0] if s_list else ANY_SINK), None
        elif sinks:
            uniform = ",".join(sorted(set(sinks)))
        # every field of every packet in one C call each; msgpack packs them as they are
        fields = _fields_of(pk)
        # one list per sink: the queue node submits its acks one row at a time
        by_sink: Dict[str, List[int]] = {}
        for ids, sink in acks:
            got = by_sink.get(sink)
            if got is None:
                by_sink[sink] = list(map(int, ids))
            else:
                got.extend(map(int, ids))
        ack_list = [(list(dict.fromkeys(ids)), sink) for sink, ids in by_sink.items() if ids]
        if not fields and not ack_list:
            return EnqueueResult(), AckResult()
        hs, hblob = hash_batch([f[0] for f in fields])
        sizes = [len(f[10]) + 256 for f in fields]

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> Tuple[EnqueueResult, AckResult]:
            ares = AckResult()
            for ids, sink in ack_list:
                self._ack_in(dc, ed, ids, sink, now, ares, deltas)
            if ed.ledger_n and self.ledger_on:  # the delivered keys of this commit: one ledger block
                dc.execute("INSERT INTO ledger_blocks(delivered_ns, n, hashes) VALUES (?, ?, ?)",
                           (now, ed.ledger_n, b"".join(ed.ledger_blob)))
            res = EnqueueResult()
            if fields:
                keep = self._fresh(hs, hblob)
                res.duplicates = len(fields) - len(keep)
                if keep and (self.max_rows or self.max_bytes):
                    keep = [keep[j] for j in self._make_room(dc, ed, [sizes[i] for i in keep], res, deltas)]
                if len(keep) == len(fields):
                    self._append(dc, ed, fields, sizes, uniform, s_list, pk, hs, hblob, now)
                elif keep:
                    self._append(dc, ed, [fields[i] for i in keep], [sizes[i] for i in keep], uniform,
                                 None if s_list is None else [s_list[i] for i in keep], [pk[i] for i in keep],
                                 [hs[i] for i in keep], b"".join(hblob[i << 4:(i + 1) << 4] for i in keep), now)
                if keep:
                    n = len(keep)
                    added = sum(sizes) if n == len(sizes) else sum(sizes[i] for i in keep)
                    for k, v in (("depth", n), ("bytes", added), ("accepted", n)):
                        deltas[k] = deltas.get(k, 0) + v
                    res.accepted = n
                if res.duplicates:
                    deltas["duplicates"] = deltas.get("duplicates", 0) + res.duplicates
                if res.rejected:
                    deltas["rejected_full"] = deltas.get("rejected_full", 0) + res.rejected
            return res, ares

        res, ares = self._change("write", fn)
        if ares.done and time.monotonic() >= self._next_prune:
            self._next_prune = time.monotonic() + self.prune_every_s
            try:
                self.prune_ledger()
            except StoreError:
                pass  # retried at the next interval
        return res, ares

    def _fresh(self, hs: List[str], blob: Optional[bytes] = None) -> List[int]:
        """Indexes of the keys to queue: not delivered within the window (ledger), not queued
        already, first of their batch."""
        known = self._known.contains(hs, blob)
        if not any(known) and len(set(hs)) == len(hs):
            return list(range(len(hs)))   # the common case: every key is new
        seen: set = set()
        keep = []
        for i, h in enumerate(hs):
            if known[i] or h in seen:
                continue
            seen.add(h)
            keep.append(i)
        return keep

    def _append(self, dc: Any, ed: "_Edit", fields: List[Tuple[Any, ...]], sizes: List[int], uniform: str,
                s_list: Optional[List[str]], pks: Optional[List[Packet]], hs: List[str],
                hblob: bytes, now: int) -> None:
        """Append rows (packet fields, sizes, sinks: ``uniform`` for all or ``s_list`` per row)
        as new segments of up to SEG_ROWS rows at the tail."""
        # read through the package, so that setting schnitzel_core.store.SEG_ROWS (a test
        # that wants several small segments does) takes effect here
        seg_rows = sys.modules[__package__].SEG_ROWS
        for off in range(0, len(fields), seg_rows):
            end = off + seg_rows
            part_s = None if s_list is None else s_list[off:end]
            n = min(len(fields), end) - off
            sz = array.array("I", sizes[off:end])
            s = _Seg(0, now, n, uniform if part_s is None else None, sz, hblob[off << 4:end << 4], None)
            data = msgpack.packb((fields[off:end] if n < len(fields) else fields, part_s), default=_mp_default)
            s.id = dc.execute(_SEGMENT_INSERT_SQL, (now, n, s.sinks, s.sizes_blob(), s.hashes, data)).lastrowid
            ed.new.append((s, None if pks is None else pks[off:end], part_s, hs[off:end]))

    def _ack_in(self, dc: Any, ed: "_Edit", ids: List[int], sink: str, now: int, res: AckResult,
                deltas: Dict[str, int]) -> None:
        segs = self._segs
        any_sink = sink == ANY_SINK
        ledger_on = self.ledger_on
        done_n = done_bytes = 0
        rest: List[int] = []
        fan_out: List[int] = []
        lo, hi = min(ids), max(ids)
        by_seg: Dict[int, List[int]]
        if lo >> SEG_BITS == hi >> SEG_BITS:   # one segment (the usual case): no grouping
            by_seg = {lo >> SEG_BITS: ids}
        else:
            by_seg = {}
            for rid in ids:
                g = by_seg.get(rid >> SEG_BITS)
                if g is None:
                    by_seg[rid >> SEG_BITS] = [rid]
                else:
                    g.append(rid)
        for sid, rids in by_seg.items():
            s = segs.get(sid)
            if s is None:
                rest.extend(rids)   # loose rows, dead ones or none at all
                continue
            base = sid << SEG_BITS
            if (len(rids) == s.live == s.n and sid not in ed.segs and max(rids) - base < s.n
                    and (any_sink or s.sinks == ANY_SINK or s.sinks == sink)):
                # the whole segment is confirmed (the common case): no per-row work
                ed.segs[sid] = [bytearray(b"\xff" * len(s.gone)), 0, 0]
                done_n += s.n
                done_bytes += s.bytes
                ed.gone_ids.extend(rids)
                if ledger_on:   # the keys stay known: queued before, delivered now
                    ed.ledger_n += s.n
                    ed.ledger_blob.append(s.hashes)
                else:
                    ed.gone_keys.extend(_split_hashes(s.hashes))
                continue
            for rid in rids:
                i = rid - base
                if i >= s.n or not ed.has(s, i):
                    rest.append(rid)   # moved to the loose rows, dead-lettered or gone
                    continue
                if not any_sink:
                    st = self._row_sinks(s, i, dc)
                    if st != ANY_SINK and st != sink:
                        fan_out.append(rid)   # other sinks still have to confirm: per-row state
                        continue
                done_bytes += ed.take(s, i)
                done_n += 1
                ed.gone_ids.append(rid)
                if ledger_on:
                    ed.ledger_n += 1
                    ed.ledger_blob.append(s.hashes[i << 4:(i + 1) << 4])
                else:
                    ed.gone_keys.append(s.hashes[i << 4:(i + 1) << 4].hex())
        if fan_out:
            self._materialize(dc, ed, fan_out)
            rest.extend(fan_out)
        if rest:
            n, b = self._ack_loose(dc, ed, rest, sink, now, res, deltas)
            done_n += n
            done_bytes += b
        if done_n:
            for k, v in (("depth", -done_n), ("bytes", -done_bytes), ("delivered", done_n)):
                deltas[k] = deltas.get(k, 0) + v
        res.done += done_n

    def _ack_loose(self, dc: Any, ed: "_Edit", ids: List[int], sink: str, now: int, res: AckResult,
                   deltas: Dict[str, int]) -> Tuple[int, int]:
        """Acks of rows in the ``queue`` table (nacked, fan-out, migrated); returns (done, bytes)."""
        done_n = done_bytes = 0
        done_keys: List[str] = []
        rest: List[int] = []
        for i in range(0, len(ids), 900):
            chunk = ids[i:i + 900]
            marks = ",".join("?" * len(chunk))
            # rows this sink completes (single-sink or any-sink rows), set-based
            cond = "" if sink == ANY_SINK else " AND (sinks = '*' OR sinks = ?)"
            extra = () if sink == ANY_SINK else (sink,)
            got = dc.execute(f"DELETE FROM queue WHERE id IN ({marks}){cond} RETURNING id, size, key",
                             (*chunk, *extra)).fetchall()
            done_n += len(got)
            done_bytes += sum(g[1] for g in got)
            done_keys.extend(g[2] for g in got)
            ed.gone_ids.extend(g[0] for g in got)
            gone = {g[0] for g in got}
            rest.extend(x for x in chunk if x not in gone)
        partial: List[Tuple[str, int]] = []
        found_ids = set()
        if rest:  # fan-out rows (several sinks) and rows not in the queue
            found = []
            for i in range(0, len(rest), 900):
                chunk = rest[i:i + 900]
                q = f"SELECT id, key, sinks, size FROM queue WHERE id IN ({','.join('?' * len(chunk))})"
                found.extend(dc.execute(q, tuple(chunk)).fetchall())
            done: List[Tuple[int, str, int]] = []
            for rid, key, sinks, size in found:
                found_ids.add(rid)
                left = [s for s in sinks.split(",") if s != sink]
                if not left:
                    done.append((rid, key, size))
                else:
                    partial.append((",".join(left), rid))
            if done:
                dc.executemany("DELETE FROM queue WHERE id = ?", [(d[0],) for d in done])
                done_n += len(done)
                done_bytes += sum(d[2] for d in done)
                done_keys.extend(d[1] for d in done)
                ed.gone_ids.extend(d[0] for d in done)
            if partial:
                dc.executemany("UPDATE queue SET sinks = ? WHERE id = ?", partial)
        if done_keys:
            hs, blob = hash_batch(done_keys)
            if self.ledger_on:
                ed.ledger_n += len(hs)
                ed.ledger_blob.append(blob)
            else:
                ed.gone_keys.extend(hs)
        res.partial += len(partial)
        missing = [i for i in rest if i not in found_ids]
        if missing:  # maybe dead-lettered meanwhile: a later success clears it from the DLQ
            res.unknown += self._ack_dead(dc, ed, missing, sink, deltas)
        return done_n, done_bytes

    def _ack_dead(self, dc: Any, ed: "_Edit", ids: List[int], sink: str, deltas: Dict[str, int]) -> int:
        unknown = 0
        for rid in ids:
            r = dc.execute("SELECT key, sinks FROM dead WHERE id = ?", (rid,)).fetchone()
            if r is None:
                unknown += 1
                continue
            left = [s for s in r[1].split(",") if s not in (sink, ANY_SINK)] if sink != ANY_SINK else []
            if left:
                dc.execute("UPDATE dead SET sinks = ? WHERE id = ?", (",".join(left), rid))
            else:
                dc.execute("DELETE FROM dead WHERE id = ?", (rid,))
                if self.ledger_on:  # a dead row's key was forgotten: it is known again
                    h = key_hash(r[0])
                    ed.ledger_n += 1
                    ed.ledger_blob.append(bytes.fromhex(h))
                    ed.added_keys.append(h)
                deltas["dead"] = deltas.get("dead", 0) - 1
                deltas["delivered"] = deltas.get("delivered", 0) + 1
        return unknown

    def _materialize(self, dc: Any, ed: "_Edit", ids: Iterable[int]) -> int:
        """Move segment rows into the ``queue`` table (keeping their ids) before anything
        changes them one by one: attempts, next-attempt time, the sinks still to confirm."""
        ins = []
        for rid in ids:
            s = self._segs.get(rid >> SEG_BITS)
            i = rid & _SEG_MASK
            if s is None or i >= s.n or not ed.has(s, i):
                continue
            fields, sinks = self._seg_data(s, dc)
            f = fields[i]
            ins.append((rid,) + tuple(f[:11]) + _encode_extra(f) +
                       (s.sizes[i], s.sinks if sinks is None else sinks[i], s.enq_ns, 0, None))
            ed.take(s, i)
            ed.moved_ids.append(rid)
        if ins:
            dc.executemany(_LOOSE_INSERT_SQL, ins)
            ed.loose = True
        return len(ins)
    # ------------------------------------------------------------ lease/ack/nack
    def lease(self, n: int, lease_s: float = 30.0, wait: bool = True) -> List[Row]:
        """Take up to ``n`` ready rows, oldest first; unless acked or nacked they are offered
        again after ``lease_s``.

        Leases live in memory (one consumer per store file: the queue node): taking one
        costs no commit, and a restart makes every unacknowledged row ready at once.
        ``wait=False`` returns [] at once while a commit holds the store (its fsync can take
        100 ms on an SD card): the queue node's executor, which also takes the packets off
        DDS, must not wait for it.
        """
        if not self._lock.acquire(blocking=wait):
            return []
        try:
            return self._lease(n, lease_s)
        finally:
            self._lock.release()

    def _lease(self, n: int, lease_s: float) -> List[Row]:
        now = self.clock_ns()
        until = now + int(lease_s * 1e9)
        # the caller holds the lock
        leases = self._leases
        if leases:
            expired = [i for i, t in leases.items() if t <= now]
            if expired:
                for i in expired:
                    del leases[i]
                self._cursor = min(self._cursor, min(expired))
                self._loose_done = False
        self._refresh()
        if self._loose_done and self._loose_wake_ns is not None and now >= self._loose_wake_ns:
            self._loose_done = False
        loose: List[Any] = []
        if not self._loose_done:
            last = 0
            while len(loose) < n:
                want = n - len(loose) + len(leases)
                # plain DB-API rows (SQLAlchemy's Row processing cost more than the query)
                batch = self._read(lambda c: c.connection.driver_connection.execute(
                    _LOOSE_LEASE_SQL, (last, now, want)).fetchall())
                loose.extend(r for r in batch if r[0] not in leases)
                if len(batch) < want:
                    # drained: remember when a delayed row gets ready
                    wake = self._read(lambda c: c.connection.driver_connection.execute(
                        "SELECT min(avail_ns) FROM queue WHERE avail_ns > ?", (now,)).fetchone())
                    self._loose_wake_ns = wake[0] if wake and wake[0] is not None else None
                    self._loose_done = True
                    break
                last = batch[-1][0]
        # segment rows from the cursor on, skipping gone and leased ones
        seg_rows: List[Row] = []
        ids, segs, cursor = self._seg_ids, self._segs, self._cursor
        k = bisect.bisect_left(ids, cursor >> SEG_BITS)
        need = n
        while k < len(ids) and need > 0:
            s = segs[ids[k]]
            base, g, full = s.id << SEG_BITS, s.gone, s.live == s.n
            lo = max(0, cursor - base)
            while lo < s.n and need > 0:
                hi = min(s.n, lo + max(2 * need, 64))   # a window: segments can be large
                if full and not leases:
                    idx = list(range(lo, hi))
                elif full:
                    idx = [i for i in range(lo, hi) if base | i not in leases]
                else:
                    idx = [i for i in range(lo, hi) if not g[i >> 3] >> (i & 7) & 1 and base | i not in leases]
                del idx[need:]
                if idx:
                    seg_rows.extend(self._seg_rows(s, idx))
                    need -= len(idx)
                lo = hi
            k += 1
        last_seg = seg_rows[-1].id if seg_rows else None   # seg_rows holds at most n rows
        if loose:  # oldest first across loose and segment rows
            out = []
            last_seg = None
            n_loose = 0
            for rid, tag, r in itertools.islice(heapq.merge(
                    ((r[0], 0, r) for r in loose), ((r.id, 1, r) for r in seg_rows),
                    key=operator.itemgetter(0)), n):
                if tag:
                    out.append(r)
                    last_seg = rid
                else:
                    out.append(_row(r))
                    n_loose += 1
            if n_loose < len(loose):
                self._loose_done = False   # ready loose rows were left for the next lease
        else:
            out = seg_rows
        if last_seg is not None:
            self._cursor = last_seg + 1
        leases.update(dict.fromkeys([r.id for r in out], until))
        return out

    @property
    def leased(self) -> int:
        """Rows leased and not expired. Takes no lock (the queue node asks at every poll and
        must not wait for a commit's fsync): a copy of the values is taken in one C call."""
        now = self.clock_ns()
        return sum(1 for t in list(self._leases.values()) if t > now)

    def release(self, row_ids: Iterable[int]) -> None:
        """Give leased rows back without counting an attempt (ready again at once)."""
        with self._lock:
            for i in row_ids:
                i = int(i)
                if self._leases.pop(i, None) is not None:
                    self._cursor = min(self._cursor, i)
                    self._loose_done = False

    def nack(self, row_ids: Iterable[int], reason: str = "", delay_s: float = 0.0,
             max_attempts: int = 0) -> int:
        """A delivery attempt failed (retryable): attempts += 1, ready again after ``delay_s``.
        Rows reaching ``max_attempts`` (> 0) are dead-lettered. Returns rows dead-lettered."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0
        now = self.clock_ns()
        until = now + int(max(0.0, delay_s) * 1e9)

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            self._materialize(dc, ed, ids)
            dc.executemany(
                "UPDATE queue SET attempts = attempts + 1, last_error = ?, state = 0, avail_ns = ? WHERE id = ?",
                [(reason[:2000], until, i) for i in ids])
            deltas["nacks"] = len(ids)
            ed.loose = True
            if max_attempts > 0:
                q = f"SELECT id FROM queue WHERE attempts >= ? AND id IN ({','.join('?' * len(ids))})"
                over = [r[0] for r in dc.execute(q, (max_attempts, *ids))]
                if over:
                    return self._dead_letter(dc, ed, over, f"gave up after {max_attempts} attempts: {reason}",
                                             now, deltas)
            return 0

        n = self._change("nack", fn)
        self.release(ids)
        return n

    def extend(self, row_ids: Iterable[int], lease_s: float, reason: str = "") -> None:
        """Keep rows leased for ``lease_s`` more (a sink is still retrying them), counting an attempt."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return
        until = self.clock_ns() + int(lease_s * 1e9)

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> None:
            self._materialize(dc, ed, ids)
            dc.executemany("UPDATE queue SET attempts = attempts + 1, last_error = ? WHERE id = ?",
                           [(reason[:2000], i) for i in ids])

        self._change("extend lease", fn)
        with self._lock:
            for i in ids:
                if i in self._leases:
                    self._leases[i] = until

    def nack_over(self, row_ids: Iterable[int], max_attempts: int, reason: str) -> int:
        """Dead-letter those of ``row_ids`` that reached ``max_attempts`` attempts."""
        ids = [int(i) for i in row_ids]
        if not ids or max_attempts <= 0:
            return 0
        now = self.clock_ns()

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            # attempts are counted on loose rows only: a row in a segment has none yet
            q = f"SELECT id FROM queue WHERE attempts >= ? AND id IN ({','.join('?' * len(ids))})"
            over = [r[0] for r in dc.execute(q, (max_attempts, *ids))]
            if not over:
                return 0
            return self._dead_letter(dc, ed, over, f"gave up after {max_attempts} attempts: {reason}", now, deltas)

        n = self._change("dead-letter", fn)
        if n:
            self.release(ids)
        return n

    def dead_letter(self, row_ids: Iterable[int], reason: str) -> int:
        """Move rows to the dead-letter table with ``reason`` (e.g. the backend's 400 answer)."""
        ids = [int(i) for i in row_ids]
        if not ids:
            return 0
        now = self.clock_ns()
        n = self._change("dead-letter", lambda dc, ed, deltas: self._dead_letter(dc, ed, ids, reason, now, deltas))
        self.release(ids)
        return n

    def _dead_letter(self, dc: Any, ed: "_Edit", ids: List[int], reason: str, now: int,
                     deltas: Dict[str, int]) -> int:
        self._materialize(dc, ed, ids)
        marks = ",".join("?" * len(ids))
        got = dc.execute(f"SELECT id, key, size FROM queue WHERE id IN ({marks})", tuple(ids)).fetchall()
        if not got:
            return 0
        dc.execute(
            f"INSERT OR REPLACE INTO dead ({_COPY_COLS}, reason, dead_ns) SELECT {_COPY_COLS}, ?, ? "
            f"FROM queue WHERE id IN ({marks})", (reason[:2000], now, *ids))
        dc.execute(f"DELETE FROM queue WHERE id IN ({marks})", tuple(ids))
        n = len(got)
        ed.gone_ids.extend(g[0] for g in got)
        ed.gone_keys.extend(key_hashes([g[1] for g in got]))
        for k, v in (("depth", -n), ("bytes", -sum(g[2] for g in got)), ("dead", n), ("dead_lettered", n)):
            deltas[k] = deltas.get(k, 0) + v
        return n

    def redrive(self, row_ids: Optional[Iterable[int]] = None) -> int:
        """Move dead-lettered rows (all, or these ids) back to the tail of the queue, attempts reset."""
        now = self.clock_ns()
        ids = None if row_ids is None else [int(i) for i in row_ids]

        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            if ids is not None and not ids:
                return 0
            where = "" if ids is None else f" WHERE id IN ({','.join('?' * len(ids))})"
            args = () if ids is None else tuple(ids)
            dead = dc.execute(f"SELECT {_COPY_COLS} FROM dead{where} ORDER BY id", args).fetchall()
            if not dead:
                return 0
            fields = [_PACKET_FIELDS(_decode(r)) for r in dead]
            hs, _ = hash_batch([f[0] for f in fields])
            # a key queued again (or delivered) meanwhile wins: the dead duplicate is dropped
            queued = self._known.contains(hs)
            seen: set = set()
            keep = []
            for j, h in enumerate(hs):
                if not queued[j] and h not in seen:
                    seen.add(h)
                    keep.append(j)
            if keep:
                sizes = [dead[j][14] for j in keep]
                self._append(dc, ed, [fields[j] for j in keep], sizes, ANY_SINK, [dead[j][15] for j in keep], None,
                             [hs[j] for j in keep], bytes.fromhex("".join(hs[j] for j in keep)), now)
                for k, v in (("depth", len(keep)), ("bytes", sum(sizes))):
                    deltas[k] = deltas.get(k, 0) + v
            dc.execute(f"DELETE FROM dead{where}", args)
            for k, v in (("dead", -len(dead)), ("redriven", len(dead))):
                deltas[k] = deltas.get(k, 0) + v
            return len(dead)

        return self._change("redrive", fn)

    def purge(self, dead: bool = False, queue: bool = False) -> int:
        """Delete all rows of the dead-letter table and/or the queue (counted as ``purged``)."""
        def fn(dc: Any, ed: _Edit, deltas: Dict[str, int]) -> int:
            n = 0
            if queue:
                n += dc.execute("DELETE FROM queue").rowcount + sum(s.live for s in self._segs.values())
                dc.execute("DELETE FROM segments")
                dc.execute("DELETE FROM segments_gone")
                dc.execute("UPDATE counters SET value = 0 WHERE name IN ('depth', 'bytes')")
            if dead:
                n += dc.execute("DELETE FROM dead").rowcount
                dc.execute("UPDATE counters SET value = 0 WHERE name = 'dead'")
            deltas["purged"] = n
            return n

        n = self._change("purge", fn)
        with self._lock:
            self._counters = self._load_counters()
            if queue:
                self._leases.clear()
                self._read(lambda c: self._reload(c.connection.driver_connection))
        return n
