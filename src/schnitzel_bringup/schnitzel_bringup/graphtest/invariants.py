"""The chaos profile's invariants, judged after the run (docs/testing-graphs.md, "check"):
the set check (lost / unexpected / recovered against the durable queues' ledgers and what the
senders emitted), duplicates only with the same key, the status transitions, resume within T
(per named queue), the skewed clock's stamps. Reads the run's files; starts nothing.
"""
from __future__ import annotations

import json
import sqlite3
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set, Tuple

from schnitzel_core.testing import jsonl_rows

if TYPE_CHECKING:   # pragma: no cover
    from .chaos import Run


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)


def _queue_ids(chk: Dict[str, Any], queues: List[str]) -> List[str]:
    """The durable queues the set check reads: `queue:` (one id or a list), else the graph's only one."""
    q = chk.get("queue")
    if q:
        return [str(x) for x in q] if isinstance(q, list) else [str(q)]
    return queues if len(queues) == 1 else []


def _jsonl_keys(path: Path) -> List[str]:
    return [str(r.get("idempotency_key", "")) for r in jsonl_rows(path)]


def queue_delivered_count(db: Path) -> Optional[int]:
    """Rows a durable queue's ledger records as delivered (cheap: block sizes only); None when
    the file cannot be read yet."""
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=0.5)
    except sqlite3.Error:
        return None
    try:
        row = con.execute("SELECT COALESCE(SUM(LENGTH(hashes)), 0) / 16 FROM ledger_blocks").fetchone()
        return int(row[0])
    except sqlite3.Error:
        return None
    finally:
        con.close()


def resume_after(samples: List[Tuple[float, int]], fault_end: float) -> Optional[float]:
    """Seconds from ``fault_end`` to the first sample whose count exceeds the count at
    ``fault_end``; None when it never grew again."""
    at_end = [n for t, n in samples if t <= fault_end]
    base = max(at_end) if at_end else 0
    after = [t for t, n in samples if t > fault_end and n > base]
    return after[0] - fault_end if after else None


def queue_keys(db: Path) -> Tuple[Set[str], Set[str], Set[str]]:
    """(delivered: confirmed by every sink, in the ledger; pending: still queued; dead) keys of a
    durable queue's file, read-only. The ledger holds 128-bit key hashes; for the keys schnitzel
    derives (32 hex digits) the hash is the key itself."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}

        def hexes(blob: bytes) -> List[str]:
            return [blob[i:i + 16].hex() for i in range(0, len(blob), 16)]

        delivered: Set[str] = set()
        if "ledger_blocks" in tables:
            for (blob,) in con.execute("SELECT hashes FROM ledger_blocks"):
                delivered.update(hexes(blob))
        pending: Set[str] = set()
        if "segments" in tables:
            gone = {sid: g for sid, g in con.execute("SELECT id, gone FROM segments_gone")}
            for sid, blob in con.execute("SELECT id, hashes FROM segments"):
                g = gone.get(sid, b"")
                for j, h in enumerate(hexes(blob)):
                    if not (j // 8 < len(g) and g[j // 8] >> (j % 8) & 1):
                        pending.add(h)
        pending.update(r[0] for r in con.execute("SELECT key FROM queue"))
        dead = {r[0] for r in con.execute("SELECT key FROM dead")}
        return delivered, pending - delivered, dead
    finally:
        con.close()


def judge_resume(samples: List[Tuple[float, int]], queue_samples: Dict[str, List[Tuple[float, int]]],
                 fault_end: float, limit: float, pending: Dict[str, Set[str]]) -> Tuple[List[str], List[str]]:
    """resume_within_s: (failures, notes). With named queues, each queue on its own (its
    ledger's delivered count grows again within ``limit`` s of the faults' end; a queue with
    nothing left to deliver is not held to it), so one queue's deliveries cannot stand in for
    another's; without, the packets the sinks hold."""
    fails: List[str] = []
    notes: List[str] = []
    if queue_samples:
        for qid, qs in sorted(queue_samples.items()):
            took = resume_after(qs, fault_end)
            if took is None:
                if pending.get(qid):
                    fails.append(f"resume_within_s: queue {qid} delivered nothing after the faults ended "
                                 f"(at {fault_end:.1f} s) and still holds {len(pending[qid])} row(s)")
                else:
                    notes.append(f"resume {qid}: nothing left to deliver after the faults ended")
                continue
            notes.append(f"resume {qid}: deliveries resumed {took:.1f} s after the faults ended")
            if took > limit:
                fails.append(f"resume_within_s: queue {qid} resumed {took:.1f} s after the faults ended "
                             f"(limit {limit:g} s)")
        return fails, notes
    took = resume_after(samples, fault_end)
    if took is None:
        fails.append(f"resume_within_s: no new packet reached the sink after the faults ended "
                     f"(at {fault_end:.1f} s; the run ended at {samples[-1][0] if samples else 0:.1f} s)")
    else:
        notes.append(f"resume: deliveries resumed {took:.1f} s after the faults ended")
        if took > limit:
            fails.append(f"resume_within_s: deliveries resumed {took:.1f} s after the faults ended (limit {limit:g} s)")
    return fails, notes


