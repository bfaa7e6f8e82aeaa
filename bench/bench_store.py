"""Durable store throughput: enqueue + ack of 200-byte packets with group commit, against
raw sqlite3 executemany of the same batches measured in the same run.

    python bench/bench_store.py [--packets 20000] [--batches 10,100,1000] [--rounds 5]
                                [--no-record] [--compare-with OLD_STORE.py|OLD_STORE_DIR]

What each column measures (packets per second, wall clock, same packets, same directory,
WAL, the same ``synchronous`` for every column of a row):
- store: per batch, what the queue node does: ONE commit holding the batch's new rows and the
  acknowledgements of the previous batch (``DurableStore.write``: the batch appended as one
  segment, the confirmed segment deleted, one ledger block with their keys, counters), then
  ``lease`` of the batch (the rows to forward, with their ids). Every guarantee is on:
  durable before the call returns, de-duplication of queued keys, delivered-key ledger,
  capacity counters.
- store, 2 commits: ``enqueue`` then ``ack`` as two commits per batch (no piggy-backing).
- store, ledger off: as 'store' with ``ledger_retention_s=0``.
- raw insert: sqlite3 ``executemany`` INSERT of (key, payload) into a bare
  ``(id INTEGER PRIMARY KEY, key, payload)`` table, one COMMIT per batch. Inserts only: the
  table grows, nothing is ever deleted. The issue's baseline ("raw sqlite3 executemany of the
  same batches").
- raw insert+delete: the same logical work as 'store' with nothing else: per batch ONE
  commit holding the INSERT of the batch and ``DELETE ... WHERE id IN (...)`` of the previous
  batch. Both raw tables use ``secure_delete=FAST`` as the store does (Debian's SQLite
  defaults to ON, which rewrites freed pages with zeros).
- before (``--compare-with``): the 'store' column for another store module (e.g. the
  previous commit's ``store.py``, or a copy of its ``store/`` package directory) in the same run.
Targets (issue 5) at batch 100 and synchronous=FULL: >= 0.5x raw and >= 100,000 packets/s.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import publish  # noqa: E402

from schnitzel_core.packet import Packet  # noqa: E402
from schnitzel_core.store import DurableStore  # noqa: E402


def packets(n: int, tag: str):
    return [Packet(stream_id=tag, seq=i, kind="event", payload=os.urandom(100).hex().encode())
            for i in range(n)]


def bench_store(d: str, sync: str, batch: int, pk, ledger: bool = True, store_cls=DurableStore, tag=""):
    s = store_cls(os.path.join(d, f"store{tag}-{sync}-{batch}-{int(ledger)}.db"), synchronous=sync,
                  ledger_retention_s=7 * 24 * 3600 if ledger else 0)
    prev = []
    t0 = time.perf_counter()
    for i in range(0, len(pk), batch):
        s.write(pk[i:i + batch], None, [(prev, "*")] if prev else ())
        prev = [r.id for r in s.lease(batch)]
    s.ack(prev)
    dt = time.perf_counter() - t0
    assert s.stats().depth == 0 and s.counters["delivered"] == len(pk)
    s.close()
    return len(pk) / dt


def bench_store_separate(d: str, sync: str, batch: int, pk):
    """enqueue and ack as two commits (no ack piggy-backing), for reference."""
    s = DurableStore(os.path.join(d, f"store-sep-{sync}-{batch}.db"), synchronous=sync)
    t0 = time.perf_counter()
    for i in range(0, len(pk), batch):
        s.enqueue(pk[i:i + batch])
        s.ack([r.id for r in s.lease(batch)])
    dt = time.perf_counter() - t0
    s.close()
    return len(pk) / dt


def raw_conn(path: str, sync: str):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL")
    c.execute(f"PRAGMA synchronous={sync}")
    c.execute("PRAGMA secure_delete=FAST")  # as the store sets it (some builds default to ON)
    c.execute("CREATE TABLE q (id INTEGER PRIMARY KEY, key TEXT, payload BLOB)")
    return c


def bench_raw(d: str, sync: str, batch: int, pk, delete: bool):
    c = raw_conn(os.path.join(d, f"raw-{sync}-{batch}-{int(delete)}.db"), sync)
    rows = [(p.idempotency_key, p.payload) for p in pk]
    prev: list = []
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch):
        c.execute("BEGIN IMMEDIATE")
        cur = c.executemany("INSERT INTO q (key, payload) VALUES (?, ?)", rows[i:i + batch])
        if delete:
            if prev:
                c.execute(f"DELETE FROM q WHERE id IN ({','.join('?' * len(prev))})", prev)
            last = c.execute("SELECT last_insert_rowid()").fetchone()[0]
            prev = list(range(last - cur.rowcount + 1, last + 1))
        c.execute("COMMIT")
    if delete and prev:
        c.execute(f"DELETE FROM q WHERE id IN ({','.join('?' * len(prev))})", prev)
    dt = time.perf_counter() - t0
    if delete:
        assert c.execute("SELECT count(*) FROM q").fetchone()[0] == 0
    c.close()
    return len(rows) / dt


def load_store(path: str):
    """DurableStore from another store module (a store.py) or package (a copy of the store/
    directory); relative imports resolve in schnitzel_core."""
    name = "schnitzel_core._store_compare"
    if os.path.isdir(path):
        spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                      submodule_search_locations=[path])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod.DurableStore


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=20000)
    ap.add_argument("--batches", default="10,100,1000")
    ap.add_argument("--dir", default="", help="where the databases go (default: a temp dir under /tmp)")
    ap.add_argument("--no-record", action="store_true")
    ap.add_argument("--compare-with", default="", help="another store.py or store/ package directory to measure in the same run ('before')")
    ap.add_argument("--rounds", type=int, default=5, help="median of this many rounds per cell")
    ap.add_argument("--note", default="", help="a line added under the table (e.g. the machine's load)")
    a = ap.parse_args()
    batches = [int(b) for b in a.batches.split(",")]
    before_cls = load_store(a.compare_with) if a.compare_with else None
    rows = []
    med = lambda xs: sorted(xs)[len(xs) // 2]  # noqa: E731
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=a.dir or None) as d:
        for sync in ("FULL", "NORMAL"):
            for b in batches:
                n = a.packets if b >= 100 else a.packets // 5
                cells: dict = {k: [] for k in ("ours", "sep", "nol", "raw", "raw_del", "before")}
                for r in range(a.rounds):  # interleaved, so drift hits every column alike
                    tag = f"{sync}{b}r{r}"
                    pk = packets(n, tag)
                    cells["raw"].append(bench_raw(d, sync, b, pk, False))
                    cells["ours"].append(bench_store(d, sync, b, pk, tag=tag))
                    cells["raw_del"].append(bench_raw(d, sync, b, pk, True))
                    if before_cls is not None:
                        cells["before"].append(bench_store(d, sync, b, packets(n, "old" + tag), store_cls=before_cls,
                                                           tag="old" + tag))
                    cells["sep"].append(bench_store_separate(d, sync, b, packets(n, f"sep{tag}")))
                    cells["nol"].append(bench_store(d, sync, b, packets(n, f"nol{tag}"), ledger=False, tag=tag))
                    for f in os.listdir(d):
                        os.unlink(os.path.join(d, f))
                m = {k: med(v) if v else 0.0 for k, v in cells.items()}
                rows.append((sync, b, n, m["ours"], m["sep"], m["nol"], m["raw"], m["raw_del"], m["before"]))
                print(f"{sync:6} batch {b:5}: store {m['ours']:9.0f}/s  (before {m['before']:9.0f}/s, 2 commits "
                      f"{m['sep']:9.0f}/s, no ledger {m['nol']:9.0f}/s)  raw insert {m['raw']:9.0f}/s  "
                      f"raw insert+delete {m['raw_del']:9.0f}/s", flush=True)
    has_before = before_cls is not None
    head = "| synchronous | batch | packets | store pkt/s |" + (" before pkt/s |" if has_before else "") + \
        " store, 2 commits | store, ledger off | raw insert pkt/s | raw insert+delete pkt/s | " \
        "store / raw insert | store / raw insert+delete |"
    lines = [head, "| --- | ---: | ---: | ---: |" + (" ---: |" if has_before else "") +
             " ---: | ---: | ---: | ---: | ---: | ---: |"]
    for sync, b, n, ours, sep, nol, raw, raw_del, before in rows:
        lines.append(f"| {sync} | {b} | {n} | {ours:,.0f} |" + (f" {before:,.0f} |" if has_before else "") +
                     f" {sep:,.0f} | {nol:,.0f} | {raw:,.0f} | {raw_del:,.0f} | {ours / raw:.2f}x | "
                     f"{ours / raw_del:.2f}x |")
    full100 = next((r for r in rows if r[0] == "FULL" and r[1] == 100), None)
    lines += ["", f"Median of {a.rounds} interleaved rounds per cell; load average {load0:.2f} at the start, "
                  f"{os.getloadavg()[0]:.2f} at the end."]
    if full100:
        pps, r_ins, r_del = full100[3], full100[3] / full100[6], full100[3] / full100[7]
        ok = lambda c: "met" if c else "NOT met"  # noqa: E731
        lines += [f"Targets at batch 100, FULL: >= 0.5x raw -> {r_ins:.2f}x raw insert ({ok(r_ins >= 0.5)}), "
                  f"{r_del:.2f}x raw insert+delete ({ok(r_del >= 0.5)}); >= 100,000 packets/s -> {pps:,.0f}/s "
                  f"({ok(pps >= 100_000)})."]
    if a.note:
        lines.append(a.note)
    lines.append("Columns: 'store' = `DurableStore.write(batch, acks of the previous batch)` (one commit) + "
                 "`lease(batch)`, every guarantee on; 'raw insert' = executemany INSERT of (key, payload) + COMMIT "
                 "per batch (nothing deleted); 'raw insert+delete' = the same logical work as 'store' in bare sqlite3 "
                 "(one commit per batch: executemany INSERT, DELETE of the previous batch by id). 'before' = the "
                 f"'store' measurement of the store module given with --compare-with "
                 f"({os.path.basename(a.compare_with.rstrip('/')) or 'none'}).")
    print()
    publish("bench_store.py", lines, save=not a.no_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