def check(run: Run, rep: Dict[str, Any]) -> Tuple[List[str], List[str]]:
    """(failures, notes) of the profile's invariants."""
    chk = run.prof.check
    fails: List[str] = []
    notes: List[str] = []
    ledgers: Dict[Path, Tuple[Set[str], Set[str], Set[str]]] = {}

    def ledger(db: Path) -> Tuple[Set[str], Set[str], Set[str]]:   # each queue's file read once
        if db not in ledgers:
            ledgers[db] = queue_keys(db)
        return ledgers[db]
    g = run._interp_graph()
    queues = [n.id for n in g.nodes if n.plugin == "durable_queue"]
    qids = _queue_ids(chk, queues)
    if "no_loss" in chk:
        qnodes = [g.node(q) for q in qids]
        if not qids or None in qnodes:
            fails.append(f"no_loss: name the durable queue(s) (`queue: ID` or `queue: [ID, ...]`); the graph has "
                         f"{', '.join(queues) or 'none'}")
        else:
            want = chk["no_loss"] if isinstance(chk["no_loss"], list) else [
                n.id for n in g.nodes if n.plugin in ("jsonl_sink", "http_sink") or n.plugin.endswith("jsonl_sink")]
            delivered: Set[str] = set()       # over every checked queue
            pending: Set[str] = set()
            dead: Set[str] = set()
            attempted = {k for t in run.taps for k in _jsonl_keys(t)}
            for qnode in qnodes:
                d, p, x = ledger(Path(qnode.params["path"]))
                delivered, pending, dead = delivered | d, pending | p, dead | x
                mine = {k for t, q in run.tap_queue.items() if q == qnode.id for k in _jsonl_keys(t)}
                lost_in = mine - (d | p | x)
                notes.append(f"queue {qnode.id}: {len(mine)} emitted toward it, {len(d)} delivered (ledger), "
                             f"{len(p)} still queued, {len(x)} dead"
                             + (f", {len(lost_in)} emitted but never taken in (never acknowledged, so "
                                f"not counted as lost: e.g. sent while the queue was down), e.g. "
                                f"{', '.join(sorted(lost_in)[:3])}" if lost_in else ""))
                if not d:
                    fails.append(f"no_loss: the queue {qnode.id} confirmed no delivery at all, so the check proves "
                                 "nothing (run longer, or check the graph produces packets)")
            accepted = delivered | pending | dead
            for sid in want:
                node = g.node(sid)
                if node is None:
                    fails.append(f"no_loss: the graph has no sink {sid!r}")
                    continue
                if node.plugin == "http_sink":
                    if run.backend is None:
                        notes.append(f"no_loss: {sid} skipped (only the reference backend can be read back)")
                        continue
                    if not run.backend.up():
                        run.backend.start()
                    held = set(_get(run.backend.url + "/keys")["keys"])
                elif "path" in node.params:
                    held = set(_jsonl_keys(Path(node.params["path"])))
                else:
                    fails.append(f"no_loss: cannot read what {sid} ({node.plugin}) holds")
                    continue
                # Jepsen's set check: ok = acknowledged and read; lost = acknowledged (confirmed by
                # every sink) and not read; unexpected = read but never emitted (never taken in,
                # when nothing was tapped); recovered = read although not confirmed (still queued,
                # or never acknowledged by the queue)
                lost = delivered - held
                unexpected = held - (attempted | accepted if run.taps else accepted)
                recovered = held & (pending | (attempted - accepted))
                notes.append(f"set check {sid}: ok {len(delivered & held)}, lost {len(lost)}, unexpected "
                             f"{len(unexpected)}, recovered {len(recovered)}")
                if lost:
                    fails.append(f"no_loss: {sid} lost {len(lost)} acknowledged packet(s) (confirmed to the queue, not "
                                 f"in the sink), e.g. {', '.join(sorted(lost)[:3])}")
                if unexpected:
                    fails.append(f"no_loss: {sid} holds {len(unexpected)} packet(s) nothing emitted, "
                                 f"e.g. {', '.join(sorted(unexpected)[:3])}")
    if chk.get("duplicates") == "same_key":
        for path in run._jsonl_paths():
            rows = jsonl_rows(path)
            keys: Dict[Tuple[Any, ...], Set[str]] = {}
            seen: Dict[str, int] = {}
            for r in rows:
                ident = (r.get("stream_id"), r.get("epoch"), r.get("seq"), r.get("kind"), r.get("packet_id"))
                keys.setdefault(ident, set()).add(str(r.get("idempotency_key")))
                seen[str(r.get("idempotency_key"))] = seen.get(str(r.get("idempotency_key")), 0) + 1
            bad = {k: v for k, v in keys.items() if len(v) > 1}
            dups = sum(n - 1 for n in seen.values() if n > 1)
            notes.append(f"duplicates {path.name}: {dups} re-delivered row(s), all with their original key" if not bad
                         else f"duplicates {path.name}: {len(bad)} packet(s) under several keys")
            if bad:
                k, v = next(iter(bad.items()))
                fails.append(f"duplicates: packet {k[4] or k[:3]} was written under {len(v)} different keys: "
                             f"{', '.join(sorted(v))}")
    if "status" in chk:
        want = list(chk["status"])
        it = iter(run.status_seq)
        if not all(any(s == w for s in it) for w in want):
            fails.append(f"status: expected the transitions {' -> '.join(want)}, saw {' -> '.join(run.status_seq) or 'none'}")
        else:
            notes.append(f"status: {' -> '.join(run.status_seq)}")
    if "resume_within_s" in chk:
        f, n = judge_resume(run.samples, run.queue_samples, run.fault_end, float(chk["resume_within_s"]),
                            {q: ledger(db)[1] for q, db in run._named_queue_dbs().items() if db.exists()})
        fails += f
        notes += n
    if run.skew is not None:
        f, off = run.skew
        i = run.prof.faults.index(f)
        stamps = [r.get("stamp_ns", 0) for p in run._jsonl_paths() for r in jsonl_rows(p)]
        skewed = [s for s in stamps if s - time.time_ns() > off * 0.5e9]
        if skewed:
            run.fired[i] = f"skew_clock {f.args['node']}: stamps {off:+g} s ahead; {len(skewed)} delivered packet(s) carry them"
        else:
            run.fired.pop(i, None)
            run.not_fired[i] = f"skew_clock {f.args['node']}: no delivered packet carries a skewed stamp"
    return fails, notes
